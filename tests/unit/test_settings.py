"""Environment overrides read by igds.settings."""

from igds import settings
from igds.modeling.load import resolve_dtype


def test_cpu_bf16_override_picks_the_float32_class(monkeypatch):
    for forced, want in (("0", False), ("1", True)):
        monkeypatch.setenv("IGDS_CPU_BF16", forced)
        settings.cpu_has_bf16.cache_clear()
        assert settings.cpu_has_bf16() is want
    monkeypatch.setenv("IGDS_CPU_BF16", "0")
    settings.cpu_has_bf16.cache_clear()
    import torch

    assert resolve_dtype("auto", "cpu") == torch.float32
    monkeypatch.delenv("IGDS_CPU_BF16")
    settings.cpu_has_bf16.cache_clear()


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    import torch

    monkeypatch.delenv("IGDS_DEVICE", raising=False)
    for cuda, mps, want in ((True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda m=mps: m)
        assert settings.resolve_device("auto") == want
    assert settings.resolve_device("cpu") == "cpu"  # a named device is kept
    assert not settings.fast_bf16_by_default("mps")  # float32 there: the precision of record
