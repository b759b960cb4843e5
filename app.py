"""IGDS dashboard: the frame and router. Pages are thin and live in pages/, listed explicitly."""

import streamlit as st

from igds import __version__
from igds.data.tasks import list_tasks
from igds.ui.pages import PAGES
from igds.ui.resources import get_store
from igds.ui.state import TASK, init_state, set_url, sync_task
from igds.workflow.catalog import task_names

st.set_page_config(page_title="IGDS", page_icon=":material/filter_alt:", layout="wide")
init_state()
with st.sidebar:
    try:
        tasks = task_names(get_store())  # every run: tasks added by other sessions or processes show up
    except Exception as exc:  # an unreadable store must not take the sidebar (and every page) down
        tasks = list_tasks()
        st.caption(f"workspace tasks unavailable: {exc}")
    sync_task(tasks)
    st.selectbox("Task", tasks, key=TASK, help="every page works on this task")
    set_url(task=st.session_state[TASK])
    st.caption(f"IGDS {__version__} · interpretability-guided data selection")
nav = st.navigation([st.Page(f, title=t, url_path=u, icon=i, default=(n == 0))
                     for n, (f, t, u, i) in enumerate(PAGES)])
nav.run()
