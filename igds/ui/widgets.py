"""Reusable Streamlit widgets, including the adapter from the library's progress callback."""

from __future__ import annotations

import streamlit as st

from igds.progress import ProgressFn


def st_progress(label: str) -> ProgressFn:
    """A progress callback that drives an ``st.progress`` bar with the stage message as text."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int, message: str) -> None:
        bar.progress(min(1.0, done / total) if total else 0.0, text=message or label)

    return update
