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
from igds.experiment.estimate import n_train
from igds.experiment.grid import QUARTILE_METHODS, method_order, preset_of
from igds.experiment.stats import same_size_reference
from igds.method.baselines import BASELINES
from igds.method.presets import METHOD_PRESETS
from igds.store import ActivationStore


def test_demo_grid_has_the_issue_cells():
    cells = plan_cells(PRESETS["demo"])
    assert len(cells) == len(set(cells)) == 93  # 3 tasks x (2 pools x 14 + 5 quartile cells)
    per = [c for c in cells if c.task == "math" and c.pool_setting == "task-only"]
    by = {(c.method, c.ratio): sorted(x.seed for x in per if (x.method, x.ratio) == (c.method, c.ratio)) for c in per}
    assert by[("igds", 0.5)] == by[("random", 0.5)] == [0, 1, 2]
    assert by[("igds-paper", 0.5)] == by[("longest", 0.5)] == by[("shortest", 0.5)] == by[("full", 1.0)] == [0]
    # Random at every ratio the grid uses: the quartile blocks have Random of their size
    assert by[("random", 0.25)] == [0] and {m for m, r in by if r == 0.25} == {*QUARTILE_METHODS, "random"}
    assert {m for m, _ in by} == {"igds", "igds-paper", *QUARTILE_METHODS, "random", "loss", "ifd", "zip", "longest",
                                  "shortest", "full"}
    assert not any(c.method in QUARTILE_METHODS for c in cells if c.pool_setting == "mixed")
    # most informative first: every task's IGDS / Random / Longest / Shortest at ρ = 0.5 comes before any
    # quartile, extra seed or other method
    first = next(i for i, c in enumerate(cells) if c.method in QUARTILE_METHODS or c.seed > 0
                 or c.method not in ("igds", "random", "longest", "shortest"))
    assert first == 3 * 2 * 4 and {c.ratio for c in cells[:first]} == {0.5}


def test_quick_cells_are_demo_cells_with_the_same_settings():
    quick, demo = PRESETS["quick"], PRESETS["demo"]
    assert set(plan_cells(quick)) < set(plan_cells(demo))
    assert len(plan_cells(quick)) == 8  # igds, random, longest, shortest, loss, ifd, zip, full
    assert quick.finetune(0, 200) == demo.finetune(0, 200) and quick.evaluation("summarization") == demo.evaluation(
        "summarization") and quick.pool_limit == demo.pool_limit


def test_experiment_id_covers_the_method_provenance():
    cfg = PRESETS["demo"]
    prov = {"summarization": {"method": {"presets": {"default": {"effect_id": "e1", "fstar": [4005]}},
                                         "overrides": {"vetoed_features": []}}, "max_length": {"task-only": 216}}}
    base = experiment_id(cfg, prov)
    assert base.startswith("demo-") and experiment_id(cfg, prov) == base

    def changed(**kw):
        p = {"summarization": {**prov["summarization"], "method": {**prov["summarization"]["method"], **kw}}}
        return experiment_id(cfg, p)

    # a new F*, a veto or another preset's run: a new experiment
    assert changed(presets={"default": {"effect_id": "e1", "fstar": [4005, 798]}}) != base
    assert changed(overrides={"vetoed_features": [4005]}) != base
    assert changed(presets={"default": {"effect_id": "e1", "fstar": [4005]},
                            "paper": {"effect_id": "e2", "fstar": []}}) != base
    assert experiment_id(preset("demo", method_presets=("paper",)), prov) != base  # the grid config counts too
    # the recorded lengths are not identity: they follow from the grid, the pool and the tokenizer
    other = {"summarization": {**prov["summarization"], "max_length": {"task-only": 512}}}
    assert experiment_id(cfg, other) == base


def test_grid_methods_and_pools_come_from_the_registries():
    # every registered baseline but Full (always run, at ρ = 1) is compared, in registry order
    assert ExperimentConfig().baselines == tuple(m for m in BASELINES if m != "full")
    assert {"longest", "shortest"} <= set(ExperimentConfig().baselines)
    order = sorted(["full", "random", "igds-q2", "igds-paper", "igds", "longest", "igds-q1"], key=method_order)
    assert order == ["igds", "igds-paper", "igds-q1", "igds-q2", "random", "longest", "full"]
    assert ExperimentConfig().pool_settings == tuple(p for p in POOL_SETTINGS if p != "noisy")  # a control: opt-in
    assert ExperimentConfig().method_presets == tuple(METHOD_PRESETS) == ("default", "paper")
    assert [preset_of(m) for m in ("igds", "igds-paper", "igds-q3", "random")] == ["default", "paper", "default", None]


def test_config_validation_and_round_trip():
    cfg = preset("demo", seeds=(3, 4), tasks=("math",))
    assert ExperimentConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.finetune(4, 320).seed == 4 and cfg.finetune(4, 320).max_length == 320
    ev = cfg.evaluation("math")
    assert ev.n_examples == cfg.n_eval["math"] and ev.sample_seed == cfg.eval_seed
    with pytest.raises(ValueError, match="pool_settings"):
        ExperimentConfig(pool_settings=("everything",))
    with pytest.raises(ValueError, match="baselines"):
        ExperimentConfig(baselines=("oracle",))
    with pytest.raises(ValueError, match="method_presets"):
        ExperimentConfig(method_presets=("mine",))
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_a_verdict_is_never_drawn_between_sizes():
    mats = {("task-only", "random", 0.5): "r50", ("task-only", "random", 0.25): "r25", ("mixed", "random", 0.5): "m50"}
    assert same_size_reference(mats, "task-only", "igds", 0.5) == "r50"
    assert same_size_reference(mats, "task-only", "igds-q1", 0.25) == "r25"
    assert same_size_reference(mats, "mixed", "longest", 0.5) == "m50"
    # no Random of that size (or pool): no difference at all, rather than one against another size
    assert same_size_reference(mats, "task-only", "igds", 0.75) is None
    assert same_size_reference(mats, "mixed", "igds-q1", 0.25) is None
    assert same_size_reference(mats, "task-only", "full", 1.0) is None
    assert same_size_reference(mats, "task-only", "random", 0.5) is None


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
    # a quartile block trains on a quarter of the pool, rounded down
    q = [c for c in plan_cells(demo) if c.method == "igds-q1"][0]
    assert n_train(demo, q) == demo.pool_limit // 4
