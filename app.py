"""IGDS dashboard: the frame and router. Pages are thin and live in pages/, listed explicitly."""

import streamlit as st

from igds import __version__
from igds.data.tasks import list_tasks
from igds.ui.jobs import preparing_notice
from igds.ui.pages import HOME, PAGES
from igds.ui.resources import get_store
from igds.ui.state import (
    TASK,
    bad_task_link,
    init_state,
    set_url,
    sync_task,
    task_picked,
    unknown_linked_task,
    unused_link_notice,
)
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
    st.selectbox("Task", tasks, key=TASK, help="every page works on this task", on_change=task_picked)
    bad_task = unknown_linked_task(tasks)
    if bad_task is None:  # a link's unknown task stays in the URL (and its message on the page) until replaced
        set_url(task=st.session_state[TASK])
    st.caption(f"IGDS {__version__} · interpretability-guided data selection")
pages = [st.Page(f, title=t, url_path=u, icon=i) for f, t, u, i in PAGES]


def open_first_page() -> None:
    """The default page at "/": open the first page at its own path, with the link's URL state."""
    st.switch_page(pages[0], query_params=st.query_params.to_dict())


nav = st.navigation([st.Page(open_first_page, title=PAGES[0][1], url_path=HOME, default=True, visibility="hidden"),
                     *pages])
if nav.url_path:  # not the default page, which only opens the first one
    if bad_task is not None:
        bad_task_link(bad_task, tasks)  # stops here
    unused_link_notice(nav.url_path)
    preparing_notice()  # what the first run is still preparing, and when it will be ready
nav.run()
