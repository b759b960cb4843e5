"""Features: recalled candidates with their causal verdicts and F* stability; a feature panel that leads with
the top-activating contexts, then the logit lens, the activation histogram, pool examples and veto/pin."""

import plotly.express as px
import streamlit as st

from igds.method.selection import set_feature_override
from igds.ui.jobs import job_launcher
from igds.ui.resources import MODEL_LOCK, get_store, get_workspace
from igds.ui.state import DEFAULT_TASK, current_task
from igds.ui.widgets import context_highlights, needs
from igds.workflow.catalog import task_data
from igds.workflow.explore import (
    CONTEXT_K,
    CONTEXT_WINDOW,
    activation_histogram,
    cached_contexts,
    compute_contexts,
    features_table,
    logit_lens_tokens,
    missing_activations,
    neuronpedia_url,
    task_state,
    top_examples,
)

task = current_task()
store = get_store()
st.title(f"Features · {task}")
state = task_state(store, task)
if not state.extract_run and task == DEFAULT_TASK:
    needs("No activations yet: bootstrap the workspace on the Overview page first.")
    st.stop()
if not state.recall_id and (missing := missing_activations(store, state.extract_run, task)):
    needs(f"{missing} of this task's probe and dev items have no activations yet: extract the task first "
          "(its probe, dev and pool items, with the model and SAE the workspace uses).")
    data = task_data(store, task)
    job_launcher("extract", {"tasks": [task], "pool_setting": data.default_pool_setting if data else "mixed"},
                 label=f"Extract {task}", key="extract_task", help="runs in the background; you can leave this page")
    st.stop()
if not state.recall_id:
    needs("Run recall to find the SAE features that fire most often on this task.")
    if st.button("Run recall", key="run_recall", type="primary"):
        from igds.method.extract import ExtractConfig
        from igds.method.recall import RecallConfig
        from igds.workflow.stages import run_recall

        extract_cfg = ExtractConfig.from_dict(store.run(state.extract_run)["config"]["extract"])
        with st.spinner("Recalling features…"), MODEL_LOCK:
            run_recall(get_workspace(state.extract_run), task, RecallConfig(), extract_cfg)
        st.rerun()
    st.stop()

table = features_table(store, task)
c1, c2, c3 = st.columns(3)
c1.metric("Candidates |C|", state.n_candidates)
c2.metric("Measured", state.n_measured)
c3.metric("Validated |F*|", state.n_kept)
query = st.text_input("Search (feature id, context token or promoted token)", key="feat_search")
shown = table
if query:
    hit = table.feature.astype(str).eq(query) | table.promotes.str.contains(query, case=False, regex=False)
    if "contexts" in table:
        hit |= table.contexts.str.contains(query, case=False, regex=False)
    shown = table[hit]
config = {c: st.column_config.NumberColumn(format="%.3f") for c in
          ("freq_task", "freq_ref", "lift", "mean_act_task", "amp_effect", "abl_effect", "q_value", "attribution",
           "tok_freq_task", "tok_freq_ref")}
config["contexts"] = st.column_config.TextColumn(help="Max tokens of the top-activating contexts (×n: repeated)")
config["stability"] = st.column_config.NumberColumn(
    format="%.2f", help="Share of 200 bootstrap resamples of the dev items in which the feature stays in F*")
st.dataframe(shown, hide_index=True, width="stretch", key="feat_table", on_select="rerun", selection_mode="single-row",
             column_config=config)
picked = st.session_state.get("feat_table", {}).get("selection", {}).get("rows", [])
kept = table[table.verdict == "kept"] if "verdict" in table else table.iloc[:0]
first = kept if len(kept) else table  # open on a validated feature when there is one
default = int(shown.feature.iloc[picked[0]]) if picked and len(shown) else int(first.feature.iloc[0])
feature = st.number_input("Feature", min_value=0, value=default, step=1, key="feat_id")

st.header(f"Feature {feature}")
row = table[table.feature == feature]
left, right = st.columns(2)
if not row.empty and "amp_effect" in row:
    r = row.iloc[0]
    left.markdown(f"**Amplification effect** {r.amp_effect:+.4f} nats "
                  f"(95% CI {r.amp_ci_low:+.4f}..{r.amp_ci_high:+.4f}) · "
                  f"**attribution estimate** {r.attribution:+.4f} · **ablation** {r.abl_effect:+.4f} · "
                  f"**verdict** {r.verdict}" + (f" · **stability** {r.stability:.2f}" if "stability" in row else ""))
b1, b2, b3 = right.columns(3)
for col, label, action in ((b1, "Veto", "veto"), (b2, "Pin", "pin"), (b3, "Clear", None)):
    if col.button(label, key=f"feat_{label.lower()}"):
        set_feature_override(store, task, state.sae_key, feature, action)
        st.rerun()

hist = activation_histogram(store, state.extract_run, feature)
st.subheader("Top-activating contexts")
st.caption(f"The {CONTEXT_K} examples of the extraction run (any task or split) where the feature's max activation "
           f"is highest, ±{CONTEXT_WINDOW} tokens around the max token (outlined); grey tokens are outside the run's "
           "token scope.")
ctx = cached_contexts(store, state.extract_run, [feature])
if not ctx.empty:
    context_highlights(ctx)
elif hist.empty:
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
st.markdown("**Promotes:** " + " · ".join(f"`{t}`" for t in lens["top"]))
st.markdown("**Suppresses:** " + " · ".join(f"`{t}`" for t in lens["bottom"]))
if url := neuronpedia_url(store, state.sae_key, feature):
    st.markdown(f"[Open on Neuronpedia]({url})")

st.subheader("Activation histogram")
if not hist.empty:
    st.plotly_chart(px.histogram(hist, x="max_act", color="task", nbins=40, barmode="overlay",
                                 title="Max activation per example where it fires"), key="feat_hist")
st.subheader("Top-activating pool examples")
top = top_examples(store, state.extract_run, feature, task, k=8)
st.dataframe(top[["example_id", "task", "source", "max_act", "mean_act", "prompt"]], hide_index=True, width="stretch")
