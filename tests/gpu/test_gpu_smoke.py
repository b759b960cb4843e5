"""bf16 LoRA steps of the default model on CUDA (skipped without a GPU)."""

import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_lora_steps_on_gpu(monkeypatch):
    monkeypatch.delenv("IGDS_HOME", raising=False)  # reuse the converted default model of the real workspace
    path = Path(__file__).resolve().parents[2] / "bench" / "gpu_smoke.py"
    spec = importlib.util.spec_from_file_location("gpu_smoke", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run(n=64, steps=4)
    print(res)
    assert res["steps"] == 4 and res["precision"] == "bf16" and res["tokens_per_s"] > 0
