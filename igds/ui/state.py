"""Namespaced session-state keys and typed accessors. Results live in the store, not here."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

TASK = "global.task"
# a task a page asks the sidebar to switch to on the next run (the sidebar's widget is already drawn by then)
PENDING_TASK = "global.task_pending"
DEFAULT_TASK = "summarization"


def init_state() -> None:
    """Defaults for keys every page may read."""
    st.session_state.setdefault(TASK, DEFAULT_TASK)


def current_task() -> str:
    """The task picked in the sidebar."""
    return st.session_state.get(TASK, DEFAULT_TASK)


def request_task(name: str) -> None:
    """Make ``name`` the sidebar's task from the next run on (call ``st.rerun()`` after it)."""
    st.session_state[PENDING_TASK] = name


def sync_task(tasks: Sequence[str]) -> None:
    """Before the sidebar's task picker is drawn: apply a requested task, and fall back to the first task when
    the selected one is gone (e.g. removed in another session or process)."""
    pending = st.session_state.pop(PENDING_TASK, None)
    if pending in tasks:
        st.session_state[TASK] = pending
    elif tasks and st.session_state.get(TASK) not in tasks:
        st.session_state[TASK] = tasks[0]
