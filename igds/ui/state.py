"""Namespaced session-state keys and typed accessors. Results live in the store, not here."""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

TASK = "global.task"
# a task a page asks the sidebar to switch to on the next run (the sidebar's widget is already drawn by then)
PENDING_TASK = "global.task_pending"
DEFAULT_TASK = "summarization"
URL_APPLIED = "global.url_task_applied"


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
    linked = url_value("task")
    if pending is None and linked in tasks and not st.session_state.get(URL_APPLIED):
        pending = linked  # a link's task, once per session: the sidebar rules after that
        st.session_state[URL_APPLIED] = True
    if pending in tasks:
        st.session_state[TASK] = pending
    elif tasks and st.session_state.get(TASK) not in tasks:
        st.session_state[TASK] = tasks[0]


# -- page state in the URL: a link opens exactly what the sender was looking at -------------------------------
URL_KEYS = ("task", "feature", "example", "selection", "compare", "text")


def url_value(key: str) -> str | None:
    """A page-state value from the URL's query string (``?task=…&feature=…``), or None."""
    if key not in URL_KEYS:
        raise KeyError(f"{key!r} is not a URL state key ({', '.join(URL_KEYS)})")
    value = st.query_params.get(key)
    return value if value not in (None, "") else None


def set_url(**values) -> None:
    """Write page-state values into the URL (None removes a key), so the address bar is a link to this view."""
    for key, value in values.items():
        if key not in URL_KEYS:
            raise KeyError(f"{key!r} is not a URL state key ({', '.join(URL_KEYS)})")
        if value is None or value == "":
            st.query_params.pop(key, None)
        elif st.query_params.get(key) != str(value):
            st.query_params[key] = str(value)
