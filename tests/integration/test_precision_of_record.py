"""One precision of record (issue 26): ``auto`` computes every result of record in float32 on any CPU.

The tiny model's stages run twice with ``auto`` everywhere (the model's dtype, the interventions' precision, as a
workspace's defaults are), once as a CPU with bf16 instructions and once as one without (``IGDS_CPU_BF16``): recall's
candidates, F*, the effects, the selections and the evaluation are the same, and they are the golden fixture's
float32 ones. Before, ``auto`` loaded bf16 weights and autocast the interventions on the first class.
"""

from igds import settings
from igds.executor.config import ExecutorConfig
from tests.integration import test_golden_stages as golden
from tests.integration.test_golden_stages import folders  # noqa: F401 (fixture)


def test_auto_is_float32_whatever_the_cpu_class(folders, tmp_path, monkeypatch):  # noqa: F811
    got = {}
    for has_bf16 in ("1", "0"):
        monkeypatch.setenv("IGDS_CPU_BF16", has_bf16)
        settings.cpu_has_bf16.cache_clear()
        assert settings.cpu_has_bf16() == (has_bf16 == "1")
        got[has_bf16] = golden.run_stages(tmp_path / f"bf16-{has_bf16}.duckdb", folders, ExecutorConfig(),
                                          dtype="auto", precision="auto")
    monkeypatch.delenv("IGDS_CPU_BF16")
    settings.cpu_has_bf16.cache_clear()
    assert got["1"] == got["0"]  # candidates, F*, effects, selections, evaluation: equal, not close
    golden.check(got["1"], "local")  # and the float32 golden fixture's
