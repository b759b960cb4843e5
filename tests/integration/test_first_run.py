"""The first run does the least first (issue "Fast on the CPU"), on the tiny model over the shipped corpus: what recall
reads is extracted before recall, candidates get their contexts and a quick look before the task's pool is extracted,
the full filter runs once the task-only pool is extracted (so a selection is live when F* is stored), the general
records come last, and after each stage the job learns the later stages' estimates."""

from __future__ import annotations

import numpy as np
import pytest

from igds.demo import save_tiny_model, save_tiny_sae
from igds.method.intervene import InterventionConfig
from igds.method.pool import pool_frame
from igds.modeling.load import ModelSpec
from igds.modeling.sae import SaeSpec
from igds.progress import StagedProgress
from igds.scope import PoolSpec
from igds.store import ActivationStore
from igds.workflow import bootstrap as boot
from igds.workflow.explore import CONTEXT_K, CONTEXT_WINDOW, default_pool, task_state
from igds.workflow.stages import latest_effects, latest_quick_look
from igds.workflow.workspace import BootstrapConfig

TASK = "summarization"


def _snapshot(store: ActivationStore) -> dict:
    state = task_state(store, TASK)
    out = {"state": state, "look": latest_quick_look(store, TASK),
           "pool": default_pool(store, TASK, state.extract_run) if state.extract_run else None}
    if state.recall_id:
        out["contexts"] = store.context_features(state.extract_run, CONTEXT_K, CONTEXT_WINDOW)
    for setting in ("task-only", "mixed"):
        try:
            out[setting] = len(pool_frame(store, TASK, PoolSpec(setting=setting), state.extract_run))
        except ValueError:
            out[setting] = None  # not extracted yet
    return out


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("first_run")
    store = ActivationStore(tmp / "igds.duckdb")
    cfg = BootstrapConfig(model=ModelSpec(name_or_path=str(save_tiny_model(tmp / "model")), dtype="float32",
                                          device="cpu"),
                          sae=SaeSpec(source=str(save_tiny_sae(tmp / "sae")), min_explained_variance=-1e9),
                          intervene=InterventionConfig(null_directions=4, null_features=4, sweep_top=2))
    seen = {"stages": [], "plans": [], "at": {}}

    def on_stage(name, index, of):
        seen["stages"].append((name, index, of))
        seen["at"][name] = _snapshot(store)  # what the pages could show when the stage begins

    summary = boot.bootstrap(cfg, store, StagedProgress(lambda *a: None, on_stage,
                                                        lambda later: seen["plans"].append(later)))
    return store, cfg, summary, seen


def test_stages_run_in_order_and_each_reports_the_later_ones(first_run):
    _, _, summary, seen = first_run
    assert [s[0] for s in seen["stages"]] == list(boot.STAGES)
    assert [s[1] for s in seen["stages"]] == list(range(1, len(boot.STAGES) + 1))
    # as each stage after the model begins, the stages after it, in order
    assert [[n for n, _ in p] for p in seen["plans"]] == [list(boot.STAGES[i:]) for i in range(2, len(boot.STAGES) + 1)]
    after_look = seen["plans"][boot.STAGES.index(boot.QUICK_LOOK)]  # told as the task pool's extraction begins
    assert all(s is not None and s >= 0 for _, s in after_look), after_look  # every rest stage estimated by then
    assert set(summary["stages"]) == set(boot.STAGES[1:])


def test_candidates_contexts_and_quick_look_come_before_the_pool(first_run):
    _, cfg, _, seen = first_run
    at_pool = seen["at"][boot.extraction_stage(boot.TASK_POOL)]
    state = at_pool["state"]
    assert state.n_candidates > 0 and state.effect_id is None  # recalled, the full filter not begun
    assert len(at_pool["contexts"]) == state.n_candidates  # every candidate has its contexts
    look = at_pool["look"]
    assert look is not None and len(look.table) == min(cfg.quick_look.top, state.n_candidates)
    assert len(look.null) == cfg.quick_look.null_directions + cfg.quick_look.null_features
    assert np.isfinite(look.detectable) and look.detectable > 0
    assert at_pool["task-only"] is None and at_pool["mixed"] is None  # the pool is not extracted yet


def test_the_filter_runs_on_an_extracted_task_pool_and_the_general_records_come_last(first_run):
    store, _, _, seen = first_run
    at_filter = seen["at"][boot.FILTER]
    assert at_filter["task-only"] > 0 and at_filter["mixed"] is None
    at_general = seen["at"][boot.extraction_stage(boot.GENERAL_POOL)]
    assert at_general["state"].effect_status == "done"  # F* is stored ...
    assert at_general["pool"] == "task-only" and at_general["task-only"] > 0  # ... and a task-only selection is live
    end = _snapshot(store)
    assert end["pool"] == "mixed" and end["mixed"] > end["task-only"]
    assert store.run(end["state"].extract_run)["status"] == "done"


def test_the_quick_look_measures_what_the_full_filter_measures(first_run):
    store, _, _, _ = first_run
    look, full = latest_quick_look(store, TASK), latest_effects(store, TASK)
    est = full.attribution.set_index("feature").est_amplify.abs()
    top = sorted(full.verdict.feature.astype(int), key=lambda f: (-est.get(f, 0.0), f))[: len(look.table)]
    assert sorted(look.table.feature) == sorted(top)  # the strongest candidates by attribution
    amp = full.amplification.set_index("feature").effect
    np.testing.assert_allclose(look.table.set_index("feature").effect, amp.loc[look.table.feature], atol=1e-5)


def test_contexts_are_refreshed_over_the_whole_run(first_run):
    store, _, _, _ = first_run
    state = task_state(store, TASK)
    feats = sorted(store.context_features(state.extract_run, CONTEXT_K, CONTEXT_WINDOW))
    assert len(feats) == state.n_candidates
    top = store.run_top_examples(state.extract_run, feats, CONTEXT_K).groupby("feature").example_id.agg(set)
    cached = store.feature_contexts(state.extract_run, CONTEXT_K, CONTEXT_WINDOW, feats)
    assert cached.groupby("feature").example_id.agg(set).to_dict() == top.to_dict()
    # the run grew after the first contexts: some top example comes from the pool extracted later
    assert set(cached.source) - {"reference"} or set(cached.task) != {TASK}
