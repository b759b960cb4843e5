"""Selection page, vetting queue: a decision re-ranks the selection the page shows and undo takes it back; a bulk
decision by filter is one action."""

from tests.helpers import app_page, shown_selection
from tests.helpers import vet_current as current


def page():
    return app_page("pages/4_selection.py")


def test_accept_below_the_cut_reranks_the_page_and_undo_restores_it(vetting_store):
    at = page()
    before, first = shown_selection(at), current(at)
    assert first in before  # around the cut: the weakest selected example first
    at.button(key="vet_next").click().run()
    below = current(at)
    assert below not in before  # then the strongest one left out
    at.text_input(key="vet_note").set_value("clearly on topic")
    at.button(key="vet_accept").click().run()
    assert not at.exception
    sessions = vetting_store.query_df("SELECT session_id, user_name FROM vetting_sessions")
    assert list(sessions.user_name) == ["grace"]
    d = vetting_store.session_decisions(sessions.session_id.iloc[0])
    assert list(zip(d.example_id, d.decision, d.note, d.user_name, strict=True)) == [
        (below, "accept", "clearly on topic", "grace")]
    after = shown_selection(at)
    assert below in after and len(after) == len(before) and first not in after  # the accept took its place
    assert current(at) != below and at.text_input(key="vet_note").value == ""  # next example, note cleared
    assert any("1 decisions applied" in c.value for c in at.caption)

    at.button(key="vet_undo").click().run()
    assert not at.exception
    assert vetting_store.session_decisions(sessions.session_id.iloc[0]).empty
    assert shown_selection(at) == before and current(at) == below  # back on the undone example


def test_bulk_decision_by_source_is_one_action(vetting_store):
    at = page()
    task_sources = ["debian-ddtp"]  # the summarization examples' source in the tiny workspace
    at.multiselect(key="vet_f_sources").set_value(task_sources).run()
    at.selectbox(key="vet_bulk_decision").set_value("reject").run()
    assert "120 matching" in at.button(key="vet_bulk").label
    at.button(key="vet_bulk").click().run()
    assert not at.exception
    sid = vetting_store.query_df("SELECT session_id FROM vetting_sessions").session_id.iloc[0]
    d = vetting_store.session_decisions(sid)
    assert len(d) == 120 and set(d.decision) == {"reject"} and d.seq.nunique() == 1
    assert next(m for m in at.metric if m.label == "Task share of selection").value == "0.0%"
    at.button(key="vet_undo").click().run()
    assert vetting_store.session_decisions(sid).empty
    assert next(m for m in at.metric if m.label == "Task share of selection").value != "0.0%"


def test_apply_to_task_overrides_lists_the_decisions_and_applies_those_listed(vetting_store):
    from igds.method.selection import load_overrides

    at = page()
    assert at.button(key="vet_start").label == "Start a vetting session"
    at.button(key="vet_start").click().run()
    sid = vetting_store.query_df("SELECT session_id FROM vetting_sessions").session_id.iloc[0]
    assert any(f"Started vetting session {sid}" in i.value for i in at.info) and at.button(key="vet_apply").disabled
    accepted = current(at)
    at.button(key="vet_accept").click().run()
    rejected = current(at)
    at.button(key="vet_reject").click().run()
    at.button(key="vet_apply").click().run()
    assert not at.exception
    listed = next(df.value for df in at.dataframe if "decided" in df.value)
    assert list(zip(listed.example_id, listed.decision, strict=True)) == [(accepted, "accept"), (rejected, "reject")]
    assert any("1 accepted examples become pinned and 1 rejected" in w.value for w in at.warning)
    assert load_overrides(vetting_store, "summarization").pinned_examples == frozenset()  # not before the confirmation
    late = current(at)
    at.button(key="vet_reject").click().run()  # decided after the listing: not applied by this confirmation
    assert at.button(key="vet_confirm").label == "Confirm: pin 1, reject 1"
    at.button(key="vet_confirm").click().run()
    assert not at.exception
    ov = load_overrides(vetting_store, "summarization")
    assert ov.pinned_examples == {accepted} and ov.rejected_examples == {rejected} and late not in ov.rejected_examples
    assert any(f"Task overrides from session {sid}" in i.value and "1 examples pinned" in i.value for i in at.info)
