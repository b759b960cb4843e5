"""Overview: workspace status (model, SAE quality, corpus, runs, jobs) and the bootstrap job."""

import streamlit as st

from igds.jobs import list_jobs
from igds.status import workspace_status
from igds.ui.jobs import job_launcher
from igds.ui.resources import get_store

st.title("IGDS workspace")
store = get_store()
status = workspace_status(store)

c1, c2, c3, c4 = st.columns(4)
c1.metric("Examples in store", f"{status.counts['examples']:,}")
c2.metric("Activation rows", f"{status.counts['feature_acts']:,}")
c3.metric("Default model", "ready" if status.model_ready else "not converted")
c4.metric("Default SAE", "trained" if status.sae_ready else "not trained")

if not status.extracted:
    st.info("The workspace is not prepared yet. Bootstrap converts the default model (SmolLM2-135M-Instruct), "
            "trains the default SAE with sae-lens and extracts activations for the summarization pool "
            "(about 15 minutes on 2 CPU cores; cached afterwards). `make run` starts it for you.")
job_launcher("bootstrap", {}, label="Bootstrap the default workspace", key="bootstrap",
             help="runs in the background; you can leave this page")

st.subheader("Model")
if status.models.empty:
    st.caption("none yet")
else:
    st.dataframe(status.models, hide_index=True, width="stretch")
st.subheader("SAE")
if status.saes.empty:
    st.caption("none yet")
else:
    st.dataframe(status.saes, hide_index=True, width="stretch",
                 column_config={"explained_variance": st.column_config.NumberColumn(format="%.3f"),
                                "dead_fraction": st.column_config.NumberColumn(format="%.3f"),
                                "ce_recovered": st.column_config.NumberColumn(format="%.3f")})
st.subheader("Corpus in the store")
if status.examples.empty:
    st.caption("no examples ingested yet")
else:
    st.dataframe(status.examples.pivot(index="task", columns="split", values="n").fillna(0).astype(int),
                 width="stretch")
st.subheader("Runs")
if status.runs.empty:
    st.caption("no runs yet")
else:
    st.dataframe(status.runs, hide_index=True, width="stretch")
st.subheader("Jobs")
jobs = list_jobs()
if jobs:
    st.dataframe([{"job": j["job_id"], "kind": j["kind"], "state": j["state"], "attempt": j.get("attempt"),
                   "progress": (j.get("progress") or {}).get("message", "")} for j in jobs[:20]],
                 hide_index=True, width="stretch")
else:
    st.caption("no jobs yet")
