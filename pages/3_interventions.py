"""Interventions: each feature's α = 1 effect with its CI against the null band, dose–response of the swept
features, attribution vs exact, per-example deltas, the null itself, and "try it"."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from igds.ui import ways_on
from igds.ui.jobs import job_launcher, needs_or_waiting
from igds.ui.resources import get_store
from igds.ui.state import current_task
from igds.ui.widgets import generations, needs
from igds.workflow.explore import effect_views, filter_preset, filter_rule, task_state
from igds.workflow.stages import latest_effects

task = current_task()
store = get_store()
st.title(f"Interventions · {task}")
state = task_state(store, task)
if not state.recall_id:
    needs_or_waiting("Run recall first (Features page): interventions test the recalled candidates.",
                     ("bootstrap", "extract"), task, "the recalled candidates")
    st.stop()
job_launcher("intervene", {"task": task}, label=f"Measure effects of the {state.n_candidates} candidates "
             "(default filter)", key="int_job", help="the null first (random edits of the same size), then each "
                                                     "candidate amplified and ablated on the dev split; resumable")
res = latest_effects(store, task) if state.n_measured else None
if not state.n_measured:
    ways_on.fstar_notice(store, task, state, res, page="interventions")
    if not state.measuring:
        needs("No effects measured yet. Start the job above; results appear here feature by feature.")
    st.stop()

v = effect_views(store, task)
cfg = res.config
s = v["summary"]
q_label = f"fitted null p{100 * (1 - cfg.fdr):g}"
c1, c2, c4, c5 = st.columns(4)
c1.metric("Measured", f"{state.n_measured}/{state.n_candidates}")
c2.metric("Validated |F*|", state.n_kept, f"{state.n_used} used for selection" if state.n_used != state.n_kept
          else None, "off", help="used for selection: F* less vetoed plus pinned features", delta_arrow="off")
c4.metric(q_label, f"{res.null_cut:+.4f} nats" if len(res.null) else "—",
          help=f"{len(res.null)} null elements (density-matched features and random directions placed on each "
               "candidate's positions) on the same dev rows; a kept feature's p against their fitted distribution "
               "passes BH")
c5.metric("Mean amplification effect", f"{v['amplification'].effect.mean():+.4f} nats")
preset = filter_preset(cfg)
st.caption(f"Run `{res.effect_id}` ({f'the {preset} preset' if preset else 'your own settings'}): edit "
           f"**{cfg.edit_mode}** at **{cfg.positions}** positions · α = 1 decides · kept when {filter_rule(cfg)}.")
ways_on.fstar_notice(store, task, state, res, page="interventions")
st.caption(f"Power: {res.power_line}.")

kinds = st.segmented_control("Effect", ["amplify", "ablate"], default="amplify", key="int_kind")
bars = (v["amplification"] if kinds == "amplify" else s[s.kind == kinds]).sort_values("effect", ascending=False)
kept = set(v["verdict"][v["verdict"].kept].feature)
fig = go.Figure(go.Bar(x=bars.feature_label, y=bars.effect, name="feature",
                       error_y={"type": "data", "symmetric": False, "array": bars.ci_high - bars.effect,
                                "arrayminus": bars.effect - bars.ci_low},
                       marker_color=["#2f9e44" if f in kept else "#adb5bd" for f in bars.feature]))
if kinds == "amplify" and len(res.null):
    for kind, color in (("direction", "#868e96"), ("feature", "#f08c00"), ("placed", "#1c7ed6")):
        null = res.null[res.null.kind == kind]
        if len(null):
            fig.add_trace(go.Box(x=[f"null: {kind}s"] * len(null), y=null.effect, name=f"null ({kind}s)",
                                 boxpoints="all", jitter=0.5, marker_color=color))
    fig.add_hline(y=res.null_cut, line_dash="dash", line_color="#e03131",
                  annotation_text=f"{q_label} {res.null_cut:+.4f}")
title = f"{kinds} effect on dev NLL (nats, 95% CI; green = kept)"
fig.update_layout(title=title + (" against the null" if kinds == "amplify" else ""), xaxis_type="category",
                  showlegend=False)
st.plotly_chart(fig, key="int_bars")

left, right = st.columns(2)
dose = v["dose"][v["dose"].feature.isin(res.dose_response.feature)]
if len(dose):
    fig = px.line(dose, x="alpha", y="effect", color="feature_label", markers=True,
                  title="Dose–response of the swept features (amplification α)")
    if len(res.null):
        fig.add_hline(y=res.null_cut, line_dash="dash", line_color="#e03131", annotation_text=f"{q_label} (α=1)")
    left.plotly_chart(fig, key="int_dose")
else:
    left.caption(f"Dose–response: no feature was swept (sweep_top = {cfg.sweep_top}, α ∈ {list(cfg.alphas)}).")
sc = v["scatter"]
right.plotly_chart(px.scatter(sc, x="est_amplify", y="effect", hover_data=["feature"],
                              title="Attribution estimate vs exact effect (α=1)"), key="int_scatter")
feature = st.selectbox("Per-example deltas of feature", bars.feature.tolist(), key="int_feat")
pe = v["per_example"]
st.plotly_chart(px.histogram(pe[(pe.feature == feature) & (pe.kind == kinds)], x="delta", nbins=30,
                             title=f"f{feature}: per-example {kinds} effect"), key="int_hist")
with st.expander(f"The null ({len(res.null)} edits)"):
    st.caption("Random directions scaled to the candidates' median edit size (root mean square over dev rows of "
               "the per-row edit norm) and density-matched non-candidate features, edited like the candidates "
               "at α = 1 on the same rows and positions.")
    st.dataframe(res.null[["null_id", "kind", "feature", "matched", "edit_norm", "n_fired", "effect", "ci_low",
                           "ci_high"]] if len(res.null) else res.null, hide_index=True, width="stretch")
with st.expander("Strong features recall missed (attribution screen)"):
    st.dataframe(v["missed"], hide_index=True, width="stretch")

st.subheader("Try it")
prompt = st.text_area("Prompt", "Summarize this software package description in one short line:\n\n"
                      "GNU Emacs is an extensible, customizable, free text editor and more.", key="try_prompt")
c1, c2, c3 = st.columns(3)
f_try = c1.selectbox("Feature", bars.feature.tolist(), key="try_feat")
kind_try = c2.selectbox("Intervention", ["amplify", "ablate"], key="try_kind")
alpha = c3.slider("α", 0.0, 8.0, 4.0, 0.5, key="try_alpha")
if f_try is not None:  # greedy generation runs the model: a job (it waits for the queue's slot like any other)
    mean_act = float(v["scatter"].set_index("feature").mean_act.get(f_try, 1.0))
    job_launcher("steer", {"run_id": state.effect_id, "prompt": prompt, "feature": int(f_try), "kind": kind_try,
                           "alpha": float(alpha), "mean_act": mean_act},
                 label=f"Generate with f{f_try} {kind_try}ed (α = {alpha:g})", key="try_go", render=generations,
                 help="48 greedy tokens from the prompt, unmodified and with the feature edited, with the model and "
                      "SAE the interventions measured")
