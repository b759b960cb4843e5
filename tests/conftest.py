"""Test setup: offline, seeded, and every test gets its own IGDS workspace under tmp_path."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch, request):
    random.seed(0)
    np.random.seed(0)
    try:
        import torch

        torch.manual_seed(0)
    except ImportError:  # pure-python tests do not need torch
        pass
    # slow tests share the real workspace (converted model) so they do not reconvert every time
    if "slow" not in request.keywords:
        monkeypatch.setenv("IGDS_HOME", str(tmp_path / "igds_home"))
        monkeypatch.delenv("IGDS_STORE", raising=False)
    yield
