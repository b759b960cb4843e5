"""Data: bring your own datasets, define tasks on them, and choose the workspace's model and SAE."""

import streamlit as st

from igds.ui.data import add_dataset_section, create_task_section, datasets_section, tasks_section
from igds.ui.identity import identity_section
from igds.ui.resources import get_store
from igds.ui.state import current_task

store = get_store()
st.title("Data, tasks, model and SAE")
st.caption("Add your own instruction data, define a task on it (every page, command and job sees it), and pick "
           "the model and SAE the workspace runs on.")
add_dataset_section(store)
datasets = datasets_section(store)
st.divider()
create_task_section(store, datasets)
tasks_section(store)
st.divider()
identity_section(store, current_task())
