"""Selection: live re-ranking of the pool by feature-resonant score, "why selected", vetting."""

import math

import streamlit as st

from igds.config import field_help
from igds.data.corpus import POOL_SETTINGS
from igds.method.resonance import AGGREGATIONS, DIRECTIONS, SCALES, WEIGHTS, ResonanceConfig, length_confound
from igds.method.selection import SelectionConfig
from igds.ui.resources import get_resonance_matrix, get_store
from igds.ui.state import current_task
from igds.ui.vetting import examples_table, selection_charts, selection_inputs, vetting_queue, vetting_state
from igds.ui.widgets import needs
from igds.workflow.explore import selection_overlaps
from igds.workflow.stages import live_selection, select_igds
from igds.workflow.vetting import save_vetted_selection

task = current_task()
store = get_store()
st.title(f"Selection · {task}")
state, effects, candidates = selection_inputs(store, task)  # cached until the store's runs or overrides change
if not state.ready_for_selection:
    needs(f"No validated features: {effects.why_none_kept()}. Pin a feature on the Interventions "
          "page or rerun interventions with a looser filter." if state.n_measured else
          "No validated features yet: run recall (Features) and interventions (Interventions) first.")
    st.stop()

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
                              candidates)
sp, base = live_selection(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, matrix)
vet = vetting_state(store, task, state.extract_run, sel_cfg, res_cfg, sp, base)  # the session's decisions re-rank
chosen = vet.chosen
scores = sp.scores.assign(selected=sp.scores.example_id.isin(set(chosen.example_id)))
conf = length_confound(sp.scores, chosen.example_id)

c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Selected", f"{len(chosen):,} / {len(scores):,}")
c2.metric("Spearman(FRS, content length)", "–" if math.isnan(conf.spearman) else f"{conf.spearman:+.2f}")
c3.metric("Task share of selection", f"{(chosen.task == task).mean():.1%}" if len(chosen) else "–")
c4.metric("Validated features used", len(sp.features))
c5.metric("Pinned / rejected", f"{len(sp.overrides.pinned_examples)} / {len(sp.overrides.rejected_examples)}")
if vet.active:
    st.caption(f"Vetting session `{vet.session_id}`: {len(vet.decisions)} decisions applied to the selection shown "
               "(accepted in, rejected out); saving stores them with it.")
st.caption("Spearman(FRS, content length) over the pool, content = the example's own tokens (no template or "
           "instruction): far from 0, the score partly ranks by length (sum favours long examples). Mean content "
           f"length: selection {conf.mean_tokens_selected:,.1f} vs. pool {conf.mean_tokens_pool:,.1f} tokens.")

charts, overlap_box = st.columns(2), st.container()  # filled after the queue: a key press shows the next example first
if st.button("Save this selection", key="sel_save", type="primary"):
    sid = save_vetted_selection(store, state.extract_run, task, effects, sel_cfg, res_cfg, vet.session_id,
                                state.sae_key, matrix) if vet.active else \
        select_igds(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, matrix=matrix)
    st.success(f"Saved selection {sid} (export and fine-tune it on the next page).")

vetting_queue(store, sp, vet, res_cfg, matrix)
examples_table(store, task, scores, sp, res_cfg, state.extract_run)
selection_charts(charts, scores, chosen, res_cfg, (task, state.extract_run, res_cfg.to_json(), pool_setting,
                                                   int(pool_limit), tuple(sp.features), hash(sp.overrides)))
overlaps = selection_overlaps(store, task, set(chosen.example_id), pool_setting)
if not overlaps.empty:
    overlap_box.dataframe(overlaps, hide_index=True, width="stretch")
