import shutil

import pytest


@pytest.fixture(autouse=True)
def _clear_streamlit_caches():
    # st.cache_resource leaks between AppTest instances in one process: each test gets fresh ones
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def vetting_store(tmp_path, monkeypatch):
    """A copy of the vetting workspace's store (tests.integration.test_vetting), the app's store for the test, with
    the user ``grace``."""
    from igds.store import ActivationStore
    from tests.integration.test_vetting import vetting_store_file

    path = tmp_path / "igds.duckdb"
    shutil.copy(vetting_store_file(), path)
    monkeypatch.setenv("IGDS_STORE", str(path))
    monkeypatch.setenv("IGDS_USER", "grace")
    return ActivationStore(path)
