"""The reproduction grid end to end on the tiny random model: cells run, a rerun continues without
duplicates, a smaller grid reuses the larger one's cells, and the summary matches the stored outputs."""

import numpy as np

from igds.demo import build_tiny_workspace, tiny_model
from igds.experiment import (
    QUARTILE_METHODS,
    ExperimentConfig,
    correlation_rows,
    experiment_cells,
    experiment_provenance,
    plan_cells,
    results_table,
    run_experiment,
)
from igds.method.config import ExtractConfig
from igds.method.recall import load_recall
from igds.method.selection import set_feature_override
from igds.store import ActivationStore
from igds.training.results import eval_outputs
from tests.helpers import tiny_workspace

# a small adapter; the sequence length comes from the data (the pool's 99th percentile, capped high enough
# for the byte-spelling tiny tokenizer)
TINY_FT = {"r": 4, "lora_alpha": 8, "batch_size": 8, "precision": "fp32"}
TINY = {"tasks": ("summarization",), "pool_limit": 16, "n_eval": {"summarization": 6}, "finetune_overrides": TINY_FT,
        "length_cap": 2048}


def _factory(store, parts):
    def load():  # a fresh model every time: peft injects the adapter in place
        return tiny_workspace(store, parts, tiny_model())
    return load


def _kw(store, parts):
    return {"store": store, "load_workspace": _factory(store, parts), "log": lambda m: None,
            "extract_cfg": ExtractConfig(max_length=96, shard_size=256)}


def test_grid_runs_resumes_reuses_and_summarizes(tmp_path):
    store = ActivationStore(tmp_path / "igds.duckdb")
    # the whole pool (limit_pool draws from it) and the whole probe split (the method presets recall on it)
    parts = build_tiny_workspace(store, n_train=1200, n_general=4000, n_probe=None)
    # the tiny random model validates nothing against the null: a pinned feature (one that fires on the
    # task) gives IGDS one to score with
    pin, other = load_recall(store, parts["recall_id"]).candidates[:2]
    set_feature_override(store, "summarization", parts["sae_key"], pin, "pin")
    cfg = ExperimentConfig(preset="tiny", pool_settings=("task-only",), baselines=("random", "longest"), seeds=(0, 1),
                           **TINY)
    kw = _kw(store, parts)
    cells = plan_cells(cfg)
    # igds, random, longest; the second seeds of igds and random; igds-paper, full; four quartiles and Random
    assert len(cells) == 12

    first = run_experiment(cfg, max_cells=3, report=tmp_path / "partial.md", **kw)
    assert (first["ran"], first["left"]) == (3, len(cells) - 3)
    text = (tmp_path / "partial.md").read_text()
    assert "## summarization" in text and "Not yet run (9 cells" in text and "3 of 12 cells finished" in text

    second = run_experiment(cfg, report=tmp_path / "r.md", **kw)
    assert second["experiment_id"] == first["experiment_id"]  # same grid, same method: the same experiment
    assert (second["ran"], second["left"]) == (len(cells) - 3, 0)
    # no duplicates: one fine-tune and one evaluation per cell
    assert store.scalar("SELECT count(*) FROM finetunes") == len(cells)
    assert store.scalar("SELECT count(*) FROM evals WHERE run_id <> 'base'") == len(cells)
    eid = first["experiment_id"]
    done = experiment_cells(store, eid)
    assert len(done) == len(cells) and (done.status == "done").all()
    assert done.amplification.notna().all() and done.control_amplification.notna().all()
    # nothing is cut: every selected example is trained on or counted as dropped
    assert (done.n_train + done.n_dropped == done.n_selected).all()

    # the quartile blocks: disjoint, equal-sized, in FRS order
    blocks = [store.selection_members(done.set_index("method").selection_id[m]) for m in QUARTILE_METHODS]
    assert len({len(b) for b in blocks}) == 1 and len(blocks[0]) == 16 // 4
    ids = [set(b.id) for b in blocks]
    assert sum(len(i) for i in ids) == len(set().union(*ids))
    assert all(hi.score.min() >= lo.score.max() for hi, lo in zip(blocks, blocks[1:], strict=False))

    # the summary agrees with the stored per-example outputs; differences only against Random of the same size
    res = results_table(store, eid)
    row = res[(res.method == "igds") & (res.ratio == 0.5)].iloc[0]
    assert row.n_runs == 2

    def mean_score(method, ratio):
        ids = done[(done.method == method) & (done.ratio == ratio)].eval_id
        return np.mean([eval_outputs(store, e).score.mean() for e in ids])

    assert np.isclose(row.score, mean_score("igds", 0.5))
    assert np.isclose(row.d_score, mean_score("igds", 0.5) - mean_score("random", 0.5))
    assert row.score_lo <= row.score <= row.score_hi and row.d_score_lo <= row.d_score <= row.d_score_hi
    q1 = res[res.method == "igds-q1"].iloc[0]
    assert np.isclose(q1.d_score, mean_score("igds-q1", 0.25) - mean_score("random", 0.25))
    by = res.set_index(["method", "ratio"])
    assert np.isnan(by.d_score[("random", 0.5)]) and np.isnan(by.d_score[("full", 1.0)])

    # the primary contrast over these cells: seed means of the reference NLL, IGDS − Random, a t-interval
    from igds.experiment.primary import power_plan, primary_contrasts

    prim = primary_contrasts(store, eid, tasks=("summarization", "math")).set_index("task")
    nll_means = {m: [eval_outputs(store, e).nll.mean() for e in done[(done.method == m) & (done.ratio == 0.5)].eval_id]
                 for m in ("igds", "random")}
    s = prim.loc["summarization"]
    assert (s.n_seeds_igds, s.n_seeds_random) == (2, 2) and s.lo <= s.estimate <= s.hi
    assert np.isclose(s.estimate, np.mean(nll_means["igds"]) - np.mean(nll_means["random"]))
    assert s.p_holm == min(1.0, s.p) and prim.verdict["math"] == "not yet run"  # a family of one
    # at the larger arm's spread in both arms, 2 seeds detect at most what the contrast's own design does
    plan = power_plan(max(s.seed_sd_igds, s.seed_sd_random), targets=(s.detectable,), n_seeds=2)
    assert plan.seeds_needed.iloc[0] <= 2 and 0 <= plan.target.iloc[-1] <= s.detectable

    corr = correlation_rows(store, eid).set_index("y_name")
    # one fixed size: ρ = 0.5 has igds x2, random x2, longest, igds-paper; ρ = 0.25 the four blocks and Random
    assert corr.n["metric_gain ~ amplification | task-only ρ=0.5"] == 6
    assert corr.n["nll_gain ~ control_amplification | task-only ρ=0.25"] == 5
    assert corr.n["metric_gain ~ amplification | all cells | partial log n_train"] == len(cells)
    prov = experiment_provenance(store, eid)["summarization"]
    assert set(prov["presets"]) == {"default", "paper"} and prov["features"] == [pin]
    assert len(prov["control"]) == 1 and prov["control"] != [pin]

    text = (tmp_path / "r.md").read_text()
    assert "## Method presets and their validated features" in text and "| summarization | paper |" in text
    assert "## The controlled test: FRS quartiles at a fixed size" in text and "r-quartiles.svg" in text
    assert (tmp_path / "r-quartiles.svg").read_text().startswith("<svg")

    # a smaller grid shares cells with the larger one: it finds all of them in the store
    sub = ExperimentConfig(preset="tiny-sub", pool_settings=("task-only",), baselines=("random",), seeds=(0,),
                           quartiles=False, method_presets=("default",), **TINY)
    third = run_experiment(sub, report=None, **kw)
    assert (third["ran"], third["reused"]) == (0, len(plan_cells(sub)))

    # a veto changes the method: a new experiment, whose baseline cells come from the store
    set_feature_override(store, "summarization", parts["sae_key"], pin, None)
    set_feature_override(store, "summarization", parts["sae_key"], other, "pin")
    fourth = run_experiment(sub, report=None, **kw)
    assert fourth["experiment_id"] != third["experiment_id"]
    assert fourth["reused"] == len(plan_cells(sub)) - 1 and fourth["ran"] == 1  # only IGDS selects differently


def test_igds_cells_without_validated_features_are_empty_with_the_reason(tmp_path):
    store = ActivationStore(tmp_path / "igds.duckdb")
    parts = build_tiny_workspace(store, n_train=1200, n_general=4000, n_probe=None)
    cfg = ExperimentConfig(preset="tiny-empty", pool_settings=("task-only",), baselines=("random",), seeds=(0,),
                           quartiles=False, method_presets=("default",), **TINY)
    kw = _kw(store, parts)
    out = run_experiment(cfg, report=tmp_path / "r.md", **kw)
    # the tiny random model: nothing beats the null, so F* is empty and IGDS has nothing to score with
    assert (out["ran"], out["empty"], out["left"]) == (2, 1, 0)  # random and full run; igds is empty
    cells = experiment_cells(store, out["experiment_id"]).set_index("method")
    assert cells.status.to_dict() == {"full": "done", "igds": "empty", "random": "done"}
    assert "none of the" in cells.note["igds"] and "largest effect" in cells.note["igds"]
    assert store.scalar("SELECT count(*) FROM selections WHERE method = 'igds'") == 0  # no arbitrary 'selection'
    text = (tmp_path / "r.md").read_text()
    assert "2 of 3 cells finished, 1 empty" in text and "Empty (1 cells: task-only igds@0.5 seed 0)" in text
    assert "Not yet run" not in text and "| summarization | – | | | | 0 | not defined" in text

    # the remedy the message names: pin a feature. The method changed, so this is a new experiment; its
    # Random and Full cells are found in the store and only IGDS runs
    set_feature_override(store, "summarization", parts["sae_key"], 1, "pin")
    again = run_experiment(cfg, report=None, **kw)
    assert again["experiment_id"] != out["experiment_id"]
    assert (again["ran"], again["reused"], again["empty"], again["left"]) == (1, 2, 0, 0)
    assert experiment_cells(store, again["experiment_id"]).status.eq("done").all()

    # the cells of record round-trip: exported, imported into an empty store (the corpus only, as a fresh clone
    # has), the dry run finds every cell and the report regenerates byte for byte
    from igds.data.records import Example
    from igds.experiment import plan_experiment, summarize, write_report
    from igds.experiment.record import export_experiment, import_grid_records

    eid = again["experiment_id"]
    summarize(store, eid)
    write_report(store, eid, tmp_path / "before.md")
    files = export_experiment(store, eid, tmp_path / "grid")
    assert sorted(p.name for p in files) == ["summarization.base.zip",
                                             "summarization.task-only.full@1.s0.zip",
                                             "summarization.task-only.igds@0.5.s0.zip",
                                             "summarization.task-only.random@0.5.s0.zip"]
    fresh = ActivationStore(tmp_path / "fresh.duckdb")
    rows = store.query_df("SELECT id, task, source, split, prompt, response FROM examples")
    fresh.add_examples([Example(*r) for r in rows.itertuples(index=False)], dataset="corpus")
    assert plan_experiment(cfg, fresh)["experiment_id"] is None  # nothing to go by yet
    imported = import_grid_records(fresh, tmp_path / "grid" / eid)
    assert len(imported) == 4 and all(i.changed for i in imported)
    plan = plan_experiment(cfg, fresh)
    assert plan["experiment_id"] == eid and plan["todo"] == []
    summarize(fresh, eid)
    write_report(fresh, eid, tmp_path / "after.md")
    assert (tmp_path / "after.md").read_bytes() == (tmp_path / "before.md").read_bytes()
    assert import_grid_records(fresh, tmp_path / "grid") == []  # nothing new: nothing imported
    assert files == export_experiment(store, eid, tmp_path / "grid")  # unchanged rows keep the files
