"""The only users of ``st.cache_resource``: thread-safe singletons shared by all sessions."""

from __future__ import annotations

import threading

import streamlit as st

from igds.scope import PoolSpec
from igds.store import ActivationStore

# model forwards from several browser sessions must not interleave on two CPU cores
MODEL_LOCK = threading.Lock()


@st.cache_resource
def get_store() -> ActivationStore:
    """The workspace's activation store (opens short-lived connections per call, so thread-safe)."""
    return ActivationStore()


@st.cache_resource(show_spinner="Loading the model and SAE…", max_entries=2)
def get_workspace(run_id: str | None = None):
    """The model + SAE a stored run was made with (the one resolver,
    :func:`igds.workflow.workspace.resolve_workspace`), or the workspace's chosen ones without a run; loaded
    once per run (token highlights, contexts, steering and recall all use it)."""
    from igds.workflow.workspace import default_workspace, resolve_workspace

    store = get_store()
    return resolve_workspace(store, run_id=run_id) if run_id else default_workspace(store)


@st.cache_resource(show_spinner="Loading the pool's activations…", max_entries=8)
def get_resonance_matrix(_store: ActivationStore, store_path: str, run_id: str, task: str, pool: PoolSpec,
                         features: tuple[int, ...]):
    """The pool's activations of a task's candidate features, loaded once per extraction run, pool and
    feature set (extraction runs are immutable once done), so slider moves re-rank in memory and
    *Save this selection* stores exactly what the slider shows."""
    from igds.workflow.stages import pool_matrix

    return pool_matrix(_store, run_id, task, pool, features)


@st.cache_resource
def _extracted_pools() -> set:
    """(store path, run, task, setting) of pools found fully extracted (an extraction run only grows)."""
    return set()


def pool_ready(store: ActivationStore, run_id: str, task: str, setting: str) -> bool:
    """:func:`igds.workflow.explore.pool_extracted`, asked of the store until it is true and remembered from then on,
    so a page that reruns on every slider move does not query it each time."""
    from igds.workflow.explore import pool_extracted

    key = (str(store.path), run_id, task, setting)
    if key in _extracted_pools():
        return True
    if ready := pool_extracted(store, run_id, task, setting):
        _extracted_pools().add(key)
    return ready
