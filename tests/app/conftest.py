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
