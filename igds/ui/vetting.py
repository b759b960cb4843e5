"""The Selection page's vetting queue: one example at a time, decided with keys.

The page computes the live selection, then :func:`vetting_state` puts the browser session's vetting session on top
of it (accepted examples in, rejected ones out: :func:`igds.method.vetting.apply_decisions`) before anything is
drawn, so the counts, charts and table show the re-ranked selection; :func:`vetting_queue` draws the queue.

A vetting session applies only in the browser session that started it (*Start a vetting session*, or the first
decision) or resumed it by name (*Resume session X (n decisions, by user, when)*); a new browser session has none,
so a selection it saves carries no decisions until it resumes one. *Discard* takes a session's decisions back;
*Apply to task overrides* lists the decisions it will apply and asks to confirm. Decisions are
button callbacks, stored before the rerun starts; a small script in the page maps keys to those buttons. A key
press reruns the page without the model or a heavy query: the task's state is cached per store fingerprint, the
resonance matrix per pool, the queue per settings, the histogram per ranking, records and highlights (stored
rows) a window at a time; the charts are drawn after the queue, so the next example shows first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from igds import settings
from igds.method.vetting import (
    DECISIONS,
    QUEUE_MODES,
    VetFilter,
    apply_decisions,
    apply_to_overrides,
    bulk_decide,
    decide,
    describe_session,
    discard_session,
    open_session,
    pool_sessions,
    queue_order,
    undo,
    vetting_counts,
)
from igds.scope import PoolSpec
from igds.store.vetting import DECISION_COLUMNS
from igds.ui.widgets import example_text, html_text, md_text, token_highlights
from igds.workflow.config import DEFAULT_MAX_ROWS, HIGHLIGHTS_MEASURED
from igds.workflow.explore import example_record

KEYS = {"a": "vet_accept", "r": "vet_reject", "s": "vet_skip", "u": "vet_undo", "n": "vet_next",
        "ArrowRight": "vet_next", "p": "vet_prev", "ArrowLeft": "vet_prev"}
"""Key → the button (its ``key``) the key clicks."""
SESSIONS, QUEUE, POS, MESSAGE = "vet.sessions", "vet.queue", "vet.pos", "vet.message"
CONFIRM, INFO = "vet.confirm", "vet.session_info"  # an action waiting for confirmation; the active session's row
N_NEIGHBOURS = 3
PREFETCH = 10  # queue examples read per query

# Runs in the page itself (st.html with JavaScript: no component frame, so the listener lives as long as the tab),
# once per browser tab: a key clicks the button whose container has the class st-key-<button key>. It listens on
# the window in the capture phase and stops the keys it handles, so Streamlit's own "r" (rerun) never sees them;
# keys typed into a field are left alone (Esc leaves the field).
_KEY_SCRIPT = """<script>(function () {
  if (window.__igdsVetKeys) return;
  window.__igdsVetKeys = true;
  const keys = KEYS_JSON;
  window.addEventListener('keydown', function (e) {
    const t = e.target;
    const typing = t && t.closest && t.closest('input, textarea, select, [contenteditable="true"], ' +
      '[contenteditable=""], [role="slider"], [role="combobox"], [role="listbox"], [role="spinbutton"]');
    if (typing) { if (e.key === 'Escape' && t.blur) t.blur(); return; }
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const name = keys[e.key.length === 1 ? e.key.toLowerCase() : e.key];
    if (!name) return;
    const b = document.querySelector('.st-key-' + name + ' button');
    if (!b || b.disabled) return;
    e.preventDefault();
    e.stopImmediatePropagation();
    b.click();
  }, true);
})();</script>""".replace("KEYS_JSON", json.dumps(KEYS))


@dataclass(frozen=True)
class VetState:
    """The user's vetting session on the live selection's pool and the selection it makes."""

    context: dict               # task, extract_run, pool_setting, pool_limit, user, settings
    session_id: str | None
    decisions: pd.DataFrame     # in force: example_id, decision, note, user_name, decided, seq
    base: pd.DataFrame          # the live selection without the session's decisions
    chosen: pd.DataFrame        # with them

    @property
    def active(self) -> bool:
        """Whether the session has decisions in force (then the page saves the vetted selection)."""
        return self.session_id is not None and len(self.decisions) > 0


def selection_inputs(store, task: str):
    """``(task_state, effects or None, candidate features)`` of a task, cached in the browser session until the
    store's runs, the task's feature overrides or its stored selections change (one query per rerun instead of
    a dozen)."""
    from igds.workflow.explore import task_state
    from igds.workflow.stages import candidate_features, latest_effects

    fp = (task, str(store.path), store.vetting_fingerprint(task))
    cached = st.session_state.get("vet.inputs")
    if cached and cached[0] == fp:
        return cached[1]
    state = task_state(store, task)
    effects = latest_effects(store, task) if state.n_measured else None
    feats = candidate_features(store, task, effects, state.sae_key) if state.ready_for_selection else ()
    st.session_state["vet.inputs"] = (fp, (state, effects, feats))
    return state, effects, feats


def _pool_key(ctx: dict) -> tuple:
    return ctx["task"], ctx["extract_run"], ctx["pool_setting"], ctx["pool_limit"]


def _start(store, ctx: dict) -> str:
    """Start a session on the pool and make it this browser session's."""
    sid = open_session(store, ctx["task"], user=ctx["user"], extract_run=ctx["extract_run"],
                       pool_setting=ctx["pool_setting"], pool_limit=ctx["pool_limit"], settings_dict=ctx["settings"])
    st.session_state.setdefault(SESSIONS, {})[_pool_key(ctx)] = sid
    st.session_state[MESSAGE] = f"Started vetting session {sid}."
    return sid


def _session(store, ctx: dict, create: bool = False) -> str | None:
    """The session this browser session started or resumed on this pool, never one the store would pick; with
    ``create`` and none, a new one (the first decision starts it)."""
    sid = st.session_state.get(SESSIONS, {}).get(_pool_key(ctx))
    return _start(store, ctx) if sid is None and create else sid


def vetting_state(store, task: str, extract_run: str, sel_cfg, res_cfg, sp, base: pd.DataFrame) -> VetState:
    """The browser session's vetting session on this pool (if it started or resumed one) applied to the live
    selection (call before drawing the selection)."""
    st.session_state.setdefault("vet_user", settings.user_name() or "")
    ctx = {"task": task, "extract_run": extract_run, "pool_setting": sel_cfg.pool_setting,
           "pool_limit": int(sel_cfg.pool_limit), "user": st.session_state["vet_user"].strip() or None,
           "settings": {"selection": sel_cfg.to_dict(), "resonance": res_cfg.to_dict()}}
    sid = _session(store, ctx)
    decisions = store.session_decisions(sid) if sid else pd.DataFrame(columns=DECISION_COLUMNS)
    chosen = apply_decisions(sp.scores, sel_cfg, sp.overrides, decisions, res_cfg.higher_first) \
        if len(decisions) else base
    return VetState(ctx, sid, decisions, base, chosen)


# -- callbacks (they run before the rerun, so the whole page shows their effect) ------------------------------
def _move(step: int | None = None, to: int | None = None) -> None:
    n = len(st.session_state.get(QUEUE, {}).get("ids", ()))
    pos = to if to is not None else st.session_state.get(POS, 0) + (step or 0)
    st.session_state[POS] = max(0, min(pos, max(n - 1, 0)))


def _on_decide(store, ctx: dict, example_id: str, decision: str) -> None:
    note = (st.session_state.get("vet_note") or "").strip() or None
    decide(store, _session(store, ctx, create=True), [example_id], decision, note, ctx["user"])
    st.session_state["vet_note"] = ""
    _move(+1)


def _on_undo(store, ctx: dict) -> None:
    sid = _session(store, ctx)
    ids = undo(store, sid) if sid else []
    queue = st.session_state.get(QUEUE, {}).get("ids", [])
    if len(ids) == 1 and ids[0] in queue:
        _move(to=queue.index(ids[0]))  # back to the example to decide it again
    st.session_state[MESSAGE] = f"Undid the decision on {len(ids)} example(s)." if ids else "Nothing to undo."


def _on_bulk(store, ctx: dict, scores, flt: VetFilter, matrix, overrides) -> None:
    decision = st.session_state.get("vet_bulk_decision", "reject")
    ids = bulk_decide(store, _session(store, ctx, create=True), scores, flt, decision, matrix=matrix,
                      overrides=overrides, user=ctx["user"])
    done = {"accept": "Accepted", "reject": "Rejected", "skip": "Skipped"}[decision]
    started = st.session_state.pop(MESSAGE, "")
    st.session_state[MESSAGE] = (f"{started} {done} {len(ids)} examples matching {flt.describe()} (one undo takes "
                                 "it back).").strip()


def _on_start(store, ctx: dict) -> None:
    _start(store, ctx)
    st.session_state[POS] = 0
    st.session_state.pop(CONFIRM, None)


def _on_resume(store, ctx: dict, session_id: str) -> None:
    st.session_state.setdefault(SESSIONS, {})[_pool_key(ctx)] = session_id
    st.session_state.pop(CONFIRM, None)
    st.session_state[MESSAGE] = f"Resumed vetting session {session_id}: its decisions apply to the selection shown."


def _on_close(ctx: dict) -> None:
    sid = st.session_state.get(SESSIONS, {}).pop(_pool_key(ctx), None)
    st.session_state.pop(CONFIRM, None)
    st.session_state[MESSAGE] = (f"Closed vetting session {sid}: it is kept (resume it below); a selection saved now "
                                 "carries no decisions.")


def _on_ask(store, action: str, session_id: str) -> None:
    """Hold an action until its decisions are listed and confirmed (as of the session's current action)."""
    st.session_state[CONFIRM] = {"action": action, "session_id": session_id, "seq": store.vetting_seq(session_id)}


def _on_confirm(store, ctx: dict) -> None:
    pending = st.session_state.pop(CONFIRM, None)
    if not pending:
        return
    sid = pending["session_id"]
    if pending["action"] == "apply":
        n = apply_to_overrides(store, ctx["task"], sid, as_of=pending["seq"])
        st.session_state[MESSAGE] = (f"Task overrides from session {sid}: {n['pinned']} examples pinned, "
                                     f"{n['rejected']} rejected; every later selection, baseline and grid cell of "
                                     "the task follows them.")
        return
    n = discard_session(store, sid)
    if st.session_state.get(SESSIONS, {}).get(_pool_key(ctx)) == sid:
        st.session_state[SESSIONS].pop(_pool_key(ctx))
    st.session_state[MESSAGE] = (f"Discarded vetting session {sid}: its {n} decisions no longer apply (the log keeps "
                                 "them for selections saved from it).")


# -- drawing -------------------------------------------------------------------------------------------------
def _filter_controls(scores, matrix) -> VetFilter:
    c1, c2, c3, c4, c5, c6 = st.columns([3, 1, 1, 1, 1, 2])
    sources = c1.multiselect("Sources", sorted(scores.source.unique()), key="vet_f_sources")
    lo_t = c2.number_input("Min length", min_value=0, value=None, step=10, key="vet_f_min_len")
    hi_t = c3.number_input("Max length", min_value=0, value=None, step=10, key="vet_f_max_len")
    lo_s = c4.number_input("Min FRS", value=None, step=0.05, format="%.3f", key="vet_f_min_frs")
    hi_s = c5.number_input("Max FRS", value=None, step=0.05, format="%.3f", key="vet_f_max_frs")
    feat = c6.selectbox("Feature fires", [None, *matrix.features], key="vet_f_feature",
                        format_func=lambda f: "any" if f is None else f"f{f}")
    return VetFilter(sources=tuple(sources), min_tokens=lo_t, max_tokens=hi_t, min_score=lo_s, max_score=hi_s,
                     feature=feat)


def _queue(sp, vet: VetState, mode: str, flt: VetFilter, matrix) -> list[str]:
    """The queue, computed once per settings (on the selection before the session's decisions, so it stays put
    while they re-rank the selection)."""
    key = (vet.context["task"], vet.context["extract_run"], json.dumps(vet.context["settings"], sort_keys=True),
           tuple(sp.features), hash(sp.overrides), mode, flt.to_json() if mode == "filter" else "")
    cached = st.session_state.get(QUEUE)
    if cached is None or cached["key"] != key:
        ids = queue_order(sp.scores, vet.base.example_id, mode, flt=flt, matrix=matrix, overrides=sp.overrides)
        st.session_state[QUEUE] = cached = {"key": key, "ids": ids}
        st.session_state[POS] = 0
    return cached["ids"]


def _example(store, ctx: dict, queue: list[str], pos: int) -> dict:
    """The record and stored highlights of ``queue[pos]``, read with the next few in one query and kept for the
    browser session (records and highlights do not change), so most key presses read nothing here."""
    cache = st.session_state.setdefault("vet.examples", {})
    key = (str(store.path), ctx["extract_run"], ctx["task"])
    if (key, queue[pos]) not in cache:
        window = [e for e in queue[max(0, pos - 2): pos + PREFETCH] if (key, e) not in cache]
        if len(cache) > 2000:
            cache.clear()
        cache.update({(key, e): v for e, v in store.queue_examples(ctx["extract_run"], ctx["task"], window).items()})
    return cache.get((key, queue[pos])) or {"prompt": "(not stored)", "response": "", "highlights": None}


def _why(ex: pd.DataFrame) -> None:
    """FRS terms as bars (light HTML: no chart to redraw on every key)."""
    total = float(ex.term.sum())
    top = max([abs(t) for t in ex.term], default=0.0) or 1.0
    rows = [f"<b>Why: FRS = Σ w·(a−c)/n = {total:+.3f}</b>"]
    for r in ex.itertuples():
        width, colour = 100 * abs(r.term) / top, "#2f9e44" if r.term >= 0 else "#e03131"
        rows.append(f'<div style="display:flex;align-items:center;gap:6px;font-size:0.85em">'
                    f'<span style="width:60px">f{int(r.feature)}</span><span style="width:70px">{r.term:+.3f}</span>'
                    f'<span style="background:{colour};height:10px;width:{width:.0f}px"></span>'
                    f'<span style="color:#888">a = {r.a:.3f}</span></div>')
    st.markdown("".join(rows), unsafe_allow_html=True)


def _highlights(stored: dict | None, features: list[int]) -> None:
    if stored is None:
        st.caption("No stored highlights for this example (the pool's highlights job has not reached it).")
        return
    fired = {f: max(v[1]) for f, v in stored["acts"].items()}
    shown = [f for f in features if f in fired][:3]
    shown += sorted((f for f in fired if f not in shown), key=lambda f: -fired[f])[: 3 - len(shown)]
    if not shown:
        st.caption("None of the task's candidate features fires on this example.")
    n = len(stored["tokens"])
    for f in shown:
        values = [0.0] * n
        for p, a in zip(*stored["acts"][f], strict=True):
            values[p] = a if stored["in_scope"][p] else 0.0
        st.caption(f"f{f}{' (F*)' if f in features else ' (candidate)'} · max {fired[f]:.2f} · only the tokens "
                   "the run counts are shaded")
        token_highlights(stored["tokens"], values)


def _neighbours(sp, vet: VetState, idx: int) -> None:
    """The examples just above and below in the ranking, with their place in the session's selection."""
    chosen = set(vet.chosen.example_id)
    dec = dict(zip(vet.decisions.example_id, vet.decisions.decision, strict=True))
    lo, hi = max(0, idx - N_NEIGHBOURS), min(len(sp.scores), idx + N_NEIGHBOURS + 1)
    rows = []
    for i, r in enumerate(sp.scores.iloc[lo:hi].itertuples(), start=lo):
        style = ' style="font-weight:bold; background:#fff3bf"' if i == idx else ""
        rows.append(f"<tr{style}><td>{i + 1}</td><td><code>{html_text(r.example_id)}</code></td>"
                    f"<td>{r.frs:+.3f}</td><td>{'in' if r.example_id in chosen else 'out'}</td>"
                    f"<td>{html_text(dec.get(r.example_id, ''))}</td></tr>")
    st.markdown('<div style="font-size:0.8em"><b>Neighbours in score</b><table style="width:100%">'
                "<tr><th>rank</th><th>example</th><th>FRS</th><th>selection</th><th>decision</th></tr>"
                + "".join(rows) + "</table></div>", unsafe_allow_html=True)


def _session_info(store, session_id: str) -> dict:
    """The session's stored row, read once per browser session (it does not change)."""
    cached = st.session_state.get(INFO)
    if not cached or cached[0] != session_id:
        st.session_state[INFO] = cached = (session_id, store.vetting_session(session_id) or {})
    return cached[1]


def _user_md(user) -> str | None:
    """A user name for a Markdown label: escaped (it is user text), None kept."""
    return md_text(user) if isinstance(user, str) and user else None


def session_panel(store, vet: VetState) -> None:
    """Start, resume, close or discard this browser session's vetting session, or apply it as task overrides
    (both listed and confirmed first)."""
    ctx = vet.context
    if vet.session_id is None:
        c1, c2 = st.columns([1, 3])
        c1.button("Start a vetting session", key="vet_start", on_click=_on_start, args=(store, ctx), type="primary")
        c2.caption("No vetting session is open in this browser session: the selection shown, and one saved now, "
                   "carry no decisions. Start one (the first decision starts one too) or resume one below.")
        for r in pool_sessions(store, ctx["task"], extract_run=ctx["extract_run"], pool_setting=ctx["pool_setting"],
                               pool_limit=ctx["pool_limit"]).itertuples():
            a, b = st.columns([5, 1])
            a.button(f"Resume {describe_session(r.session_id, r.n_decisions, _user_md(r.user_name), r.last_decided)}",
                     key=f"vet_resume_{r.session_id}", on_click=_on_resume, args=(store, ctx, r.session_id),
                     width="stretch")
            b.button("Discard", key=f"vet_discard_{r.session_id}", on_click=_on_ask,
                     args=(store, "discard", r.session_id), width="stretch")
    else:
        info = _session_info(store, vet.session_id)
        c1, c2, c3, c4 = st.columns([4, 1, 1, 2])
        name = describe_session(vet.session_id, len(vet.decisions), _user_md(info.get("user_name")),
                                info.get("created"))
        c1.markdown(f"**Open:** {name}")
        c2.button("Close", key="vet_close", on_click=_on_close, args=(ctx,), width="stretch",
                  help="leave the session (it is kept: resume it later); a selection saved then carries no decisions")
        c3.button("Discard", key="vet_discard", disabled=vet.decisions.empty, on_click=_on_ask,
                  args=(store, "discard", vet.session_id), width="stretch", help="take back all its decisions")
        c4.button("Apply to task overrides…", key="vet_apply", disabled=not vet.active, on_click=_on_ask,
                  args=(store, "apply", vet.session_id), width="stretch",
                  help="lists the decisions first: accepted → pinned, rejected → rejected for the whole task")
    _confirm_box(store, ctx)


def _confirm_box(store, ctx: dict) -> None:
    """The decisions an action waiting for confirmation takes (as of when it was asked), with Confirm / Cancel."""
    pending = st.session_state.get(CONFIRM)
    if not pending:
        return
    sid = pending["session_id"]
    d = store.session_decisions(sid, pending["seq"])
    n = {k: int((d.decision == k).sum()) for k in DECISIONS}
    if pending["action"] == "apply":
        st.warning(f"Apply session `{sid}` to the task's overrides? {n['accept']} accepted examples become pinned "
                   f"and {n['reject']} rejected ones rejected for every later selection, baseline and grid cell of "
                   f"the task ({n['skip']} skips change nothing). The decisions:")
        label = f"Confirm: pin {n['accept']}, reject {n['reject']}"
    else:
        st.warning(f"Discard session `{sid}`? Its {len(d)} decisions stop applying and it is no longer offered to "
                   "resume (the log keeps them for selections saved from it). The decisions:")
        label = f"Confirm: discard {len(d)} decisions"
    st.dataframe(d[["example_id", "decision", "note", "user_name", "decided"]], hide_index=True, width="stretch",
                 key="vet_confirm_table")
    a, b = st.columns(2)
    a.button(label, key="vet_confirm", on_click=_on_confirm, args=(store, ctx), type="primary")
    b.button("Cancel", key="vet_cancel", on_click=_on_cancel)


def _on_cancel() -> None:
    st.session_state.pop(CONFIRM, None)


def highlight_status(store, task: str, run_id: str, pool: PoolSpec, pool_ids) -> None:
    """The pool's stored highlights in one line, or the job that stores them when there are none."""
    from igds.ui.jobs import job_launcher

    key = ("vet.hl_rows", str(store.path), run_id, task, pool.setting, pool.limit)
    got = st.session_state.get(key) or store.highlight_rows(run_id, task, list(pool_ids))
    if got["examples"] == len(pool_ids):  # complete: no query on later reruns
        st.session_state[key] = got
    if got["examples"]:
        st.caption(f"Token highlights stored for {got['examples']:,} of {len(pool_ids):,} pool examples "
                   f"({got['rows']:,} rows; budget {DEFAULT_MAX_ROWS:,} rows a pool; measured: {HIGHLIGHTS_MEASURED}).")
        if got["examples"] == len(pool_ids):
            return
    else:
        st.caption("No token highlights stored for this pool yet: one pass of the model over the pool stores them "
                   f"(budget {DEFAULT_MAX_ROWS:,} rows; measured: {HIGHLIGHTS_MEASURED}); the queue works without "
                   "them.")
    job_launcher("highlights", {"run_id": run_id, "task": task, "pool_setting": pool.setting,
                                "pool_limit": pool.limit}, label="Store token highlights", key="vet_hl_job")


def vetting_queue(store, sp, vet: VetState, res_cfg, matrix) -> None:
    """Draw the queue: controls, the current example (prompt / response, why, highlights, neighbours), keys."""
    ctx = vet.context
    st.subheader("Vet examples")
    st.html(_KEY_SCRIPT, unsafe_allow_javascript=True)
    highlight_status(store, ctx["task"], ctx["extract_run"], PoolSpec(ctx["pool_setting"], ctx["pool_limit"]),
                     matrix.pool.example_id)
    c1, c2 = st.columns([3, 2])
    mode = c1.radio("Queue", QUEUE_MODES, key="vet_mode", horizontal=True,
                    help="around the cut: the weakest selected and the strongest left out, alternately; by "
                         "uncertainty: closeness of FRS to the cut; filter: the examples the filter below matches")
    c2.text_input("Vetting as", key="vet_user", help="recorded with each decision (default: IGDS_USER)")
    session_panel(store, vet)
    with st.expander("Filter · bulk decisions", expanded=mode == "filter"):
        flt = _filter_controls(sp.scores, matrix)
        n_match = int(flt.mask(sp.scores, matrix).sum())
        b1, b2 = st.columns([1, 3])
        b1.selectbox("Decision", DECISIONS, index=1, key="vet_bulk_decision", label_visibility="collapsed")
        b2.button(f"Decide all {n_match:,} matching ({md_text(flt.describe())})", key="vet_bulk", disabled=not n_match,
                  on_click=_on_bulk, args=(store, ctx, sp.scores, flt, matrix, sp.overrides))
    if msg := st.session_state.pop(MESSAGE, None):
        st.info(md_text(msg))
    queue = _queue(sp, vet, mode, flt, matrix)
    counts = vetting_counts(vet.decisions, queue)
    st.progress(counts.decided / counts.queue if counts.queue else 0.0,
                text=f"{counts.decided:,} / {counts.queue:,} of the queue decided · session: {counts.accepted} accepted"
                     f" · {counts.rejected} rejected · {counts.skipped} skipped"
                     + (f" · session `{vet.session_id}`" if vet.session_id else " · no session open"))
    if not queue:
        st.caption("The queue is empty (every example of it has a task override, or the filter matches none).")
        return
    pos = max(0, min(st.session_state.get(POS, 0), len(queue) - 1))
    eid = queue[pos]
    idx = int(sp.scores.index[sp.scores.example_id == eid][0])
    row = sp.scores.iloc[idx]
    dec = vet.decisions[vet.decisions.example_id == eid]
    inside = eid in set(vet.chosen.example_id)
    st.markdown(f'<div class="vet-current" data-example="{html_text(eid)}" data-pos="{pos}">'
                f"<b>{pos + 1} / {len(queue)}</b> · <code>{html_text(eid)}</code> · {html_text(row.source)} · "
                f"FRS {row.frs:+.3f} · rank {idx + 1} · {int(row.n_tokens)} content tokens · "
                f"{'<b>in</b>' if inside else '<b>out of</b>'} the session's selection · decision: "
                f"<b>{html_text(dec.decision.iloc[0]) if len(dec) else '—'}</b></div>", unsafe_allow_html=True)
    cols = st.columns(6)
    decisions = (("Accept · a", "vet_accept", "accept"), ("Reject · r", "vet_reject", "reject"),
                 ("Skip · s", "vet_skip", "skip"))
    for col, (label, key, kind) in zip(cols[:3], decisions, strict=True):
        col.button(label, key=key, on_click=_on_decide, args=(store, ctx, eid, kind), width="stretch",
                   type="primary" if kind == "accept" else "secondary")
    cols[3].button("Undo · u", key="vet_undo", on_click=_on_undo, args=(store, ctx), width="stretch")
    cols[4].button("← Previous · p", key="vet_prev", on_click=_move, args=(-1,), width="stretch",
                   disabled=pos == 0)
    cols[5].button("Next · n →", key="vet_next", on_click=_move, args=(+1,), width="stretch",
                   disabled=pos >= len(queue) - 1)
    st.text_input("Note (saved with the next decision)", key="vet_note",
                  placeholder="why — Esc leaves the field so the keys work again")
    st.caption("Keys: **a** accept · **r** reject · **s** skip · **u** undo · **n** / **→** next · **p** / **←** "
               "previous. Accept keeps the example in this session's selection, reject takes it out; neither is a "
               "pin until *Apply to task overrides*.")
    left, right = st.columns(2)
    rec = _example(store, ctx, queue, pos)
    with left:
        example_text(rec["prompt"], rec["response"])
    ex = sp.explain(eid, res_cfg)
    nz = ex[ex.term != 0]
    with right:
        _why(nz)
        _neighbours(sp, vet, idx)
    _highlights(rec["highlights"], [int(f) for f in nz.loc[nz.term.abs().sort_values(ascending=False).index].feature])


def selection_charts(places, scores: pd.DataFrame, chosen: pd.DataFrame, res_cfg, key: tuple) -> None:
    """The FRS histogram with the cut and the selection's composition, into ``places`` (two containers the page
    made above the queue; drawn after it, so a key press shows the next example first). The histogram of a
    ranking is built once (a decision moves only the cut)."""
    import plotly.express as px
    import plotly.graph_objects as go

    cached = st.session_state.get("vet.hist")
    if cached is None or cached[0] != key:
        base = px.histogram(scores, x="frs", color="task", nbins=60, barmode="stack", title="Feature-resonant score")
        st.session_state["vet.hist"] = cached = (key, base)
    hist = go.Figure(cached[1])
    cut = (chosen.score.min() if res_cfg.higher_first else chosen.score.max()) if len(chosen) else None
    if cut is not None:
        hist.add_vline(x=cut, line_dash="dash", annotation_text="cut")
    places[0].plotly_chart(hist, key="sel_hist")
    comp = chosen.groupby(["task", "source"]).size().reset_index(name="n")
    colour = {tr.name: tr.marker.color for tr in cached[1].data}  # each task in its histogram colour
    # sources as plotly text: escaped, since plotly renders tags such as <b> in its labels
    bars = go.Figure([go.Bar(x=g.source.map(html_text), y=g.n, name=t, marker_color=colour.get(t))
                      for t, g in comp.groupby("task")],
                     layout={"title": {"text": "Composition of the selection"}, "barmode": "stack",
                             "legend": {"title": {"text": "task"}}, "xaxis": {"title": {"text": "source"}},
                             "yaxis": {"title": {"text": "n"}}})
    places[1].plotly_chart(bars, key="sel_comp")


def examples_table(store, task: str, scores: pd.DataFrame, sp, res_cfg, run_id: str) -> None:
    """The pool as a table (selected / left out / all) with task-wide pins and rejects on picked rows, and the
    first picked example's FRS terms and stored highlights."""
    import plotly.express as px

    from igds.method.selection import set_example_override

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
        example_text(row["prompt"], row["response"])
        if len(ex) and st.toggle("Token highlights of the top features (stored)", key="sel_tokens"):
            _highlights(store.example_highlights(run_id, task, eid), [int(f[1:]) for f in ex.feature.head(3)])
