"""Every page renders on an empty and on a demo workspace, and each has a real interaction."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from igds.store import ActivationStore

ROOT = Path(__file__).resolve().parents[2]
from igds.ui.pages import PAGES as PAGE_TABLE  # noqa: E402

PAGES = [p[0] for p in PAGE_TABLE]


@pytest.fixture(scope="module")
def demo_store_file(tmp_path_factory):
    import torch

    from igds.demo import build_tiny_workspace

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("demo") / "igds.duckdb"
    build_tiny_workspace(ActivationStore(path), with_runs=True)
    return path


@pytest.fixture
def demo_store(demo_store_file, tmp_path, monkeypatch):
    path = tmp_path / "igds.duckdb"
    shutil.copy(demo_store_file, path)
    monkeypatch.setenv("IGDS_STORE", str(path))
    return ActivationStore(path)


def app(page=None):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_an_empty_workspace(page):
    at = app(page)
    assert at.title and at.title[0].value
    if page != PAGES[0]:
        assert at.info, "an empty workspace must say what to do first"


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_demo_workspace(demo_store, page):
    at = app(page)
    assert not at.info or page == PAGES[0] or all("first" not in i.value for i in at.info)


def selected_count(at) -> int:
    m = next(m for m in at.metric if m.label == "Selected")
    return int(m.value.split("/")[0].replace(",", ""))


def test_ratio_slider_sets_exact_count(demo_store):
    at = app("pages/4_selection.py")
    pool = 240  # 120 summarization train + 120 general in the tiny workspace (mixed pool)
    assert selected_count(at) == pool // 2
    at.slider(key="sel_ratio").set_value(0.25).run()
    assert not at.exception
    assert selected_count(at) == 60


def test_rejecting_an_example_removes_it_and_pinning_keeps_it(demo_store):
    from igds.method.selection import set_example_override

    at = app("pages/4_selection.py")
    table = at.dataframe(key="sel_table").value
    top = table.example_id.iloc[0]
    set_example_override(demo_store, "summarization", [top], "reject")
    at.run()
    assert top not in set(at.dataframe(key="sel_table").value.example_id)
    assert selected_count(at) == 120  # the ratio still fills the count from the rest


def test_vetoing_a_feature_rescores_the_pool(demo_store):
    from igds.workflow.explore import task_state
    from igds.workflow.stages import latest_effects

    kept = latest_effects(demo_store, "summarization").kept
    at = app("pages/2_features.py")
    at.number_input(key="feat_id").set_value(kept[0]).run()
    at.button(key="feat_veto").click().run()
    assert not at.exception
    ov = demo_store.query_df("SELECT feature, action FROM feature_overrides")
    assert list(ov.feature) == [kept[0]] and list(ov.action) == ["veto"]
    sel = app("pages/4_selection.py")
    assert next(m for m in sel.metric if m.label == "Validated features used").value == str(len(kept) - 1)
    assert task_state(demo_store, "summarization").n_kept == len(kept)  # the measurement itself is unchanged


def test_feature_search_filters_the_table(demo_store):
    at = app("pages/2_features.py")
    n = len(at.dataframe(key="feat_table").value)
    at.text_input(key="feat_search").set_value("no-such-token-xyz").run()
    assert len(at.dataframe(key="feat_table").value) == 0 and n > 0


def test_interventions_switch_to_ablation_view(demo_store):
    at = app("pages/3_interventions.py")
    at.segmented_control(key="int_kind").set_value("ablate").run()
    assert not at.exception
    assert any("ablate effect" in (c.proto.spec or "") for c in at.get("plotly_chart"))


def test_save_selection_stores_it(demo_store):
    before = demo_store.scalar("SELECT count(*) FROM selections")
    at = app("pages/4_selection.py")
    at.button(key="sel_save").click().run()
    assert not at.exception
    assert demo_store.scalar("SELECT count(*) FROM selections") == before + 1
    n = demo_store.scalar("SELECT n_selected FROM selections WHERE method = 'igds' AND pool_setting = 'mixed'")
    assert n == 120


@pytest.mark.parametrize("pool", ["mixed", "task-only"])
def test_saved_selection_is_what_the_slider_showed(demo_store, pool):
    at = app("pages/4_selection.py")
    at.selectbox(key="sel_pool").set_value(pool).run()
    at.number_input(key="sel_pool_limit").set_value(40).run()
    at.slider(key="sel_ratio").set_value(0.35).run()
    assert not at.exception
    shown = list(at.dataframe(key="sel_table").value.example_id)
    n_pool = int(next(m for m in at.metric if m.label == "Selected").value.split("/")[1].replace(",", ""))
    assert n_pool == (80 if pool == "mixed" else 40) and len(shown) == int(np.ceil(0.35 * n_pool))
    at.button(key="sel_save").click().run()
    assert not at.exception
    sid = demo_store.scalar("SELECT selection_id FROM selections WHERE method = 'igds' ORDER BY created DESC LIMIT 1")
    from igds.method.selection import load_selection

    info, members = load_selection(demo_store, sid)
    assert list(members.id) == shown  # example for example, in rank order
    assert info["n_pool"] == n_pool and info["lineage"]["selection"]["pool_limit"] == 40


def test_export_writes_files_with_a_manifest(demo_store, tmp_path):
    import json
    import os

    at = app("pages/5_finetune.py")
    at.text_input(key="exp_name").set_value("my-export").run()
    at.selectbox(key="exp_fmt").set_value("parquet").run()
    at.button(key="exp_go").click().run()
    assert not at.exception and at.success
    folder = Path(os.environ["IGDS_HOME"]) / "exports" / "my-export"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (folder / "data.parquet").exists() and manifest["n_examples"] > 0


def test_finetune_button_starts_a_job_with_the_form_settings(demo_store, monkeypatch):
    started = []
    monkeypatch.setattr("igds.jobs.start_job", lambda kind, params: started.append((kind, params)) or "job-1")
    at = app("pages/5_finetune.py")
    at.number_input(key="ft_r").set_value(4).run()
    at.button(key="ft_job_start").click().run()
    assert not at.exception
    kind, params = started[0]
    assert kind == "finetune" and params["finetune"]["r"] == 4
    assert params["selection_id"] == at.selectbox(key="ft_selection").value


def test_finetune_page_shows_dropped_long_examples(demo_store):
    from igds.training.results import record_finetune

    at = app("pages/5_finetune.py")
    sid = at.selectbox(key="ft_selection").value
    record_finetune(demo_store, "ft-many", "summarization", {"n_train": 90, "n_dropped": 10, "status": "done"},
                    {"max_length": 192}, sid)
    record_finetune(demo_store, "ft-few", "summarization", {"n_train": 199, "n_dropped": 1, "status": "done"},
                    {"max_length": 256}, sid)
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.warning if "ft-many" in w.value]
    assert len(warnings) == 1 and "dropped 10 of 100 examples longer than 192 tokens" in warnings[0]
    assert not any("ft-few" in w.value for w in at.warning)  # 0.5% of the selection: a caption only
    assert any("ft-few" in c.value and "dropped 1 of 200 examples longer than 256 tokens" in c.value
               for c in at.caption)


def test_results_show_runs_and_switch_gain(demo_store):
    at = app("pages/6_results.py")
    runs = at.dataframe[0].value
    assert set(runs.method) == {"igds", "random"} and runs.amplification.notna().all()
    at.segmented_control(key="res_y").set_value("nll_gain").run()
    assert not at.exception
    assert any("nll_gain" in (c.proto.spec or "") for c in at.get("plotly_chart"))


def tiny_workspace(store=None):
    """The demo workspace's model, tokenizer and SAE (the same seeds build_tiny_workspace uses)."""
    from types import SimpleNamespace

    import torch

    from igds.demo import tiny_model, tiny_sae, tiny_tokenizer

    torch.set_num_threads(1)
    return SimpleNamespace(store=store, model=tiny_model(), tokenizer=tiny_tokenizer(), sae_key="tiny-sae",
                           sae=tiny_sae(d_in=32, layer=1), site="blocks.1.hook_resid_post")


def test_features_page_leads_with_cached_contexts_then_the_logit_lens(demo_store, monkeypatch):
    from igds.workflow.explore import ensure_contexts, features_table, task_state

    state = task_state(demo_store, "summarization")
    table = features_table(demo_store, "summarization")
    first = int(table[table.verdict == "kept"].feature.iloc[0])  # the page opens on the first validated feature
    ensure_contexts(tiny_workspace(demo_store), state.extract_run, [first])
    monkeypatch.setattr("igds.ui.resources.get_workspace", lambda run_id=None: pytest.fail("the page ran the model"))
    at = app("pages/2_features.py")
    heads = [h.value for h in at.subheader]
    assert heads.index("Top-activating contexts") < heads.index("Logit lens") < heads.index("Activation histogram")
    spans = [m.value for m in at.markdown if "rgba(255,140,0" in m.value]
    assert spans and "outline" in spans[0], "the cached contexts were not rendered with their max token"
    table = at.dataframe(key="feat_table").value.set_index("feature")
    assert table.contexts[first].startswith('"') and (table.contexts.drop(first) == "").all()
    assert not [b for b in at.button if b.key == "feat_ctx"]


def test_feature_contexts_computed_on_demand(demo_store, monkeypatch):
    ws = tiny_workspace()
    asked = []
    monkeypatch.setattr("igds.ui.resources.get_workspace", lambda run_id=None: asked.append(run_id) or ws)
    at = app("pages/2_features.py")
    assert not [m for m in at.markdown if "rgba(255,140,0" in m.value]
    at.button(key="feat_ctx").click().run()
    assert not at.exception
    assert [m.value for m in at.markdown if "rgba(255,140,0" in m.value], "token highlights were not rendered"
    assert "contexts" in at.dataframe(key="feat_table").value
    # the model and SAE of the extraction run the page shows, not whatever the workspace uses now
    from igds.workflow.explore import task_state

    assert asked == [task_state(demo_store, "summarization").extract_run]


def test_features_table_shows_fstar_stability(demo_store):
    from igds.workflow.explore import task_state
    from igds.workflow.stages import fstar_stability

    at = app("pages/2_features.py")
    table = at.dataframe(key="feat_table").value.set_index("feature")
    want = fstar_stability(demo_store, task_state(demo_store, "summarization").effect_id).set_index("feature")
    assert table.stability.notna().all() and table.stability.between(0, 1).all()
    assert table.stability.to_dict() == want.stability.reindex(table.index).to_dict()


def test_results_show_the_experiment_grid(demo_store, monkeypatch):
    from igds.experiment import Cell, ExperimentConfig, record_cell, register_experiment, summarize

    # the demo store's two tuned runs become the cells of a one-seed grid evaluated like them
    cfg = ExperimentConfig(preset="demo-ui", tasks=("summarization",), pool_settings=("task-only",), seeds=(0,),
                           n_eval={"summarization": 12}, eval_overrides={"max_new_tokens": 8, "batch_size": 12})
    preset = {"config": {}, "effect_id": "e" * 16, "fstar": [3], "n_candidates": 8, "fstar_effects": {"3": 0.01}}
    prov = {"summarization": {"method": {"presets": {"default": preset}, "overrides": {}},
                              "presets": {"default": preset, "paper": {**preset, "fstar": [3, 5]}},
                              "features": [3], "control": [7]}}
    exp = register_experiment(demo_store, cfg, "python -m igds experiment --preset demo-ui", prov)
    runs = demo_store.query_df("SELECT f.run_id, f.selection_id, s.method, e.eval_id FROM finetunes f "
                               "JOIN selections s USING (selection_id) JOIN evals e ON e.run_id = f.run_id")
    for r in runs.itertuples():
        record_cell(demo_store, exp, Cell("summarization", "task-only", r.method, 0.5, 0), selection_id=r.selection_id,
                    run_id=r.run_id, eval_id=r.eval_id, status="done")
    record_cell(demo_store, exp, Cell("summarization", "task-only", "igds", 0.25, 0), status="empty",
                note="IGDS has no features to score 'summarization' with")
    summarize(demo_store, exp)
    started = []
    monkeypatch.setattr("igds.jobs.start_job", lambda kind, params: started.append((kind, params)) or "job-1")
    at = app("pages/6_results.py")
    at.selectbox(key="exp_id").set_value(exp).run()
    assert any("not yet run" in c.value for c in at.caption)  # one seed per arm: no primary contrast yet
    presets = at.dataframe[0].value.set_index("method preset")
    assert presets["F*"].to_dict() == {"default": "3", "paper": "3, 5"}
    table = at.dataframe[1].value
    assert set(table.method) == {"igds", "random"}
    assert any("1 IGDS cells of summarization are empty: IGDS has no features" in w.value for w in at.warning)
    igds = table[table.method == "igds"].iloc[0]
    assert igds.score_lo <= igds.score <= igds.score_hi and not np.isnan(igds.d_score)
    at.segmented_control(key="exp_measure").set_value("nll").run()
    assert not at.exception
    specs = [c.proto.spec or "" for c in at.get("plotly_chart")]
    assert any("reference NLL" in s for s in specs) and any("nll_gain" in s for s in specs)
    at.button(key="exp_quick_start").click().run()
    assert started and started[0][0] == "experiment" and started[0][1]["config"]["preset"] == "quick"

    # a second seed per arm (each arm's seed 1 evaluated like the other arm's seed 0): the primary contrast comes
    # first, and the power planner reads its spread
    evals = dict(zip(runs.method, runs.eval_id, strict=True))
    for method, other in (("igds", "random"), ("random", "igds")):
        record_cell(demo_store, exp, Cell("summarization", "task-only", method, 0.5, 1), eval_id=evals[other],
                    status="done")
    at = app("pages/6_results.py")
    at.selectbox(key="exp_id").set_value(exp).run()
    prim = at.dataframe[0].value.iloc[0]  # the primary contrast comes first
    assert (prim.n_seeds_igds, prim.n_seeds_random) == (2, 2) and prim.estimate == 0.0 and prim.lo < 0 < prim.hi
    assert at.subheader[0].value == "Primary contrast (pre-registered)"
    at.number_input(key="exp_target").set_value(0.5).run()
    assert not at.exception and at.metric[0].label == "Seeds per arm needed"


def test_pages_follow_the_extraction_run_the_recall_read(demo_store):
    """A newer extraction with other settings (here every position, of no pool) must not switch the pages
    to a run the task's recall and interventions never read: the Selection page would find no pool."""
    from igds.workflow.explore import task_state

    before = task_state(demo_store, "summarization").extract_run
    demo_store.start_run("newer-all-positions", "extract", {"extract": {"positions": "all"}}, n_total=1)
    demo_store.update_run("newer-all-positions", status="done")
    assert task_state(demo_store, "summarization").extract_run == before != "newer-all-positions"
    at = app("pages/4_selection.py")
    assert any(m.label == "Selected" for m in at.metric)
    # a task without a recall follows the latest extraction
    assert task_state(demo_store, "math").extract_run == "newer-all-positions"
