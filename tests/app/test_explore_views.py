"""Exploring at research speed (issue 16): the diff of two stored selections, the text lens on the tiny model, a
feature label that survives a reload and is found by search, and a link that opens a given feature and example."""

import shutil

import pytest

from igds.demo import DEMO_INTERVENTION
from igds.store import ActivationStore
from tests.app.test_pages import tiny_workspace
from tests.helpers import app_page

TASK = "summarization"


@pytest.fixture(scope="module")
def explore_store_file(tmp_path_factory):
    """The tiny demo workspace with two stored selections (IGDS and Random, task-only, 50%), without the
    fine-tunes ``with_runs`` adds (the views here do not read them) and with a smaller null (F* is decided by
    effect > 0 all the same)."""
    import dataclasses

    import torch

    from igds.demo import build_tiny_workspace
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig, save_selection, select_from_ranking
    from igds.workflow.stages import latest_effects, lineage, live_selection

    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("explore") / "igds.duckdb"
    store = ActivationStore(path)
    ws = build_tiny_workspace(store, interventions=dataclasses.replace(DEMO_INTERVENTION, null_features=4))
    effects = latest_effects(store, TASK)
    sp, _ = live_selection(store, ws["run_id"], TASK, effects, SelectionConfig(pool_setting="task-only"),
                           ResonanceConfig())
    ranked = sp.scores.rename(columns={"frs": "score"})
    for method, order in (("igds", ranked), ("random", ranked.sample(frac=1.0, random_state=0))):
        cfg = SelectionConfig(method=method, pool_setting="task-only")
        extra = {"method": method, "features": sp.features, "resonance": ResonanceConfig().to_dict(),
                 "effect_id": effects.effect_id} if method == "igds" else {"method": method}
        save_selection(store, f"{method}-tiny", TASK, method, "task-only", len(ranked),
                       select_from_ranking(order, cfg, n_pool=len(ranked)),
                       lineage(store, ws["run_id"], cfg, ranked.example_id, extra))
    return path


@pytest.fixture
def store(explore_store_file, tmp_path, monkeypatch):
    path = tmp_path / "igds.duckdb"
    shutil.copy(explore_store_file, path)
    monkeypatch.setenv("IGDS_STORE", str(path))
    return ActivationStore(path)


def open_page(page: str, **params):
    """The app opened on ``page`` with URL state ``params`` (as a link would)."""
    return app_page(page, 60, **params)


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def frame(at, *columns: str):
    """The first table shown with all of ``columns`` (tables without row selection carry no key)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def test_diff_of_two_stored_selections(store):
    from igds.method.selection import load_selection

    sels = store.query_df("SELECT selection_id, method FROM selections ORDER BY method")
    igds, rnd = sels.selection_id.tolist()  # igds, random
    at = open_page("pages/8_compare.py", task=TASK, selection=igds, compare=rnd)
    assert at.selectbox(key="cmp_a").value == igds and at.selectbox(key="cmp_b").value == rnd
    a = set(load_selection(store, igds)[1].id)
    b = set(load_selection(store, rnd)[1].id)
    assert int(metric(at, "Added (in B only)")) == len(b - a) > 0
    assert int(metric(at, "Removed (in A only)")) == len(a - b) > 0
    assert metric(at, "Jaccard") == f"{len(a & b) / len(a | b):.2f}"
    added, removed = at.tabs[0].dataframe[0].value, at.tabs[1].dataframe[0].value
    assert set(added.example_id) == b - a and set(removed.example_id) == a - b
    assert removed.rank_a.notna().all() and removed.rank_b.isna().all() and removed.why.str.startswith("f").any()
    charts = {c.proto.id for c in at.get("plotly_chart")}
    for key in ("cmp_task", "cmp_source", "cmp_frs", "cmp_len"):
        assert any(key in c for c in charts), key
    cov = frame(at, "share_a", "share_pool")
    assert cov.share_a.between(0, 1).all() and (cov.fstar == "★").any()
    # the view is in the URL: swapping the sides writes it back
    at.selectbox(key="cmp_a").set_value(rnd)
    at.selectbox(key="cmp_b").set_value(igds).run()
    assert at.query_params["selection"] == rnd and at.query_params["compare"] == igds
    assert int(metric(at, "Added (in B only)")) == len(a - b)


def test_text_lens_shows_tokens_and_features_on_the_tiny_model(store, monkeypatch):
    from igds.workflow.lens import encode_text, text_lens
    from igds.workflow.stages import latest_effects

    ws = tiny_workspace(store)
    monkeypatch.setattr("igds.ui.resources.get_workspace", lambda run_id=None: ws)
    text = "Emacs is an extensible, customizable text editor."
    at = open_page("pages/9_lens.py", task=TASK, text=text)
    assert at.text_area(key="lens_text").value == text
    tokens = [m.value for m in at.markdown if "rgba(66,133,244" in m.value]
    assert tokens and "Emacs" not in tokens[0] and "E</span>" in tokens[0]  # byte-level tokens, one span each
    want = text_lens(ws.model, ws.tokenizer, ws.sae, ws.site, encode_text(ws.tokenizer, text)).top_features(30)
    shown = frame(at, "feature", "mark", "max_act")
    assert list(shown.feature) == list(want.feature)
    kept = set(latest_effects(store, TASK).kept)
    assert set(shown.feature[shown.mark == "★"]) == kept & set(want.feature) != set()
    assert shown.promotes.str.len().gt(0).all()
    per_token = frame(at, "pos", "rank", "act")
    assert per_token["rank"].max() == 4 and per_token.pos.min() == 1  # top 5; BOS not counted
    # shading by one feature, and a stored example instead of text
    at.selectbox(key="lens_focus").set_value(int(want.feature.iloc[0])).run()
    assert not at.exception and [m for m in at.markdown if "rgba(255,140,0" in m.value]
    eid = store.query_df("SELECT id FROM examples WHERE task = ? AND split = 'train' LIMIT 1", [TASK]).id[0]
    at = open_page("pages/9_lens.py", task=TASK, example=eid)
    assert at.segmented_control(key="lens_mode").value == "stored example" and len(
        frame(at, "feature", "mark", "max_act"))


def test_feature_label_round_trip(store):
    from igds.workflow.stages import latest_effects

    at = open_page("pages/2_features.py", task=TASK)
    f = int(at.number_input(key="feat_id").value)  # it opens on a validated feature, and says so in the URL
    assert f in latest_effects(store, TASK).kept and at.query_params["feature"] == str(f)
    at.text_input(key=f"feat_label_{f}").set_value("package names")
    at.text_area(key=f"feat_note_{f}").set_value("fires on Debian package names")
    at.button(key="feat_label_save").click().run()
    assert not at.exception
    labels = store.feature_labels("tiny-sae")
    assert labels.set_index("feature").label.to_dict() == {f: "package names"}
    # a fresh session shows it, in the panel and in the table, and search finds it by label
    at = open_page("pages/2_features.py", task=TASK, feature=f)
    assert at.text_input(key=f"feat_label_{f}").value == "package names"
    assert any("package names" in m.value for m in at.markdown)
    assert at.dataframe(key="feat_table").value.set_index("feature").label[f] == "package names"
    at = open_page("pages/9_lens.py", task=TASK)
    at.selectbox(key="lens_search_by").set_value("label")
    at.text_input(key="lens_search").set_value("DEBIAN").run()
    hits = frame(at, "feature", "match")
    assert list(hits.feature) == [f] and hits.label.iloc[0] == "package names"


def test_emptying_a_label_asks_before_removing_it(store):
    at = open_page("pages/2_features.py", task=TASK)
    f = int(at.number_input(key="feat_id").value)
    store.set_feature_label("tiny-sae", f, "package names", "fires on Debian package names")
    at = open_page("pages/2_features.py", task=TASK, feature=f)
    at.text_input(key=f"feat_label_{f}").set_value("")
    at.text_area(key=f"feat_note_{f}").set_value("")
    at.button(key="feat_label_save").click().run()
    assert not at.exception
    assert list(store.feature_labels("tiny-sae").label) == ["package names"], "one click removed the label"
    assert any("removes the label" in w.value and "package names" in w.value for w in at.warning)
    at.button(key="feat_label_keep").click().run()
    assert not at.warning and list(store.feature_labels("tiny-sae").label) == ["package names"]
    at.button(key="feat_label_save").click().run()
    at.button(key="feat_label_remove").click().run()
    assert not at.exception and store.feature_labels("tiny-sae").empty


def test_link_opens_the_feature_and_example(store):
    from igds.workflow.explore import quantile_examples, task_state
    from igds.workflow.stages import latest_effects

    state = task_state(store, TASK)
    f = latest_effects(store, TASK).kept[-1]  # not the one the page opens on by itself
    q = quantile_examples(store, state.extract_run, f)
    eid = q.example_id.iloc[-1]
    at = open_page("pages/2_features.py", task=TASK, feature=f, example=eid)
    assert at.number_input(key="feat_id").value == f
    assert at.header[0].value == f"Feature {f}"
    assert "Highlighted example" in [s.value for s in at.subheader]
    line = next(m.value for m in at.markdown if m.value.startswith(f"**{eid}**"))
    assert f"max activation **{q.max_act.iloc[-1]:.2f}**" in line
    assert at.query_params["feature"] == str(f) and at.query_params["example"] == eid
    assert set(at.dataframe(key=f"feat_quant_{f}").value.interval) == {"top", "p90", "p75", "p50"}
    assert any("feat_density" in (c.proto.id or "") for c in at.get("plotly_chart"))
    assert any("feat_effect" in (c.proto.id or "") for c in at.get("plotly_chart"))
    # picking another feature keeps the view in the URL
    at.number_input(key="feat_id").set_value(latest_effects(store, TASK).kept[0]).run()
    assert at.query_params["feature"] == str(latest_effects(store, TASK).kept[0])
