"""Selection page: the length confound is shown next to the count, and the direction control selects the
other end of the same ranking (what is saved is what was shown)."""

import math

from igds.method.resonance import ResonanceConfig, length_confound
from igds.method.selection import SelectionConfig, load_selection
from igds.workflow.explore import task_state
from igds.workflow.stages import latest_effects, live_selection
from tests.app import test_pages
from tests.app.test_pages import app, selected_count

# the demo workspace fixtures of the page tests
demo_store_file, demo_store = test_pages.demo_store_file, test_pages.demo_store

TASK = "summarization"
LABEL = "Spearman(FRS, content length)"


def shown_spearman(at) -> str:
    return next(m for m in at.metric if m.label == LABEL).value


def library_spearman(store, res_cfg: ResonanceConfig, ratio: float = 0.5) -> float:
    state = task_state(store, TASK)
    sp, chosen = live_selection(store, state.extract_run, TASK, latest_effects(store, TASK),
                                SelectionConfig(ratio=ratio), res_cfg, state.sae_key)
    return length_confound(sp.scores, chosen.example_id).spearman


def test_spearman_with_content_length_is_shown_for_the_current_settings(demo_store):
    at = app("pages/4_selection.py")
    want = library_spearman(demo_store, ResonanceConfig())
    assert not math.isnan(want) and shown_spearman(at) == f"{want:+.2f}"
    assert any(LABEL in c.value and "content" in c.value for c in at.caption)
    at.selectbox(key="sel_agg").set_value("sum").run()
    assert not at.exception
    summed = library_spearman(demo_store, ResonanceConfig(aggregation="sum"))
    assert shown_spearman(at) == f"{summed:+.2f}"


def test_hard_direction_selects_the_bottom_of_the_ranking_and_saves_it(demo_store):
    at = app("pages/4_selection.py")
    resonant = list(at.dataframe(key="sel_table").value.example_id)
    spearman = shown_spearman(at)
    at.radio(key="sel_direction").set_value("hard").run()
    assert not at.exception
    hard = list(at.dataframe(key="sel_table").value.example_id)
    assert selected_count(at) == 120 and len(hard) == 120
    assert not set(hard) & set(resonant)  # the other half of the pool (half of 240, no pins)
    assert shown_spearman(at) == spearman  # the direction orders the ranking, not the score
    at.button(key="sel_save").click().run()
    assert not at.exception
    sid = demo_store.scalar("SELECT selection_id FROM selections WHERE method = 'igds' ORDER BY created DESC LIMIT 1")
    info, members = load_selection(demo_store, sid)
    assert list(members.id) == hard and info["lineage"]["resonance"]["direction"] == "hard"
    assert info["name"].startswith("igds-hard-")
