"""Results: the reproduction grid (methods side by side with intervals, amplification vs. gain), and every
fine-tuned run vs. the base model with its outputs."""

import streamlit as st

from igds.training.results import base_eval, correlations_table, eval_outputs, runs_table
from igds.ui.experiment import experiment_view
from igds.ui.jobs import job_launcher, needs_or_waiting
from igds.ui.resources import get_store
from igds.ui.state import bad_link, current_task, link_value
from igds.ui.widgets import amplification_scatter, correlation_text, md_text, url_write

task = current_task()
store = get_store()
st.title(f"Results · {task}")
runs = runs_table(store, task)
ids = dict(zip(runs.run_id, runs.eval_id, strict=True)) | dict(zip(runs.eval_id, runs.eval_id, strict=True))
if st.session_state.get("res_run") not in ids.values():  # another task's run, or one removed since
    st.session_state.pop("res_run", None)
if (bad := link_value("run", "res_run", ids.get)) is not None:  # a run id or its evaluation's id
    bad_link({"run": bad}, f"is no evaluated fine-tune of task {md_text(task)}")
grid, single = st.tabs(["Experiment grid", "All runs"])
with grid:
    experiment_view(store, task)
with single:
    base = base_eval(store, task)
    job_launcher("evaluate", {"task": task, "eval": {"n_examples": 200}}, label="Evaluate the base model",
                 key="eval_base", help="task metric and reference NLL of the base model on the test split")
    if runs.empty:
        needs_or_waiting("No evaluated fine-tune yet: launch one on the Export & fine-tune page.",
                         ("bootstrap", "finetune", "experiment"), task, "the evaluated fine-tunes")
        st.stop()

    metric = runs.metric.iloc[0]
    if base:
        c1, c2 = st.columns(2)
        c1.metric(f"Base {metric}", f"{base['score']:.4f}")
        c2.metric("Base reference NLL", f"{base['nll']:.3f}")
    st.subheader("Runs")
    st.dataframe(runs[["selection", "method", "pool_setting", "ratio", "seed", "n_train", "score", "metric_gain", "nll",
                       "nll_gain", "amplification", "run_id"]], hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.4f")
                                for c in ("score", "metric_gain", "nll", "nll_gain", "amplification")})

    st.subheader("Feature amplification vs. gain")
    y = st.segmented_control("Gain", ["metric_gain", "nll_gain"], default="metric_gain", key="res_y")
    amplification_scatter(runs, y, "res_corr", f"One point per run: amplification of the task features vs. {y}",
                          color="method", hover_data=["selection", "ratio", "seed", "run_id"])
    corr = correlations_table(store, task)
    for r in corr[(corr.x_name == "amplification") & (corr.y_name == y)].itertuples():
        correlation_text(r)

    st.subheader("Outputs, example by example")
    choice = st.selectbox("Run", runs.eval_id.tolist(), format_func=lambda e: runs.set_index("eval_id").selection[e],
                          key="res_run")
    url_write("run", "res_run", runs.set_index("eval_id").run_id[choice])
    outs = eval_outputs(store, choice)
    if base:
        outs = outs.merge(eval_outputs(store, base["eval_id"])[["example_id", "prediction", "score"]],
                          on="example_id", suffixes=("", "_base"))
    st.dataframe(outs, hide_index=True, width="stretch")
