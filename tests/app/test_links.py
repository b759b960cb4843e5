"""Links are checked before they are used: a link's unknown or malformed task, selection, example or run is named in a
message and the page shows (and offers) nothing for another value in its place; a key the page does not read is
named where it is ignored; the default page opens Overview (its own path is tested in a real browser)."""

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from igds.ui.pages import PAGES
from igds.ui.state import TASK, shown_value
from igds.ui.widgets import md_text
from tests.app import test_pages
from tests.app.test_pages import ROOT, tiny_workspace

# the demo workspace fixtures of the page tests (two stored selections, two evaluated fine-tunes)
demo_store_file, demo_store = test_pages.demo_store_file, test_pages.demo_store

HOSTILE = "<b>x</b> `$1$` [a](https://example.org) :red[y]"  # markup a message must show literally
BAD = ["no-such-id", HOSTILE]


def open_link(page: str | None = None, **params) -> AppTest:
    """The app opened as a link would open it: ``page`` with URL state ``params`` (the default page: None).

    AppTest runs a page it switched to without app.py, so what app.py checks (the task, keys the page does not
    read) is tested on the default page, which opens Overview; the browser test opens every page by its path."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.query_params.update(params)
    at.run()
    if page:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def errors(at) -> str:
    return "\n".join(e.value for e in at.error)


def test_default_page_is_overview_with_the_link_state():
    at = open_link(task="summarization")
    assert [t.value for t in at.title] == ["IGDS workspace"] and not at.error and not at.warning
    assert at.query_params["task"] == "summarization"


@pytest.mark.parametrize("value", BAD)
def test_a_links_unknown_task_is_named_and_no_page_runs_for_another(demo_store, value):
    at = open_link(task=value)
    assert shown_value(value) in errors(at) and "not a task of this workspace" in errors(at)
    assert not at.title, "no page may run for a task the link did not name"
    assert at.query_params["task"] == value  # the address bar still shows what the link asked for
    at.button(key="drop_link_task").click().run()  # "Open this page on summarization"
    assert not at.error and at.title[0].value == "IGDS workspace"
    assert at.query_params["task"] == "summarization"


def test_picking_a_task_in_the_sidebar_replaces_a_links_unknown_task(demo_store):
    at = open_link(task="no-such-task")
    assert at.error and not at.title
    at.selectbox(key=TASK).set_value("math").run()
    assert not at.error and at.title[0].value == "IGDS workspace" and at.query_params["task"] == "math"


@pytest.mark.parametrize("key", ["selection", "compare"])
@pytest.mark.parametrize("value", BAD)
def test_compare_names_an_unknown_selection_and_compares_nothing(demo_store, key, value):
    at = open_link("pages/8_compare.py", task="summarization", **{key: value})
    assert shown_value(value) in errors(at) and "names no selection of task summarization" in errors(at)
    assert not at.metric and not at.selectbox, "no comparison (nor its pickers) next to a refused link"
    at.button(key="drop_link").click().run()
    assert not at.error and at.query_params.get(key) != value
    ids = set(demo_store.query_df("SELECT selection_id FROM selections").selection_id) | {"live"}
    assert {at.selectbox(key="cmp_a").value, at.selectbox(key="cmp_b").value} <= ids and at.metric


def test_compare_opens_selections_named_in_a_link(demo_store):
    sels = demo_store.query_df("SELECT selection_id, name FROM selections ORDER BY name")  # igds-tiny, random-tiny
    at = open_link("pages/8_compare.py", task="summarization", selection="random-tiny",
                   compare=sels.selection_id.iloc[0])
    assert not at.error
    assert at.selectbox(key="cmp_a").value == sels.selection_id.iloc[1]
    assert at.selectbox(key="cmp_b").value == sels.selection_id.iloc[0]


@pytest.mark.parametrize("value", BAD)
def test_the_text_lens_names_an_unknown_example_before_any_model_runs(demo_store, monkeypatch, value):
    def no_model(run_id=None):
        raise AssertionError("the model was loaded for an example that does not exist")

    monkeypatch.setattr("igds.ui.resources.get_workspace", no_model)
    at = open_link("pages/9_lens.py", task="summarization", example=value)
    assert any(shown_value(value) in w.value and "There is no example" in w.value for w in at.warning)
    assert at.text_input(key="lens_example").value == value  # left to correct, nothing else in its place
    assert not at.dataframe and not any("tokens through" in c.value for c in at.caption)


@pytest.mark.parametrize("value", BAD)
def test_results_names_an_unknown_run_and_shows_no_other(demo_store, value):
    at = open_link("pages/6_results.py", task="summarization", run=value)
    assert shown_value(value) in errors(at) and "is no evaluated fine-tune of task summarization" in errors(at)
    assert not at.tabs and not at.dataframe


def test_results_opens_the_run_a_link_names_and_writes_the_choice_back(demo_store):
    from igds.training.results import runs_table

    runs = runs_table(demo_store, "summarization").set_index("run_id")
    run = runs.index[-1]
    at = open_link("pages/6_results.py", task="summarization", run=run)
    assert not at.error and at.selectbox(key="res_run").value == runs.eval_id[run]
    other = runs.index[0]
    at.selectbox(key="res_run").set_value(runs.eval_id[other]).run()
    assert at.query_params["run"] == other


def test_a_key_the_page_does_not_read_is_named_with_the_page_that_does(demo_store):
    at = open_link(task="summarization", feature="12", example="e1")
    notes = [w.value for w in at.warning if "does not use the link's" in w.value]
    assert len(notes) == 2 and "“feature” (“12”)" in notes[0]
    assert "](features?task=summarization&feature=12)" in notes[0]  # a link to where it is read
    assert "open it on Features" in notes[1] and "open it on Text lens" in notes[1]  # example: two pages read it
    assert at.title[0].value == "IGDS workspace"  # the page itself runs: nothing acts on the keys


def test_every_url_path_is_the_legacy_name_of_its_file():
    """A server's first request, when a deep link, is rerun through app.py (igds.ui.pages.leave_legacy_pages) and lands
    on the page whose url_path is the name Streamlit's legacy pages/ mode gives the file."""
    from streamlit.source_util import page_icon_and_name

    assert [page_icon_and_name(Path(f))[1] for f, *_ in PAGES] == [path for _, _, path, _ in PAGES]


def test_the_text_lens_names_its_run_by_what_it_is_not_its_hash(demo_store, monkeypatch):
    from igds.workflow.explore import task_state

    ws = tiny_workspace(demo_store)
    monkeypatch.setattr("igds.ui.resources.get_workspace", lambda run_id=None: ws)
    at = open_link("pages/9_lens.py", task="summarization", text="Emacs is a text editor.")
    caption = next(c.value for c in at.caption if "tokens through" in c.value)
    run = task_state(demo_store, "summarization").extract_run
    assert run not in caption
    date = str(demo_store.run(run)["created"])[:10]
    label = f"tiny-llama · SAE tiny-sae at blocks.1.hook_resid_post · content tokens · {date}"
    assert f"summarization's extraction run ({md_text(label)})" in caption


@pytest.mark.parametrize("pool", [("own-set",), ("own-set", "general")])
def test_a_new_tasks_pool_count_says_whether_the_general_set_is_in_it(demo_store, pool):
    from igds.ui.data import pool_note

    note = pool_note(demo_store, {"train": 1750, "overlap": 0}, pool)
    assert note.startswith("a pool of 1,750 own rows (from own\\-set)")
    if "general" in pool:  # the tiny workspace's general set has 120 train records
        assert note.endswith("plus the shipped general set's 120 records in the mixed pool (1,870 in all)")
    else:
        assert note.endswith("(the shipped general set is not in it: the task-only pool)")
