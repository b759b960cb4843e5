"""Features: recalled candidates with their causal verdicts, F* stability, labels and check flags; a feature panel
at the level of Neuronpedia / SAEDashboard: top-activating contexts, logit lens, activation density, examples from
several activation quantiles, the effect against the null, a label and note. ``?feature=…&example=…`` links here."""

import streamlit as st

from igds.ui import features as panel
from igds.ui import ways_on
from igds.ui.jobs import job_launcher, needs_or_waiting
from igds.ui.resources import MODEL_LOCK, get_store, get_workspace
from igds.ui.state import DEFAULT_TASK, current_task
from igds.ui.widgets import context_highlights, md_code
from igds.workflow.explore import (
    CONTEXT_K,
    CONTEXT_WINDOW,
    activation_histogram,
    cached_contexts,
    compute_contexts,
    default_pool,
    feature_explorer_table,
    logit_lens_tokens,
    missing_activations,
    neuronpedia_url,
    sae_width,
    task_state,
    top_examples,
)
from igds.workflow.stages import latest_effects

task = current_task()
store = get_store()
st.title(f"Features · {task}")
state = task_state(store, task)
if not state.extract_run and task == DEFAULT_TASK:
    needs_or_waiting("No activations yet: bootstrap the workspace on the Overview page first.",
                     ("bootstrap", "extract"), task, "the features of this task")
    st.stop()
if not state.recall_id and (missing := missing_activations(store, state.extract_run, task)):
    # a bootstrap on its way fills them (its extraction stage); else the task is extracted on its own
    if not needs_or_waiting(f"{missing} of this task's probe and dev items have no activations yet: extract the task "
                            "first (its probe, dev and pool items, with the model and SAE the workspace uses).",
                            ("bootstrap",), task, "the features of this task"):
        job_launcher("extract", {"tasks": [task], "pool_setting": default_pool(store, task)},
                     label=f"Extract {task}", key="extract_task",
                     help="runs in the background; you can leave this page")
    st.stop()
if not state.recall_id:
    if not needs_or_waiting("Run recall to find the SAE features that fire most often on this task.",
                            ("bootstrap",), task, "the recalled features"):  # a bootstrap recalls after extracting
        job_launcher("recall", {"task": task, "extract_run": state.extract_run}, label=f"Recall {task}'s features",
                     key="run_recall", help="token frequencies on the task's probe items against the reference set, "
                                            "then the logit lens of the SAE's features (once per SAE); a job")
    st.stop()

table = feature_explorer_table(store, task, state.sae_key)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Candidates |C|", state.n_candidates)
c2.metric("Measured", f"{state.n_measured}/{state.n_candidates}")
c3.metric("Validated |F*|", state.n_kept)
c4.metric("Used for selection", state.n_used, help="F* less vetoed plus pinned features: what the Selection page "
                                                   "scores the pool with")
ways_on.fstar_notice(store, task, state, latest_effects(store, task) if state.n_measured else None,
                     page="features")
panel.quick_look(store, task, state)
panel.power(store, task, state)
panel.contexts_caption(table, state)
query = st.text_input("Search (feature id, context token, promoted token or label)", key="feat_search")
shown = panel.filter_table(table, query)
st.dataframe(shown, hide_index=True, width="stretch", key="feat_table", on_select="rerun", selection_mode="single-row",
             column_config=panel.table_config())
feature = panel.pick_feature(table, shown, sae_width(store, state.sae_key))

panel.header(store, task, state, table, feature)
if feature is None:
    st.stop()
panel.effect_chart(store, task, feature)
with st.expander("Label and note", expanded=False):
    panel.label_form(store, state.sae_key, feature)

st.subheader("Top-activating contexts")
st.caption(f"The {CONTEXT_K} examples of the extraction run (any task or split) where the feature's max activation "
           f"is highest, ±{CONTEXT_WINDOW} tokens around the max token (outlined); grey tokens are outside the run's "
           "token scope.")
ctx = cached_contexts(store, state.extract_run, [feature])
if not ctx.empty:
    context_highlights(ctx)
elif activation_histogram(store, state.extract_run, feature).empty:
    st.caption("The feature fires on no example of this run.")
elif st.button("Compute contexts (runs the model on these examples)", key="feat_ctx"):
    ws = get_workspace(state.extract_run)
    with st.spinner("Recomputing token activations…"), MODEL_LOCK:
        compute_contexts(store, state.extract_run, [feature], ws.model, ws.tokenizer, ws.sae, ws.site)
    st.rerun()

st.subheader("Logit lens")
st.caption("Tokens the decoder direction promotes and suppresses through the unembedding: secondary, since at a "
           "middle block it is often noise even for a clear feature.")
lens = logit_lens_tokens(store, state.sae_key, feature)
st.markdown("**Promotes (positive logits):** " + " · ".join(md_code(t) for t in lens["top"]))
st.markdown("**Suppresses (negative logits):** " + " · ".join(md_code(t) for t in lens["bottom"]))
if url := neuronpedia_url(store, state.sae_key, feature):
    st.markdown(f"[Open on Neuronpedia]({url})")

st.subheader("Activation histogram")
panel.density(store, state.extract_run, feature)
st.subheader("Examples by activation quantile")
panel.quantiles(store, task, state.extract_run, feature)
panel.highlighted_example(store, task, state.extract_run, feature)
st.subheader("Top-activating pool examples")
top = top_examples(store, state.extract_run, feature, task, k=8)
st.dataframe(top[["example_id", "task", "source", "max_act", "mean_act", "prompt"]], hide_index=True, width="stretch")
