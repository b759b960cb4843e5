"""Features: recalled candidates with their causal verdicts; a feature page with examples and veto/pin."""

import plotly.express as px
import streamlit as st

from igds.method.selection import set_feature_override
from igds.ui.resources import MODEL_LOCK, get_store, get_workspace
from igds.ui.state import current_task
from igds.ui.widgets import needs, show_token_highlights
from igds.workflow.explore import (
    activation_histogram,
    features_table,
    logit_lens_tokens,
    neuronpedia_url,
    task_state,
    top_examples,
)

task = current_task()
store = get_store()
st.title(f"Features · {task}")
state = task_state(store, task)
if not state.extract_run:
    needs("No activations yet: bootstrap the workspace on the Overview page first.")
    st.stop()
if not state.recall_id:
    needs("Run recall to find the SAE features that fire most often on this task.")
    if st.button("Run recall", key="run_recall", type="primary"):
        from igds.method.recall import RecallConfig
        from igds.workflow.stages import run_recall
        from igds.workflow.workspace import BootstrapConfig

        with st.spinner("Recalling features…"), MODEL_LOCK:
            run_recall(get_workspace(), task, RecallConfig(), BootstrapConfig().extract)
        st.rerun()
    st.stop()

table = features_table(store, task)
c1, c2, c3 = st.columns(3)
c1.metric("Candidates |C|", state.n_candidates)
c2.metric("Measured", state.n_measured)
c3.metric("Validated |F*|", state.n_kept)
query = st.text_input("Search (feature id or promoted token)", key="feat_search")
shown = table
if query:
    shown = table[table.feature.astype(str).eq(query) | table.promotes.str.contains(query, case=False, regex=False)]
st.dataframe(shown, hide_index=True, width="stretch", key="feat_table", on_select="rerun", selection_mode="single-row",
             column_config={c: st.column_config.NumberColumn(format="%.3f") for c in
                            ("freq_task", "freq_ref", "lift", "mean_act_task", "amp_effect", "abl_effect",
                             "q_value", "attribution", "tok_freq_task", "tok_freq_ref")})
picked = st.session_state.get("feat_table", {}).get("selection", {}).get("rows", [])
default = int(shown.feature.iloc[picked[0]]) if picked and len(shown) else int(table.feature.iloc[0])
feature = st.number_input("Feature", min_value=0, value=default, step=1, key="feat_id")

st.header(f"Feature {feature}")
row = table[table.feature == feature]
lens = logit_lens_tokens(store, state.sae_key, feature)
left, right = st.columns(2)
left.markdown("**Promotes:** " + " · ".join(f"`{t}`" for t in lens["top"]))
left.markdown("**Suppresses:** " + " · ".join(f"`{t}`" for t in lens["bottom"]))
if url := neuronpedia_url(store, state.sae_key, feature):
    left.markdown(f"[Open on Neuronpedia]({url})")
if not row.empty and "amp_effect" in row:
    r = row.iloc[0]
    right.markdown(f"**Amplification effect** {r.amp_effect:+.4f} nats "
                   f"(95% CI {r.amp_ci_low:+.4f}..{r.amp_ci_high:+.4f}) · "
                   f"**attribution estimate** {r.attribution:+.4f} · **ablation** {r.abl_effect:+.4f} · "
                   f"**verdict** {r.verdict}")
b1, b2, b3 = right.columns(3)
for col, label, action in ((b1, "Veto", "veto"), (b2, "Pin", "pin"), (b3, "Clear", None)):
    if col.button(label, key=f"feat_{label.lower()}"):
        set_feature_override(store, task, state.sae_key, feature, action)
        st.rerun()

hist = activation_histogram(store, state.extract_run, feature)
if not hist.empty:
    st.plotly_chart(px.histogram(hist, x="max_act", color="task", nbins=40, barmode="overlay",
                                 title="Max activation per example where it fires"), key="feat_hist")
st.subheader("Top-activating pool examples")
top = top_examples(store, state.extract_run, feature, task, k=8)
st.dataframe(top[["example_id", "task", "source", "max_act", "mean_act", "prompt"]], hide_index=True, width="stretch")
if not top.empty and st.toggle("Show token highlights (runs the model)", key="feat_tokens"):
    for r in top.head(4).itertuples():
        show_token_highlights({"id": r.example_id, "task": r.task, "source": r.source, "prompt": r.prompt,
                               "response": r.response}, [feature], vmax=float(top.max_act.max()))
