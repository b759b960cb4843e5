"""Namespaced session-state keys and typed accessors. Results live in the store, not here."""

from __future__ import annotations

import streamlit as st

TASK = "global.task"
DEFAULT_TASK = "summarization"


def init_state() -> None:
    """Defaults for keys every page may read."""
    st.session_state.setdefault(TASK, DEFAULT_TASK)


def current_task() -> str:
    """The task picked in the sidebar."""
    return st.session_state.get(TASK, DEFAULT_TASK)
