"""Selection: live re-ranking of the pool by feature-resonant score, "why selected", vetting."""

import math

import plotly.express as px
import streamlit as st

from igds.config import field_help
from igds.data.corpus import POOL_SETTINGS
from igds.method.resonance import AGGREGATIONS, DIRECTIONS, SCALES, WEIGHTS, ResonanceConfig, length_confound
from igds.method.selection import SelectionConfig, set_example_override
from igds.ui.resources import get_resonance_matrix, get_store
from igds.ui.state import current_task
from igds.ui.widgets import needs, show_token_highlights
from igds.workflow.explore import example_record, selection_overlaps, task_state
from igds.workflow.stages import candidate_features, latest_effects, live_selection, select_igds

task = current_task()
store = get_store()
st.title(f"Selection · {task}")
state = task_state(store, task)
if not state.ready_for_selection:
    needs(f"No validated features: {latest_effects(store, task).why_none_kept()}. Pin a feature on the Interventions "
          "page or rerun interventions with a looser filter." if state.n_measured else
          "No validated features yet: run recall (Features) and interventions (Interventions) first.")
    st.stop()
effects = latest_effects(store, task)

with st.sidebar:
    st.subheader("Resonance")
    mode = st.radio("Select by", ["ratio", "threshold", "token budget"], key="sel_mode", horizontal=True)
    ratio = st.slider("Share of the pool ρ", 0.05, 1.0, 0.5, 0.05, key="sel_ratio")
    direction = st.radio("Direction", DIRECTIONS, key="sel_direction", horizontal=True,
                         help=field_help(ResonanceConfig, "direction"))
    agg = st.selectbox("Token aggregation", AGGREGATIONS, key="sel_agg",
                       help=field_help(ResonanceConfig, "aggregation"))
    scale = st.selectbox("Per-feature scale", SCALES, key="sel_scale", help=field_help(ResonanceConfig, "scale"))
    weights = st.selectbox("Feature weights", WEIGHTS, key="sel_weights", help=field_help(ResonanceConfig, "weights"))
    pool_setting = st.selectbox("Pool", list(reversed(POOL_SETTINGS)), key="sel_pool")
    pool_limit = st.number_input("Pool limit (examples per task; 0: all)", min_value=0, value=0, step=50,
                                 key="sel_pool_limit", help=field_help(SelectionConfig, "pool_limit"))
res_cfg = ResonanceConfig(aggregation=agg, scale=scale, weights=weights, direction=direction)
threshold = st.number_input("FRS threshold τ", value=1.0, step=0.1, key="sel_tau",
                            help="resonant keeps FRS ≥ τ, hard keeps FRS ≤ τ") if mode == "threshold" else None
budget = st.number_input("Token budget", value=100_000, step=10_000, key="sel_budget") \
    if mode == "token budget" else None
sel_cfg = SelectionConfig(ratio=ratio, threshold=threshold, token_budget=int(budget) if budget else None,
                          pool_setting=pool_setting, pool_limit=int(pool_limit))
# every candidate and pinned feature is a column of the matrix: vetoes and pins re-rank without a query
matrix = get_resonance_matrix(store, str(store.path), state.extract_run, task, pool_setting, int(pool_limit),
                              candidate_features(store, task, effects, state.sae_key))
sp, chosen = live_selection(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, matrix)
scores = sp.scores.assign(selected=sp.scores.example_id.isin(set(chosen.example_id)))
conf = length_confound(sp.scores, chosen.example_id)

c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Selected", f"{len(chosen):,} / {len(scores):,}")
c2.metric("Spearman(FRS, content length)", "–" if math.isnan(conf.spearman) else f"{conf.spearman:+.2f}")
c3.metric("Task share of selection", f"{(chosen.task == task).mean():.1%}" if len(chosen) else "–")
c4.metric("Validated features used", len(sp.features))
c5.metric("Pinned / rejected", f"{len(sp.overrides.pinned_examples)} / {len(sp.overrides.rejected_examples)}")
st.caption("Spearman(FRS, content length) over the pool, content = the example's own tokens (no template or "
           "instruction): far from 0, the score partly ranks by length (sum favours long examples). Mean content "
           f"length: selection {conf.mean_tokens_selected:,.1f} vs. pool {conf.mean_tokens_pool:,.1f} tokens.")

left, right = st.columns(2)
hist = px.histogram(scores, x="frs", color="task", nbins=60, barmode="stack", title="Feature-resonant score")
cut = (chosen.score.min() if res_cfg.higher_first else chosen.score.max()) if len(chosen) else None
if cut is not None:
    hist.add_vline(x=cut, line_dash="dash", annotation_text="cut")
left.plotly_chart(hist, key="sel_hist")
comp = chosen.groupby(["task", "source"]).size().reset_index(name="n")
right.plotly_chart(px.bar(comp, x="source", y="n", color="task", title="Composition of the selection"),
                   key="sel_comp")
overlaps = selection_overlaps(store, task, set(chosen.example_id), pool_setting)
if not overlaps.empty:
    st.dataframe(overlaps, hide_index=True, width="stretch")
if st.button("Save this selection", key="sel_save", type="primary"):
    sid = select_igds(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, matrix=matrix)
    st.success(f"Saved selection {sid} (export and fine-tune it on the next page).")

st.subheader("Examples")
view = st.selectbox("Show", ["selected", "rejected by the cut", "all"], key="sel_view")
table = scores if view == "all" else scores[scores.selected == (view == "selected")]
table = table.assign(override=table.example_id.map(
    lambda i: "pinned" if i in sp.overrides.pinned_examples else ""))
event = st.dataframe(table[["example_id", "frs", "task", "source", "n_tokens", "selected", "override"]].head(500),
                     hide_index=True, width="stretch", key="sel_table", on_select="rerun",
                     selection_mode="multi-row")
rows = event.selection.rows if event else []
picked = list(table.example_id.iloc[rows]) if rows else []
b1, b2, b3 = st.columns(3)
for col, label, action in ((b1, "Pin (always in)", "pin"), (b2, "Reject (always out)", "reject"),
                           (b3, "Clear decision", None)):
    if col.button(f"{label} · {len(picked)} selected", key=f"sel_{action or 'clear'}", disabled=not picked):
        set_example_override(store, task, picked, action)
        st.rerun()
if picked:
    eid = picked[0]
    ex = sp.explain(eid, res_cfg)
    total = ex.term.sum()
    ex = ex[ex.term != 0].assign(feature=lambda d: "f" + d.feature.astype(str))
    st.plotly_chart(px.bar(ex, x="feature", y="term", title=f"Why {eid}: FRS terms w·(a−c)/n (sum = FRS = "
                           f"{total:.3f})"), key="sel_why")
    row = example_record(store, eid)
    st.markdown(f"**Prompt**\n\n{row['prompt']}\n\n**Response**\n\n{row['response']}")
    if len(ex) and st.toggle("Token highlights of the top features (runs the model)", key="sel_tokens"):
        show_token_highlights(row, [int(f[1:]) for f in ex.feature.head(3)], run_id=state.extract_run)
