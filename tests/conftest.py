"""Test setup: offline, seeded, and every test gets its own IGDS workspace under tmp_path."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _session_home(tmp_path_factory):
    # module-scoped fixtures run before the per-test ones: give them a workspace that is not cache/
    os.environ["IGDS_HOME"] = str(tmp_path_factory.mktemp("igds_session_home"))
    # tiny models: two torch threads on two cores fight each other (~500x slower forwards)
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch, request):
    random.seed(0)
    np.random.seed(0)
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    # slow tests share the real workspace (converted model) so they do not reconvert every time
    if "slow" in request.keywords:
        monkeypatch.delenv("IGDS_HOME", raising=False)  # the real workspace, to reuse the converted model
        torch.set_num_threads(2)
    else:
        monkeypatch.setenv("IGDS_HOME", str(tmp_path / "igds_home"))
        monkeypatch.delenv("IGDS_STORE", raising=False)
    yield
