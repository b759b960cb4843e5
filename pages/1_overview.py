"""Overview: workspace status (model, SAE quality, corpus, runs) and the bootstrap button."""

import streamlit as st

from igds.pipeline import BootstrapConfig, bootstrap
from igds.status import workspace_status
from igds.ui.resources import get_store
from igds.ui.widgets import st_progress

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
            "(about 15 minutes on 2 CPU cores; cached afterwards).")
    if st.button("Bootstrap the default workspace", key="bootstrap", type="primary"):
        with st.status("Bootstrapping…", expanded=True) as box:
            summary = bootstrap(BootstrapConfig(), store=store, progress=st_progress("bootstrap"))
            box.update(label="Bootstrap finished", state="complete")
        st.json(summary)

st.subheader("Model")
st.dataframe(status.models, hide_index=True, width="stretch") if not status.models.empty else st.caption("none yet")
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
st.dataframe(status.runs, hide_index=True, width="stretch") if not status.runs.empty else st.caption("no runs yet")
