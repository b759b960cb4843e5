"""A way on from an empty F*: on a task whose filter kept no candidate, the Features, Interventions and Selection
pages say why (dev items, strongest candidate, its interval and q, the null's cut) and offer, in place, the paper
preset's filter or a looser one (a real ``intervene`` job), pinning candidates (which count and drive the Selection
page at once) and a baseline (a real ``select`` job); an unfinished run says how far it is instead of a verdict.
Also: a ``?feature=`` link naming no feature of the SAE gets a message and disabled Veto / Pin, and *Save this
selection* takes a name."""

import contextlib
import functools
import re
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from igds.method.config import ExtractConfig, InterventionConfig
from igds.method.presets import method_preset
from igds.method.selection import load_overrides, load_selection
from igds.store import ActivationStore
from igds.workflow.explore import task_state
from igds.workflow.stages import latest_effects
from tests.helpers import app_page

TASK = "adder"
D_SAE = 4096
FEATURES, INTERVENTIONS, SELECTION = "pages/2_features.py", "pages/3_interventions.py", "pages/4_selection.py"


def chat_rows(n: int = 96) -> list[dict]:
    """A researcher's chat file: sums to answer, split by a column (probe / dev / test / train)."""
    return [{"messages": [{"role": "user", "content": f"Add {i} and {i % 7}."},
                          {"role": "assistant", "content": f"{i + i % 7}"}],
             "split": ["probe", "probe", "dev", "test", "train", "train"][i % 6]} for i in range(n)]


@contextlib.contextmanager
def _home(home: Path):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IGDS_HOME", str(home))
        mp.delenv("IGDS_STORE", raising=False)
        yield


@functools.cache
def empty_fstar_home() -> Path:
    """A workspace of one's own, built once per test process as a user would (CLI): a local tiny model and a
    4,096-latent SAE folder, a chat dataset and the task ``adder`` (16 dev items), extracted, recalled (6
    candidates) and measured with the default filter, which keeps none of them on the random model (the paper's
    Δ > 0 keeps three). The page and browser tests copy its ``igds.duckdb``."""
    import torch

    from igds.cli import main
    from igds.demo import save_tiny_model, save_tiny_sae

    torch.set_num_threads(1)
    home = Path(tempfile.mkdtemp(prefix="igds-empty-fstar-"))
    data = home / "chat.parquet"
    pd.DataFrame(chat_rows()).to_parquet(data)
    model, sae = save_tiny_model(home / "my-model"), save_tiny_sae(home / "my-sae", layer=1, d_sae=D_SAE)
    with _home(home):
        for argv in (["data", "add", str(data), "--name", "chat"],
                     ["task", "add", TASK, "--metric", "exact_match", "--instruction", "Answer with a number.",
                      "--answer", "last_number", "--max-new-tokens", "4", "--eval-datasets", "chat", "--split-by",
                      "column", "--pool-datasets", "chat"],
                     ["workspace", "use", "--model-name-or-path", str(model), "--sae-source", str(sae)],
                     ["extract", "--tasks", TASK, "--pool-setting", "task-only"],
                     ["recall", "--task", TASK, "--recall-min-freq", "0.05"],
                     ["intervene", "--task", TASK]):
            assert main(argv) == 0, f"igds {' '.join(argv)} failed"
    return home


@pytest.fixture
def store(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(empty_fstar_home() / "igds.duckdb", home / "igds.duckdb")
    monkeypatch.setenv("IGDS_HOME", str(home))
    monkeypatch.setenv("IGDS_STORE", str(home / "igds.duckdb"))
    return ActivationStore(home / "igds.duckdb")


@pytest.fixture
def inline_jobs(monkeypatch):
    """Start buttons run the real job kind here, to the end, with the same job files (no second process)."""
    from igds import jobs

    started = []

    def start(kind, params):
        started.append((kind, params))
        return jobs.run_job_inline(kind, params)["job_id"]

    monkeypatch.setattr("igds.jobs.start_job", start)
    return started


def app(page: str, **query):
    """The app on ``page`` with the task ``adder`` picked and URL state ``query``."""
    return app_page(page, 120, session={"global.task": TASK}, **query)


def plain(markdown: str) -> str:
    """Markdown as it reads (md_text's backslash escapes removed)."""
    return re.sub(r"\\(.)", r"\1", markdown)


def texts(at) -> str:
    return "\n".join(plain(e.value) for kind in ("warning", "info", "success", "error", "markdown", "caption")
                     for e in getattr(at, kind))


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def start(at, key: str) -> None:
    at.button(key=f"{key}_start").click().run()
    assert not at.exception, at.exception
    at.run()  # the page after the job: a finished job reruns the page once


def test_each_page_says_why_fstar_is_empty_and_offers_the_ways_on_in_place(store):
    effects = latest_effects(store, TASK)
    assert effects.kept == [] and len(effects.verdict) == 6
    best = effects.verdict.dropna(subset=["effect"]).sort_values("effect").iloc[-1]
    for page in (FEATURES, INTERVENTIONS, SELECTION):
        at = app(page)
        why = next(plain(w.value) for w in at.warning if "is empty" in w.value)
        # the filter's power: candidates, the strongest one's effect and q, the null's cut, the dev items
        n_tested = int((~effects.verdict.untestable).sum())
        for part in (f"none of the {n_tested} tested candidates", f"{best.effect:+.4f} nats",
                     f"feature {int(best.feature)}", f"q = {best.q_value:.3g}", f"{effects.null_cut:+.4f}",
                     "16 dev items"):
            assert part in why, (page, part, why)
        assert at.radio(key="way_filter").options == ["the paper preset's", "a looser setting of my own"]
        assert not at.button(key="way_paper_start").disabled
        assert at.multiselect(key="way_pick").options  # the candidates, strongest first
        assert at.button(key="way_pin").disabled  # until one is picked
        assert "pin a feature on the interventions page" not in texts(at).lower()  # a Pin that page never had
        if page == SELECTION:  # the baseline in place; elsewhere a link to the page that has it
            assert not at.button(key="way_base_start").disabled
        else:
            assert [p for p in at.get("page_link") if p.proto.page.endswith("selection")], page


def test_pinned_candidates_count_and_drive_the_selection_at_once(store):
    at = app(INTERVENTIONS)
    picked = at.multiselect(key="way_pick").options[:2]
    at.multiselect(key="way_pick").set_value([int(p.split(" ")[0][1:]) for p in picked]).run()
    at.button(key="way_pin").click().run()
    assert not at.exception
    pinned = sorted(load_overrides(store, TASK, task_state(store, TASK).sae_key).pinned_features)
    assert len(pinned) == 2
    fstar = next(m for m in at.metric if m.label == "Validated |F*|")
    assert (fstar.value, fstar.delta) == ("0", "2 used for selection")
    assert any("pinned feature(s)" in s.value for s in at.success)
    sel = app(SELECTION)  # no "no validated features" stop: the pool is scored with the pins
    used = next(m for m in sel.metric if m.label == "Validated features used")
    assert (used.value, used.delta) == ("2", "2 pinned")
    assert int(metric(sel, "Selected").split("/")[0]) == 16  # half of the task-only pool of 32
    sel.text_input(key="sel_name").set_value("adder-pinned").run()
    sel.button(key="sel_save").click().run()
    assert not sel.exception and any("adder-pinned" in plain(s.value) for s in sel.success)
    sid = store.scalar("SELECT selection_id FROM selections WHERE name = 'adder-pinned'")
    info, members = load_selection(store, sid)
    assert sorted(info["lineage"]["features"]) == pinned and len(members) == 16


def test_pin_on_the_features_page_gives_feedback_and_counts(store):
    state = task_state(store, TASK)
    feature = int(latest_effects(store, TASK).verdict.feature.iloc[0])
    at = app(FEATURES, feature=str(feature))
    assert metric(at, "Used for selection") == "0"
    at.button(key="feat_pin").click().run()
    assert not at.exception
    assert metric(at, "Used for selection") == "1"
    assert any("pinned: the selection scores with it" in m.value for m in at.markdown)
    assert at.button(key="feat_pin").disabled and not at.button(key="feat_clear").disabled
    assert load_overrides(store, TASK, state.sae_key).pinned_features == {feature}
    at.button(key="feat_clear").click().run()
    assert metric(at, "Used for selection") == "0" and not load_overrides(store, TASK).pinned_features


def test_paper_preset_filter_runs_as_a_job_and_shows_its_verdict(store, inline_jobs):
    recall = task_state(store, TASK).recall_id
    at = app(INTERVENTIONS)
    start(at, "way_paper")
    assert inline_jobs == [("intervene", {"task": TASK, "intervene_preset": "paper"})]
    res = latest_effects(store, TASK)
    run = store.run(res.effect_id)
    assert res.config == method_preset("paper").intervene and run["config"]["recall_id"] == recall
    # the paper's "significant" is a test too (ours): kept = BH q < fdr against the fitted null, not Δ > 0
    assert set(res.kept) == set(res.verdict[res.verdict.q_value < res.config.fdr].feature)
    at = app(INTERVENTIONS)
    assert metric(at, "Validated |F*|") == str(len(res.kept))
    assert bool([w for w in at.warning if "is empty" in w.value]) == (not res.kept)
    assert any("the paper preset" in c.value for c in at.caption)
    if res.kept:
        assert metric(app(SELECTION), "Validated features used") == str(len(res.kept))


def test_a_looser_setting_of_ones_own_runs_as_a_job(store, inline_jobs):
    at = app(SELECTION)
    at.radio(key="way_filter").set_value("a looser setting of my own").run()
    at.radio(key="way_rule").set_value("its α = 1 effect > δ nats (no test)").run()
    at.number_input(key="way_delta").set_value(0.0005).run()
    assert any("effect > 0.0005 nats (no significance test)" in c.value for c in at.caption)
    start(at, "way_own")
    (kind, params), = inline_jobs
    assert kind == "intervene" and params["intervene"]["delta"] == 0.0005
    res = latest_effects(store, TASK)
    assert res.config.delta == 0.0005 and not res.config.require_significance
    assert set(res.kept) == set(res.verdict[res.verdict.effect > 0.0005].feature) and res.kept
    assert metric(app(SELECTION), "Validated features used") == str(len(res.kept))


def test_a_baseline_from_the_selection_page_is_stored_under_its_name(store, inline_jobs):
    at = app(SELECTION)
    at.selectbox(key="base_method").set_value("random").run()
    assert at.selectbox(key="base_pool").value == "task-only"  # the pool the task was extracted with
    assert at.text_input(key="base_name").value == f"random-{TASK}-0.5"  # the default, shown
    at.text_input(key="base_name").set_value("adder-random").run()
    start(at, "way_base")
    (kind, params), = inline_jobs
    assert kind == "select" and params["name"] == "adder-random"
    sid = store.scalar("SELECT selection_id FROM selections WHERE name = 'adder-random'")
    info, members = load_selection(store, sid)
    assert info["method"] == "random" and len(members) == 16
    assert any("adder-random" in plain(s.value) and sid in s.value for s in at.success)
    # the name is now taken: a second baseline under it is refused before anything runs
    at.slider(key="base_ratio").set_value(0.25).run()
    assert any("already stored" in e.value for e in at.error)
    assert not [b for b in at.button if b.key == "way_base_start"]


def test_an_unfinished_run_says_it_is_still_measuring_instead_of_a_verdict(store):
    from igds.workflow.stages import current_recall, run_interventions
    from igds.workflow.workspace import default_workspace

    ws = default_workspace(store)
    recall = current_recall(ws, TASK, ExtractConfig())
    part = run_interventions(ws, TASK, recall, InterventionConfig(null_seed=1), max_features=2)  # 2 more, stopped
    n_untestable = int(part.verdict.untestable.sum())  # stored at once, never replayed
    state = task_state(store, TASK)
    assert state.measuring and state.n_measured == 2 + n_untestable
    for page in (FEATURES, INTERVENTIONS, SELECTION):
        at = app(page)
        shown = texts(at)
        assert f"still measuring: {2 + n_untestable} of 6 candidates" in shown, page
        assert "none of the" not in shown and not [w for w in at.warning if "is empty" in w.value], page


@pytest.mark.parametrize("raw, why", [("999999", "feature 999,999 does not exist: this task's SAE has 4,096 "
                                                  "features (0–4,095)"),
                                       ("abc", "“abc” is not a feature number")])
def test_a_feature_link_naming_no_feature_gets_a_message_and_disabled_actions(store, raw, why):
    at = app(FEATURES, feature=raw)
    assert any(why in plain(w.value) for w in at.warning), [w.value for w in at.warning]
    assert at.number_input(key="feat_id").value is None  # no other feature put in its place
    assert not [h for h in at.header if h.value.startswith("Feature ")]
    for key in ("feat_veto", "feat_pin", "feat_clear"):
        assert at.button(key=key).disabled
    assert at.query_params["feature"] == raw  # the address still says what was opened
    # picking a feature ends it
    at.number_input(key="feat_id").set_value(12).run()
    assert not at.exception and [h for h in at.header if h.value == "Feature 12"]
    assert not at.button(key="feat_pin").disabled and not [w for w in at.warning if why in plain(w.value)]


def test_save_takes_a_name_with_a_default_and_refuses_a_taken_one(store):
    first = int(latest_effects(store, TASK).verdict.feature.iloc[0])
    from igds.method.selection import set_feature_override

    set_feature_override(store, TASK, task_state(store, TASK).sae_key, first, "pin")
    at = app(SELECTION)
    assert at.text_input(key="sel_name").value == f"igds-{TASK}-0.5"
    at.slider(key="sel_ratio").set_value(0.25).run()
    assert at.text_input(key="sel_name").value == f"igds-{TASK}-0.25"  # the default follows the settings
    at.text_input(key="sel_name").set_value("quarter").run()
    at.slider(key="sel_ratio").set_value(0.5).run()
    assert at.text_input(key="sel_name").value == "quarter"  # a typed name stays
    at.button(key="sel_save").click().run()
    assert store.scalar("SELECT count(*) FROM selections WHERE name = 'quarter'") == 1
    at.slider(key="sel_ratio").set_value(0.75).run()
    at.button(key="sel_save").click().run()
    assert any("already stored" in e.value for e in at.error)
    assert store.scalar("SELECT count(*) FROM selections WHERE name = 'quarter'") == 1


def test_recall_runs_as_a_job_and_the_page_never_loads_the_model(store, inline_jobs, monkeypatch):
    with store.connect() as con:  # the workspace as it is after extraction: nothing recalled or measured yet
        con.execute("DELETE FROM runs WHERE stage IN ('recall', 'intervene')")

    def no_model(*args, **kwargs):
        raise AssertionError("the dashboard's process loaded the model")

    monkeypatch.setattr("igds.ui.resources.get_workspace", no_model)
    at = app(FEATURES)
    assert any("Run recall" in i.value for i in at.info)
    extract_run = task_state(store, TASK).extract_run
    start(at, "run_recall")
    assert inline_jobs == [("recall", {"task": TASK, "extract_run": extract_run})]
    state = task_state(store, TASK)
    assert state.recall_id and state.n_candidates == 6
    assert metric(at, "Candidates |C|") == "6" and not at.exception


def test_generation_with_a_feature_edited_runs_as_a_job_and_shows_both_texts(store, inline_jobs, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the dashboard's process loaded the model")

    monkeypatch.setattr("igds.ui.resources.get_workspace", no_model)
    at = app(INTERVENTIONS)
    feature = at.selectbox(key="try_feat").value
    at.selectbox(key="try_kind").set_value("ablate").run()
    start(at, "try_go")
    (kind, params), = inline_jobs
    assert kind == "steer" and params["feature"] == feature and params["kind"] == "ablate"
    assert params["run_id"] == task_state(store, TASK).effect_id
    assert any(m.value == f"**ablate f{feature}** (α = 4)" for m in at.markdown), [m.value for m in at.markdown]
    assert len(at.text) >= 2 and all(isinstance(t.value, str) for t in at.text[-2:])
