"""The only users of ``st.cache_resource``: thread-safe singletons shared by all sessions."""

from __future__ import annotations

import threading

import streamlit as st

from igds.store import ActivationStore

# model forwards from several browser sessions must not interleave on two CPU cores
MODEL_LOCK = threading.Lock()


@st.cache_resource
def get_store() -> ActivationStore:
    """The workspace's activation store (opens short-lived connections per call, so thread-safe)."""
    return ActivationStore()


@st.cache_resource(show_spinner="Loading the model and SAE…")
def get_workspace():
    """The default model + SAE (loaded once; used for token highlights and steering)."""
    from igds.pipeline import BootstrapConfig, open_workspace

    return open_workspace(BootstrapConfig(), store=get_store())
