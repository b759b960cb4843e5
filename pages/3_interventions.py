"""Interventions: per-feature effects with CIs, dose–response, attribution vs exact, and "try it"."""

import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from igds.ui.jobs import job_launcher
from igds.ui.resources import MODEL_LOCK, get_store, get_workspace
from igds.ui.state import current_task
from igds.ui.widgets import needs
from igds.workflow.explore import effect_views, task_state

task = current_task()
store = get_store()
st.title(f"Interventions · {task}")
state = task_state(store, task)
if not state.recall_id:
    needs("Run recall first (Features page): interventions test the recalled candidates.")
    st.stop()
job_launcher("intervene", {"task": task}, label=f"Measure effects of the {state.n_candidates} candidates",
             key="int_job", help="amplify (α=1) and ablate each candidate on the dev split; resumable")
if not state.n_measured:
    needs("No effects measured yet. Start the job above; results appear here feature by feature.")
    st.stop()

v = effect_views(store, task)
s = v["summary"]
c1, c2, c3 = st.columns(3)
c1.metric("Measured", f"{state.n_measured}/{state.n_candidates}")
c2.metric("Validated |F*|", state.n_kept)
c3.metric("Mean amplification effect", f"{v['amplification'].effect.mean():+.4f} nats")

kinds = st.segmented_control("Effect", ["amplify", "ablate"], default="amplify", key="int_kind")
bars = (v["amplification"] if kinds == "amplify" else s[s.kind == kinds]).sort_values("effect", ascending=False)
kept = set(v["verdict"][v["verdict"].kept].feature)
fig = go.Figure(go.Bar(x=bars.feature_label, y=bars.effect,
                       error_y={"type": "data", "symmetric": False, "array": bars.ci_high - bars.effect,
                                "arrayminus": bars.effect - bars.ci_low},
                       marker_color=["#2f9e44" if f in kept else "#adb5bd" for f in bars.feature]))
fig.update_layout(title=f"{kinds} effect on dev NLL (nats, 95% CI; green = kept)", xaxis_type="category")
st.plotly_chart(fig, key="int_bars")

left, right = st.columns(2)
dose = v["dose"]
if dose.alpha.nunique() > 1:
    left.plotly_chart(px.line(dose, x="alpha", y="effect", color="feature_label", markers=True,
                              title="Dose–response (amplification α)"), key="int_dose")
else:
    left.caption("Dose–response: rerun the job with α ∈ {0.5, 1, 2, 4} to see curves.")
sc = v["scatter"]
right.plotly_chart(px.scatter(sc, x="est_amplify", y="effect", hover_data=["feature"],
                              title="Attribution estimate vs exact effect (α=1)"), key="int_scatter")
feature = st.selectbox("Per-example deltas of feature", bars.feature.tolist(), key="int_feat")
pe = v["per_example"]
st.plotly_chart(px.histogram(pe[(pe.feature == feature) & (pe.kind == kinds)], x="delta", nbins=30,
                             title=f"f{feature}: per-example {kinds} effect"), key="int_hist")
with st.expander("Strong features recall missed (attribution screen)"):
    st.dataframe(v["missed"], hide_index=True, width="stretch")

st.subheader("Try it")
prompt = st.text_area("Prompt", "Summarize this software package description in one short line:\n\n"
                      "GNU Emacs is an extensible, customizable, free text editor and more.", key="try_prompt")
c1, c2, c3 = st.columns(3)
f_try = c1.selectbox("Feature", bars.feature.tolist(), key="try_feat")
kind_try = c2.selectbox("Intervention", ["amplify", "ablate"], key="try_kind")
alpha = c3.slider("α", 0.0, 8.0, 4.0, 0.5, key="try_alpha")
if st.button("Generate", key="try_go"):
    from igds.method.steer import generate_steered

    mean_act = float(v["scatter"].set_index("feature").mean_act.get(f_try, 1.0))
    ws = get_workspace()
    with st.spinner("Generating…"), MODEL_LOCK:
        out = generate_steered(ws.model, ws.tokenizer, ws.sae, ws.site, prompt, int(f_try), kind_try, alpha, mean_act)
    a, b = st.columns(2)
    a.markdown("**Unmodified**")
    a.write(out["base"])
    b.markdown(f"**{kind_try} f{f_try}**")
    b.write(out["steered"])
