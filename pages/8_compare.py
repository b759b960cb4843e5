"""Compare: two selections of the task side by side (stored ones or the live one the Selection page shows): counts,
Jaccard, examples added and removed with why, composition, score and length distributions and the validated
features each one covers. ``?selection=A&compare=B`` (ids, names or ``live``) links here."""

import plotly.express as px
import streamlit as st

from igds.ui.resources import get_resonance_matrix, get_store
from igds.ui.state import bad_link, current_task, link_value
from igds.ui.widgets import html_text, live_selection_settings, md_text, needs, page_link_url, url_write
from igds.workflow.compare import LIVE, compare_selections, load_side, selection_options
from igds.workflow.explore import task_state
from igds.workflow.stages import candidate_features, latest_effects

task = current_task()
store = get_store()
st.title(f"Compare selections · {task}")
state = task_state(store, task)
opts = selection_options(store, task)
keys = ([LIVE] if state.ready_for_selection else []) + list(opts.selection_id)
by_name = dict(zip(opts.name[::-1], opts.selection_id[::-1], strict=True))  # a name in a link: its newest selection
bad = {}  # a link's selection the task does not have is named, never replaced (checked before anything else)
for url_key, state_key in (("selection", "cmp_a"), ("compare", "cmp_b")):
    if st.session_state.get(state_key) not in keys:  # another task's selection, or one removed since
        st.session_state.pop(state_key, None)
    if (value := link_value(url_key, state_key, lambda v: v if v in keys else by_name.get(v))) is not None:
        bad[url_key] = value
if bad:
    bad_link(bad, f"names no selection of task {md_text(task)}: a stored selection's id or name"
             + (f", or `{LIVE}`" if LIVE in keys else " (the live selection needs validated features first)"))
if len(keys) < 2:
    needs("A comparison needs two selections of this task: save one on the Selection page or run a baseline "
          "(the live selection counts once the task has validated features).")
    st.stop()
labels = {LIVE: "live · the Selection page's current settings", **dict(zip(opts.selection_id, opts.label, strict=True))}
igds_ids = list(opts.selection_id[opts.method == "igds"])
st.session_state.setdefault("cmp_a", igds_ids[0] if igds_ids else keys[0])
st.session_state.setdefault("cmp_b", LIVE if LIVE in keys and st.session_state["cmp_a"] != LIVE else
                            next(k for k in keys if k != st.session_state["cmp_a"]))
c1, c2 = st.columns(2)
a_key = c1.selectbox("A (from)", keys, format_func=labels.get, key="cmp_a")
b_key = c2.selectbox("B (to)", keys, format_func=labels.get, key="cmp_b")
url_write("selection", "cmp_a", a_key)
url_write("compare", "cmp_b", b_key)

sel_cfg, res_cfg = live_selection_settings()
matrix = None
if LIVE in (a_key, b_key):
    matrix = get_resonance_matrix(store, str(store.path), state.extract_run, task, sel_cfg.pool,
                                  candidate_features(store, task, latest_effects(store, task), state.sae_key))
with st.spinner("Comparing…"):
    a = load_side(store, task, a_key, sel_cfg, res_cfg, matrix)
    b = load_side(store, task, b_key, sel_cfg, res_cfg, matrix)
    diff = compare_selections(store, task, a, b)

m = st.columns(6)
m[0].metric("|A|", f"{len(a.members):,}")
m[1].metric("|B|", f"{len(b.members):,}")
m[2].metric("Shared", f"{diff.shared:,}")
m[3].metric("Jaccard", f"{diff.jaccard:.2f}")
m[4].metric("Added (in B only)", f"{len(diff.added):,}")
m[5].metric("Removed (in A only)", f"{len(diff.removed):,}")
st.caption(f"A: {md_text(a.label)}, {a.pool_setting} pool · B: {md_text(b.label)}, {b.pool_setting} pool. FRS: "
           + ("; ".join(f"{k} from {v}" for k, v in diff.frs_source.items()) or "none (no validated features)")
           + ". Why = the largest FRS terms w·(a−c)/n of the example.")

left, right = st.columns(2)
comp = diff.composition.assign(source=lambda d: d.source.map(html_text))  # plotly renders tags in its labels
left.plotly_chart(px.bar(comp, x="selection", y="n", color="task", title="Composition by task"), key="cmp_task")
right.plotly_chart(px.bar(comp, x="selection", y="n", color="source", title="Composition by source"),
                   key="cmp_source")
dist = diff.distributions()
left, right = st.columns(2)
left.plotly_chart(px.histogram(dist.dropna(subset=["frs"]), x="frs", color="selection", barmode="overlay",
                               nbins=40, opacity=0.6, title="Feature-resonant score of the members"), key="cmp_frs")
right.plotly_chart(px.histogram(dist, x="n_tokens", color="selection", barmode="overlay", nbins=40, opacity=0.6,
                                title="Content length of the members (tokens)"), key="cmp_len")

cov = diff.coverage
if len(cov):
    st.subheader("Validated features covered")
    st.caption("Share of each selection's members (and of the pool) the feature fires on; ★ = in F* now.")
    long = cov.melt(id_vars="feature", value_vars=["share_a", "share_b", "share_pool"], var_name="of",
                    value_name="share")
    st.plotly_chart(px.bar(long.assign(feature="f" + long.feature.astype(str)), x="feature", y="share", color="of",
                           barmode="group", title="Members the feature fires on"), key="cmp_cov")
    st.dataframe(cov.assign(fstar=cov.fstar.map({True: "★", False: ""})), hide_index=True, width="stretch",
                 key="cmp_cov_table", column_config={c: st.column_config.NumberColumn(format="%.2f")
                                                     for c in ("share_a", "share_b", "share_pool", "difference")})

cols = ["example_id", "task", "source", "n_tokens", "frs", "rank_a", "rank_b", "why", "lens"]
config = {"frs": st.column_config.NumberColumn(format="%.3f"),
          "lens": st.column_config.LinkColumn(display_text="text lens")}
tab_add, tab_rm = st.tabs([f"Added · in B only ({len(diff.added)})", f"Removed · in A only ({len(diff.removed)})"])
for tab, frame, key in ((tab_add, diff.added, "cmp_added"), (tab_rm, diff.removed, "cmp_removed")):
    with tab:
        frame = frame.assign(lens=[page_link_url("lens", task=task, example=e) for e in frame.example_id])
        st.dataframe(frame[cols], hide_index=True, width="stretch", key=key, column_config=config)
