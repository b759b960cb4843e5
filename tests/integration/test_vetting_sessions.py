"""Vetting sessions are explicit: an accept in one browser session (an AppTest on the store) is not applied to a
selection another browser session saves until that one resumes the session by name; Discard takes a session's
decisions back after listing them; the library lists a pool's resumable sessions and discards with the log kept."""

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

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
from igds.store import ActivationStore
from tests.integration.test_vetting import TASK, live, vetting_store_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh_caches():
    # st.cache_resource outlives an AppTest (the store of another test would be served); tests/app does the same
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "igds.duckdb"
    shutil.copy(vetting_store_file(), path)
    monkeypatch.setenv("IGDS_STORE", str(path))
    monkeypatch.setenv("IGDS_USER", "grace")
    return ActivationStore(path)


def browser_session() -> AppTest:
    """A new browser session of the app on the Selection page (its own session state, the same store)."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page("pages/4_selection.py").run()
    assert not at.exception, at.exception
    return at


def current(at) -> str:
    header = next(m.value for m in at.markdown if 'class="vet-current"' in m.value)
    return header.split('data-example="')[1].split('"')[0]


def shown(at) -> set[str]:
    return set(at.dataframe(key="sel_table").value.example_id)


def save(at, store) -> str:
    """Click Save on the page; the id of the selection it stored."""
    before = set(store.query_df("SELECT selection_id FROM selections").selection_id)
    at.button(key="sel_save").click().run()
    assert not at.exception, at.exception
    new = set(store.query_df("SELECT selection_id FROM selections").selection_id) - before
    assert len(new) == 1
    return new.pop()


def test_an_accept_reaches_another_browser_session_only_when_it_resumes_the_session(store):
    first = browser_session()
    base = shown(first)
    first.button(key="vet_next").click().run()
    below = current(first)
    assert below not in base
    first.button(key="vet_accept").click().run()  # the first decision starts a session in this browser session
    sid = store.query_df("SELECT session_id FROM vetting_sessions").session_id.iloc[0]
    assert any(f"Started vetting session {sid}" in i.value for i in first.info)
    assert below in shown(first)

    second = browser_session()
    assert shown(second) == base  # nothing resumed: the selection without the accept
    assert second.button(key=f"vet_resume_{sid}").label.startswith(f"Resume session {sid} (1 decision, by grace, ")
    plain = save(second, store)
    info, members = load_selection(store, plain)
    assert set(members.id) == base and below not in set(members.id)
    assert "vetting_session" not in info["lineage"]
    assert "vetting" not in vetting_lineage(store, plain, {"selection_id": plain, **info["lineage"]})

    second.button(key=f"vet_resume_{sid}").click().run()
    assert not second.exception
    assert below in shown(second) and any(f"Resumed vetting session {sid}" in i.value for i in second.info)
    vetted = save(second, store)
    info, members = load_selection(store, vetted)
    assert below in set(members.id) and info["lineage"]["vetting_session"] == sid

    # closing the session: saving again carries no decisions (the plain selection, stored already)
    second.button(key="vet_close").click().run()
    assert shown(second) == base and second.button(key=f"vet_resume_{sid}")
    kept = set(store.query_df("SELECT selection_id FROM selections").selection_id)
    second.button(key="sel_save").click().run()
    assert not second.exception
    assert set(store.query_df("SELECT selection_id FROM selections").selection_id) == kept  # = the plain one
    assert store.vetting_session(sid)["selection_id"] == vetted


def test_discard_lists_the_decisions_first_and_the_session_is_no_longer_offered(store):
    first = browser_session()
    first.button(key="vet_accept").click().run()
    first.button(key="vet_reject").click().run()
    sid = store.query_df("SELECT session_id FROM vetting_sessions").session_id.iloc[0]
    d = store.session_decisions(sid)

    second = browser_session()
    second.button(key=f"vet_discard_{sid}").click().run()
    listed = next(df.value for df in second.dataframe if "decided" in df.value)  # the listing
    assert list(listed.example_id) == list(d.example_id) and list(listed.decision) == ["accept", "reject"]
    assert store.session_decisions(sid).equals(d)  # nothing taken back before the confirmation
    assert second.button(key="vet_confirm").label == "Confirm: discard 2 decisions"
    second.button(key="vet_confirm").click().run()
    assert not second.exception
    assert store.session_decisions(sid).empty
    assert not [b for b in second.button if b.key and b.key.startswith("vet_resume_")]
    first.run()  # the first browser session's selection follows: its session has no decision in force
    assert shown(first) == shown(second)


def test_pool_sessions_describe_discard_and_apply_as_listed(store):
    state, sp, chosen = live(store)
    ids, k = list(sp.scores.example_id), len(chosen)
    pool = {"extract_run": state.extract_run, "pool_setting": "mixed", "pool_limit": 0}
    empty = open_session(store, TASK, user="ada", **pool)
    older = open_session(store, TASK, user="ada", **pool)
    newer = open_session(store, TASK, user="bob", **pool)
    other_pool = open_session(store, TASK, user="ada", extract_run=state.extract_run, pool_setting="task-only")
    decide(store, older, [ids[k]], "accept")
    decide(store, older, [ids[0]], "reject")
    decide(store, older, [ids[0]], "skip")  # re-decided: one example, its latest decision
    decide(store, other_pool, [ids[1]], "reject")
    decide(store, newer, [ids[1], ids[2]], "reject")
    rows = pool_sessions(store, TASK, **pool)
    assert list(rows.session_id) == [newer, older]  # decisions in force only, the latest decided first
    assert empty not in set(rows.session_id) and other_pool not in set(rows.session_id)
    r = rows.set_index("session_id").loc[older]
    assert (r.n_decisions, r.accepted, r.rejected, r.skipped, r.user_name) == (2, 1, 0, 1, "ada")
    assert describe_session(older, 2, "ada", r.last_decided).startswith(f"session {older} (2 decisions, by ada, 20")
    assert describe_session(older, 1, None, None) == f"session {older} (1 decision, by no name)"
    undo(store, newer)
    assert list(pool_sessions(store, TASK, **pool).session_id) == [older]  # undone to nothing: not offered

    # apply as listed: a decision made after the listing is not applied
    listed = store.vetting_seq(older)
    decide(store, older, [ids[3]], "reject")
    assert apply_to_overrides(store, TASK, older, as_of=listed) == {"pinned": 1, "rejected": 0}

    # discard: nothing in force, the log kept (as of an earlier action it reads back), no longer offered
    before = store.session_decisions(older)
    assert discard_session(store, older) == 3
    assert store.session_decisions(older).empty and pool_sessions(store, TASK, **pool).empty
    assert store.session_decisions(older, as_of=listed + 1).equals(before)
    assert undo(store, older) == []
    with pytest.raises(ValueError, match="no vetting session"):
        discard_session(store, "no-such")
