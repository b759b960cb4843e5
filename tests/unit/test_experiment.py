"""The reproduction grid: cell plans, presets sharing cells, pool subsampling, bootstrap intervals."""

import numpy as np
import pytest

from igds.data.corpus import POOL_SETTINGS
from igds.experiment import (
    PRESETS,
    ExperimentConfig,
    boot_means,
    estimate_seconds,
    experiment_id,
    plan_cells,
    preset,
    verdict,
)
from igds.experiment.grid import METHOD_ORDER
from igds.method.baselines import BASELINES
from igds.store import ActivationStore


def test_demo_grid_has_the_issue_cells():
    cells = plan_cells(PRESETS["demo"])
    assert len(cells) == len(set(cells)) == 72  # 3 tasks x 2 pools x 12
    per = [c for c in cells if c.task == "math" and c.pool_setting == "mixed"]
    by = {(c.method, c.ratio): sorted(x.seed for x in per if (x.method, x.ratio) == (c.method, c.ratio)) for c in per}
    assert by[("igds", 0.5)] == by[("random", 0.5)] == [0, 1, 2]
    assert by[("igds", 0.25)] == by[("igds", 0.75)] == by[("full", 1.0)] == [0]
    assert {m for m, _ in by} == {"igds", "random", "loss", "ifd", "zip", "full"}
    # every method's first seed comes before any second seed: a partial run covers all methods
    first_s1 = next(i for i, c in enumerate(per) if c.seed == 1)
    assert all(c.seed == 0 for c in per[:first_s1]) and len(per[:first_s1]) == 8


def test_quick_cells_are_demo_cells_with_the_same_settings():
    quick, demo = PRESETS["quick"], PRESETS["demo"]
    assert set(plan_cells(quick)) < set(plan_cells(demo))
    assert len(plan_cells(quick)) == 8
    assert quick.finetune(0) == demo.finetune(0) and quick.evaluation("summarization") == demo.evaluation(
        "summarization") and quick.pool_limit == demo.pool_limit
    assert experiment_id(quick) != experiment_id(demo)


def test_grid_methods_and_pools_come_from_the_registries():
    # every registered baseline but Full (always run, at ρ = 1) is compared, in registry order
    assert ExperimentConfig().baselines == tuple(m for m in BASELINES if m != "full")
    assert list(METHOD_ORDER) == ["igds", *BASELINES]
    assert ExperimentConfig().pool_settings == POOL_SETTINGS


def test_config_validation_and_round_trip():
    cfg = preset("demo", seeds=(3, 4), tasks=("math",))
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.finetune(4).seed == 4 and cfg.evaluation("math").n_examples == cfg.n_eval["math"]
    with pytest.raises(ValueError, match="pool_settings"):
        ExperimentConfig(pool_settings=("everything",))
    with pytest.raises(ValueError, match="baselines"):
        ExperimentConfig(baselines=("oracle",))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_boot_means_single_seed_is_an_item_bootstrap_and_pairing_cancels():
    rng = np.random.default_rng(0)
    mat = rng.normal(0.3, 0.1, size=(1, 200))
    items = rng.integers(0, 200, size=(500, 200))
    bm = boot_means(mat, items, np.random.default_rng(1))
    assert np.allclose(bm, mat[0, items].mean(axis=1))
    lo, hi = np.percentile(bm, [2.5, 97.5])
    assert lo < mat.mean() < hi and hi - lo < 0.05
    # the same items for two identical methods: the paired difference is exactly zero
    three = np.vstack([mat, mat, mat])
    assert np.allclose(boot_means(three, items, np.random.default_rng(2)) - bm, 0)


def test_seed_spread_widens_the_interval():
    rng = np.random.default_rng(0)
    items = rng.integers(0, 100, size=(1000, 100))
    base = rng.normal(0.3, 0.05, size=100)
    tight = np.vstack([base, base, base])
    spread = np.vstack([base - 0.05, base, base + 0.05])
    w_tight = np.ptp(np.percentile(boot_means(tight, items, np.random.default_rng(1)), [2.5, 97.5]))
    w_spread = np.ptp(np.percentile(boot_means(spread, items, np.random.default_rng(1)), [2.5, 97.5]))
    assert w_spread > 2 * w_tight


def test_verdict_reads_the_interval():
    assert verdict(0.01, 0.05) == "better" and verdict(-0.05, -0.01) == "worse" and verdict(-0.01, 0.02) == "n.s."
    assert verdict(-0.3, -0.1, higher_is_better=False) == "better"  # lower NLL


def test_estimate_grows_with_the_grid(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    quick, demo = PRESETS["quick"], PRESETS["demo"]
    t_quick, t_demo = estimate_seconds(quick, plan_cells(quick), store), estimate_seconds(demo, plan_cells(demo), store)
    assert 0 < t_quick < t_demo
    assert estimate_seconds(quick, plan_cells(quick), store, tasks_needing_interventions=1) > t_quick
