"""Vetting sessions are explicit: an accept in one browser session (an AppTest on the store) is not applied to a
selection another browser session saves until that one resumes the session by name; Discard takes a session's
decisions back after listing them; the library lists a pool's resumable sessions and discards with the log kept."""

import pytest

from igds.method.selection import load_selection
from igds.method.vetting import (
    apply_to_overrides,
    decide,
    describe_session,
    discard_session,
    open_session,
    pool_sessions,
    undo,
    vetting_lineage,
)
from tests.helpers import app_page
from tests.helpers import shown_selection as shown
from tests.helpers import vet_current as current
from tests.integration.test_vetting import TASK, live


def browser_session():
    """A new browser session of the app on the Selection page (its own session state, the same store)."""
    return app_page("pages/4_selection.py")


def save(at, vetting_store) -> str:
    """Click Save on the page; the id of the selection it stored."""
    before = set(vetting_store.query_df("SELECT selection_id FROM selections").selection_id)
    at.button(key="sel_save").click().run()
    assert not at.exception, at.exception
    new = set(vetting_store.query_df("SELECT selection_id FROM selections").selection_id) - before
    assert len(new) == 1
    return new.pop()


def test_an_accept_reaches_another_browser_session_only_when_it_resumes_the_session(vetting_store):
    first = browser_session()
    base = shown(first)
    first.button(key="vet_next").click().run()
    below = current(first)
    assert below not in base
    first.button(key="vet_accept").click().run()  # the first decision starts a session in this browser session
    sid = vetting_store.query_df("SELECT session_id FROM vetting_sessions").session_id.iloc[0]
    assert any(f"Started vetting session {sid}" in i.value for i in first.info)
    assert below in shown(first)

    second = browser_session()
    assert shown(second) == base  # nothing resumed: the selection without the accept
    assert second.button(key=f"vet_resume_{sid}").label.startswith(f"Resume session {sid} (1 decision, by grace, ")
    plain = save(second, vetting_store)
    info, members = load_selection(vetting_store, plain)
    assert set(members.id) == base and below not in set(members.id)
    assert "vetting_session" not in info["lineage"]
    assert "vetting" not in vetting_lineage(vetting_store, plain, {"selection_id": plain, **info["lineage"]})

    second.button(key=f"vet_resume_{sid}").click().run()
    assert not second.exception
    assert below in shown(second) and any(f"Resumed vetting session {sid}" in i.value for i in second.info)
    vetted = save(second, vetting_store)
    info, members = load_selection(vetting_store, vetted)
    assert below in set(members.id) and info["lineage"]["vetting_session"] == sid

    # closing the session: saving again carries no decisions (the plain selection, stored already)
    second.button(key="vet_close").click().run()
    assert shown(second) == base and second.button(key=f"vet_resume_{sid}")
    kept = set(vetting_store.query_df("SELECT selection_id FROM selections").selection_id)
    second.button(key="sel_save").click().run()
    assert not second.exception
    assert set(vetting_store.query_df("SELECT selection_id FROM selections").selection_id) == kept  # = the plain one
    assert vetting_store.vetting_session(sid)["selection_id"] == vetted


def test_discard_lists_the_decisions_first_and_the_session_is_no_longer_offered(vetting_store):
    first = browser_session()
    first.button(key="vet_accept").click().run()
    first.button(key="vet_reject").click().run()
    sid = vetting_store.query_df("SELECT session_id FROM vetting_sessions").session_id.iloc[0]
    d = vetting_store.session_decisions(sid)

    second = browser_session()
    second.button(key=f"vet_discard_{sid}").click().run()
    listed = next(df.value for df in second.dataframe if "decided" in df.value)  # the listing
    assert list(listed.example_id) == list(d.example_id) and list(listed.decision) == ["accept", "reject"]
    assert vetting_store.session_decisions(sid).equals(d)  # nothing taken back before the confirmation
    assert second.button(key="vet_confirm").label == "Confirm: discard 2 decisions"
    second.button(key="vet_confirm").click().run()
    assert not second.exception
    assert vetting_store.session_decisions(sid).empty
    assert not [b for b in second.button if b.key and b.key.startswith("vet_resume_")]
    first.run()  # the first browser session's selection follows: its session has no decision in force
    assert shown(first) == shown(second)


def test_pool_sessions_describe_discard_and_apply_as_listed(vetting_store):
    state, sp, chosen = live(vetting_store)
    ids, k = list(sp.scores.example_id), len(chosen)
    pool = {"extract_run": state.extract_run, "pool_setting": "mixed", "pool_limit": 0}
    empty = open_session(vetting_store, TASK, user="ada", **pool)
    older = open_session(vetting_store, TASK, user="ada", **pool)
    newer = open_session(vetting_store, TASK, user="bob", **pool)
    other_pool = open_session(vetting_store, TASK, user="ada", extract_run=state.extract_run, pool_setting="task-only")
    decide(vetting_store, older, [ids[k]], "accept")
    decide(vetting_store, older, [ids[0]], "reject")
    decide(vetting_store, older, [ids[0]], "skip")  # re-decided: one example, its latest decision
    decide(vetting_store, other_pool, [ids[1]], "reject")
    decide(vetting_store, newer, [ids[1], ids[2]], "reject")
    rows = pool_sessions(vetting_store, TASK, **pool)
    assert list(rows.session_id) == [newer, older]  # decisions in force only, the latest decided first
    assert empty not in set(rows.session_id) and other_pool not in set(rows.session_id)
    r = rows.set_index("session_id").loc[older]
    assert (r.n_decisions, r.accepted, r.rejected, r.skipped, r.user_name) == (2, 1, 0, 1, "ada")
    assert describe_session(older, 2, "ada", r.last_decided).startswith(f"session {older} (2 decisions, by ada, 20")
    assert describe_session(older, 1, None, None) == f"session {older} (1 decision, by no name)"
    undo(vetting_store, newer)
    assert list(pool_sessions(vetting_store, TASK, **pool).session_id) == [older]  # undone to nothing: not offered

    # apply as listed: a decision made after the listing is not applied
    listed = vetting_store.vetting_seq(older)
    decide(vetting_store, older, [ids[3]], "reject")
    assert apply_to_overrides(vetting_store, TASK, older, as_of=listed) == {"pinned": 1, "rejected": 0}

    # discard: nothing in force, the log kept (as of an earlier action it reads back), no longer offered
    before = vetting_store.session_decisions(older)
    assert discard_session(vetting_store, older) == 3
    assert vetting_store.session_decisions(older).empty and pool_sessions(vetting_store, TASK, **pool).empty
    assert vetting_store.session_decisions(older, as_of=listed + 1).equals(before)
    assert undo(vetting_store, older) == []
    with pytest.raises(ValueError, match="no vetting session"):
        discard_session(vetting_store, "no-such")
