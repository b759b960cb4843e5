"""The reproduction grid end to end on the tiny random model: cells run, a rerun continues without
duplicates, a smaller grid reuses the larger one's cells, and the summary matches the stored outputs."""

import numpy as np

from igds.demo import build_tiny_workspace, tiny_model
from igds.experiment import (
    ExperimentConfig,
    correlation_rows,
    experiment_cells,
    plan_cells,
    results_table,
    run_experiment,
)
from igds.method.extract import ExtractConfig
from igds.method.intervene import InterventionConfig
from igds.method.selection import set_feature_override
from igds.store import ActivationStore
from igds.training.results import eval_outputs
from igds.workflow.workspace import Workspace

# the tiny tokenizer spells bytes: room for the response after the prompt, and a small adapter
TINY_FT = {"max_length": 640, "r": 4, "lora_alpha": 8, "batch_size": 8, "precision": "fp32"}


def _factory(store, parts):
    def load():  # a fresh model every time: peft injects the adapter in place
        return Workspace(store=store, model=tiny_model(), tokenizer=parts["tokenizer"], sae=parts["sae"],
                         model_key=parts["model_key"], sae_key=parts["sae_key"], site=parts["site"], sae_info={})
    return load


def test_grid_runs_resumes_reuses_and_summarizes(tmp_path):
    store = ActivationStore(tmp_path / "igds.duckdb")
    parts = build_tiny_workspace(store, n_train=1200, n_general=4000)  # the whole pool: limit_pool draws from it
    cfg = ExperimentConfig(preset="tiny", tasks=("summarization",), pool_limit=16, igds_ratios=(),
                           baselines=("random",), seeds=(0, 1), n_eval={"summarization": 6}, finetune_overrides=TINY_FT)
    kw = {"store": store, "load_workspace": _factory(store, parts), "extract_cfg": ExtractConfig(max_length=96,
          shard_size=256), "log": lambda m: None}
    n_cells = len(plan_cells(cfg))
    assert n_cells == 10  # per pool: igds, random, full at seed 0; igds, random at seed 1

    first = run_experiment(cfg, max_cells=3, report=tmp_path / "partial.md", **kw)
    assert (first["ran"], first["left"]) == (3, n_cells - 3)
    text = (tmp_path / "partial.md").read_text()
    assert "## summarization" in text and "Not yet run (7 cells" in text and "3 of 10 cells finished" in text

    second = run_experiment(cfg, report=None, **kw)
    assert (second["ran"], second["left"]) == (n_cells - 3, 0)
    # no duplicates: one fine-tune and one evaluation per cell
    assert store.scalar("SELECT count(*) FROM finetunes") == n_cells
    assert store.scalar("SELECT count(*) FROM evals WHERE run_id <> 'base'") == n_cells
    cells = experiment_cells(store, first["experiment_id"])
    assert len(cells) == n_cells and (cells.status == "done").all() and cells.amplification.notna().all()

    # the pool limit: 16 task examples, plus 16 general ones when mixed
    pools = store.query_df("SELECT pool_setting, method, n_pool, n_selected FROM selections WHERE name LIKE 'exp-%'")
    assert set(pools[pools.pool_setting == "task-only"].n_pool) == {16}
    assert set(pools[pools.pool_setting == "mixed"].n_pool) == {32}
    assert set(pools[pools.method == "full"].n_selected) == {16, 32}

    # a smaller grid shares cells with the larger one: it finds all of them in the store
    sub = ExperimentConfig(preset="tiny-sub", tasks=("summarization",), pool_settings=("task-only",), pool_limit=16,
                           igds_ratios=(), baselines=("random",), seeds=(0,), n_eval={"summarization": 6},
                           finetune_overrides=TINY_FT)
    third = run_experiment(sub, report=None, **kw)
    assert (third["ran"], third["reused"]) == (0, 3)
    assert store.scalar("SELECT count(*) FROM finetunes") == n_cells

    # the summary agrees with the stored per-example outputs
    res = results_table(store, first["experiment_id"])
    assert len(res) == 6
    row = res[(res.pool_setting == "task-only") & (res.method == "igds") & (res.ratio == 0.5)].iloc[0]
    assert row.n_runs == 2

    def mean_score(method):
        ids = cells[(cells.pool_setting == "task-only") & (cells.method == method) & (cells.ratio == 0.5)].eval_id
        return np.mean([eval_outputs(store, e).score.mean() for e in ids])

    assert np.isclose(row.score, mean_score("igds"))
    assert np.isclose(row.d_score, mean_score("igds") - mean_score("random"))
    assert row.score_lo <= row.score <= row.score_hi and row.d_score_lo <= row.d_score <= row.d_score_hi
    rnd = res[(res.pool_setting == "task-only") & (res.method == "random")].iloc[0]
    assert np.isnan(rnd.d_score)  # Random is the reference of the differences
    corr = correlation_rows(store, first["experiment_id"])
    n_points = corr.set_index("y_name").n
    assert n_points["metric_gain"] == n_points["nll_gain"] == n_cells
    # one pool at ρ = 0.5: igds and random at two seeds (Full and the other pool are left out)
    assert n_points["metric_gain at ρ=0.5, task-only"] == n_points["nll_gain at ρ=0.5, mixed"] == 4


def test_igds_cells_without_validated_features_are_empty_with_the_reason(tmp_path):
    store = ActivationStore(tmp_path / "igds.duckdb")
    # a filter no feature passes: F* is empty, so IGDS has nothing to score with
    parts = build_tiny_workspace(store, n_train=1200, n_general=4000,
                                 interventions=InterventionConfig(delta=1e3, require_significance=False))
    assert parts["kept"] == []
    cfg = ExperimentConfig(preset="tiny-empty", tasks=("summarization",), pool_settings=("task-only",), pool_limit=16,
                           igds_ratios=(), baselines=("random",), seeds=(0,), n_eval={"summarization": 6},
                           finetune_overrides=TINY_FT)
    kw = {"store": store, "load_workspace": _factory(store, parts), "extract_cfg": ExtractConfig(max_length=96,
          shard_size=256), "log": lambda m: None}
    out = run_experiment(cfg, report=tmp_path / "r.md", **kw)
    assert (out["ran"], out["empty"], out["left"]) == (2, 1, 0)  # random and full run; igds is empty
    cells = experiment_cells(store, out["experiment_id"]).set_index("method")
    assert cells.status.to_dict() == {"full": "done", "igds": "empty", "random": "done"}
    assert "none of the" in cells.note["igds"] and "largest effect" in cells.note["igds"]
    assert store.scalar("SELECT count(*) FROM selections WHERE method = 'igds'") == 0  # no arbitrary 'selection'
    text = (tmp_path / "r.md").read_text()
    assert "2 of 3 cells finished, 1 empty" in text and "Empty (1 cells: task-only igds@0.5 seed 0)" in text
    assert "Not yet run" not in text and "| summarization | – | 0 | not defined" in text

    # the remedy the message names: pin a feature, and the rerun fills the cell
    set_feature_override(store, "summarization", parts["sae_key"], 1, "pin")
    again = run_experiment(cfg, report=None, **kw)
    assert (again["ran"], again["empty"], again["left"]) == (1, 0, 0)  # the two done cells are not even checked
    assert experiment_cells(store, out["experiment_id"]).status.eq("done").all()
