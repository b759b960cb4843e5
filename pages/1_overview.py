"""Overview: workspace status (model, SAE quality, corpus, runs, jobs) and the bootstrap job."""

import streamlit as st

from igds.ui.executor import executor_settings
from igds.ui.jobs import job_launcher, job_rows, queue_table
from igds.ui.resources import get_store
from igds.ui.widgets import section_table
from igds.workflow.status import workspace_status

st.title("IGDS workspace")
store = get_store()
status = workspace_status(store)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Examples in store", f"{status.counts['examples']:,}")
c2.metric("Activation rows", f"{status.counts['feature_acts']:,}")
c3.metric("Default model", "ready" if status.model_ready else "not converted")
c4.metric("Default SAE", "shipped" if status.sae_ready else "missing")

if not status.prepared:
    st.info("The workspace is not prepared yet. Bootstrap converts the default model (SmolLM2-135M-Instruct), "
            "loads the SAE shipped with IGDS (trained with sae-lens on content tokens, checksum-verified), "
            "extracts activations for the summarization task, recalls its features and tests them against a "
            "random-direction null (a few minutes on 2 CPU cores; cached afterwards). `make run` starts it for you.")
job_launcher("bootstrap", {}, label="Bootstrap the default workspace", key="bootstrap",
             help="runs in the background; you can leave this page")

fmt3 = st.column_config.NumberColumn(format="%.3f")
section_table("Model", status.models)
section_table("SAE", status.saes, column_config={c: fmt3 for c in ("explained_variance", "dead_fraction",
                                                                    "ce_recovered")})
corpus = status.examples.pivot(index="task", columns="split", values="n").fillna(0).astype(int) \
    if not status.examples.empty else None
section_table("Corpus in the store", corpus, "no examples ingested yet", hide_index=False)
section_table("Runs", status.runs, "no runs yet")
queue_table()
executor_settings(store)
section_table("Jobs", job_rows(20), "no jobs yet")
