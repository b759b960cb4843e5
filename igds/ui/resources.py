"""The only users of ``st.cache_resource``: thread-safe singletons shared by all sessions."""

from __future__ import annotations

import streamlit as st

from igds.store import ActivationStore


@st.cache_resource
def get_store() -> ActivationStore:
    """The workspace's activation store (opens short-lived connections per call, so thread-safe)."""
    return ActivationStore()
