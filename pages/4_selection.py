"""Selection: live re-ranking of the pool by feature-resonant score, "why selected", vetting."""

import math

import streamlit as st

from igds.config import field_help
from igds.data.corpus import POOL_SETTINGS
from igds.method.resonance import AGGREGATIONS, DIRECTIONS, SCALES, WEIGHTS, ResonanceConfig, length_confound
from igds.method.selection import SelectionConfig
from igds.ui import ways_on
from igds.ui.jobs import needs_or_waiting
from igds.ui.resources import get_resonance_matrix, get_store, pool_ready
from igds.ui.state import current_task
from igds.ui.vetting import examples_table, selection_charts, selection_inputs, vetting_queue, vetting_state
from igds.ui.widgets import md_text
from igds.workflow.explore import (
    default_pool,
    measuring_message,
    saved_name,
    selection_name,
    selection_overlaps,
)
from igds.workflow.stages import live_selection, select_igds
from igds.workflow.vetting import save_vetted_selection

task = current_task()
store = get_store()
st.title(f"Selection · {task}")
state, effects, candidates = selection_inputs(store, task)  # cached until the store's runs or overrides change
if not state.ready_for_selection:  # no feature to score with: why, and the ways on (a baseline needs none)
    ways_on.selection_ways(store, task, state, effects)
    st.stop()
if state.measuring:
    st.caption(f"{measuring_message(state)} This selection uses what is measured so far.")
elif not state.n_kept:
    with st.expander(f"F\\* is empty: the selection scores with your {len(state.pinned)} pinned feature(s). Why, and "
                     "the other ways on"):
        ways_on.fstar_notice(store, task, state, effects, page="selection")

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
    pools = list(reversed(POOL_SETTINGS))
    default = default_pool(store, task, state.extract_run, pool_ready)
    pool_setting = st.selectbox("Pool", pools, index=pools.index(default), key="sel_pool")
    pool_limit = st.number_input("Pool limit (examples per task; 0: all)", min_value=0, value=0, step=50,
                                 key="sel_pool_limit", help=field_help(SelectionConfig, "pool_limit"))
if not pool_ready(store, state.extract_run, task, pool_setting):  # a first run extracts the mixed pool last
    needs_or_waiting(f"The {pool_setting} pool of {task} is not extracted yet: extract the task with it, or pick the "
                     "task-only pool.", ("bootstrap", "extract"), task, f"the {pool_setting} pool")
    st.stop()
res_cfg = ResonanceConfig(aggregation=agg, scale=scale, weights=weights, direction=direction)
threshold = st.number_input("FRS threshold τ", value=1.0, step=0.1, key="sel_tau",
                            help="resonant keeps FRS ≥ τ, hard keeps FRS ≤ τ") if mode == "threshold" else None
budget = st.number_input("Token budget", value=100_000, step=10_000, key="sel_budget") \
    if mode == "token budget" else None
sel_cfg = SelectionConfig(ratio=ratio, threshold=threshold, token_budget=int(budget) if budget else None,
                          pool_setting=pool_setting, pool_limit=int(pool_limit))
# every candidate and pinned feature is a column of the matrix: vetoes and pins re-rank without a query
matrix = get_resonance_matrix(store, str(store.path), state.extract_run, task, sel_cfg.pool, candidates)
sp, base = live_selection(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, matrix)
vet = vetting_state(store, task, state.extract_run, sel_cfg, res_cfg, sp, base)  # the session's decisions re-rank
chosen = vet.chosen
scores = sp.scores.assign(selected=sp.scores.example_id.isin(set(chosen.example_id)))
conf = length_confound(sp.scores, chosen.example_id)

c1, c2, c3, c4 = st.columns([2, 1.4, 1, 1.2])  # the count gets the room "12,345 / 67,890" needs
hand = (len(sp.overrides.pinned_examples), len(sp.overrides.rejected_examples))
c1.metric("Selected", f"{len(chosen):,} / {len(scores):,}", "{} pinned · {} rejected by hand".format(*hand)
          if any(hand) else None, "off", delta_arrow="off")
c2.metric("Spearman(FRS, content length)", "–" if math.isnan(conf.spearman) else f"{conf.spearman:+.2f}")
c3.metric("Task share of selection", f"{(chosen.task == task).mean():.1%}" if len(chosen) else "–")
n_pins = len(sp.overrides.pinned_features & set(sp.features))
c4.metric("Validated features used", len(sp.features), f"{n_pins} pinned" if n_pins else None, "off",
          help="F* less vetoed features, plus pinned ones", delta_arrow="off")
if vet.active:
    st.caption(f"Vetting session `{vet.session_id}`: {len(vet.decisions)} decisions applied to the selection shown "
               "(accepted in, rejected out); saving stores them with it.")
st.caption("Spearman(FRS, content length) over the pool, content = the example's own tokens (no template or "
           "instruction): far from 0, the score partly ranks by length (sum favours long examples). Mean content "
           f"length: selection {conf.mean_tokens_selected:,.1f} vs. pool {conf.mean_tokens_pool:,.1f} tokens.")

charts, overlap_box = st.columns(2), st.container()  # filled after the queue: a key press shows the next example first
n1, n2 = st.columns([3, 1], vertical_alignment="bottom")
with n1:
    name = ways_on.name_field("Selection name", selection_name(task, sel_cfg, res_cfg, vet.active), key="sel_name")
if n2.button("Save this selection", key="sel_save", type="primary"):
    if problem := ways_on.name_taken(store, name):
        st.error(md_text(problem))
    else:
        sid = save_vetted_selection(store, state.extract_run, task, effects, sel_cfg, res_cfg, vet.session_id,
                                    state.sae_key, matrix, name=name) if vet.active else \
            select_igds(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, name=name,
                        matrix=matrix)
        st.success(f"Saved selection {md_text(saved_name(store, sid))} (`{sid}`): export and fine-tune it on the "
                   "next page.")

vetting_queue(store, sp, vet, res_cfg, matrix)
examples_table(store, task, scores, sp, res_cfg, state.extract_run)
selection_charts(charts, scores, chosen, res_cfg, (task, state.extract_run, res_cfg.to_json(), pool_setting,
                                                   int(pool_limit), tuple(sp.features), hash(sp.overrides)))
overlaps = selection_overlaps(store, task, set(chosen.example_id), pool_setting)
if not overlaps.empty:
    overlap_box.dataframe(overlaps, hide_index=True, width="stretch")
