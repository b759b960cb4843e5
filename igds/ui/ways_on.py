"""Ways on from an empty F* (issue 24), shown in place on the Features, Interventions and Selection pages.

When the task's intervention filter kept no candidate, :func:`fstar_notice` says why (what the filter could see: the
dev items, the strongest candidate with its effect, interval and q, the null's cut) and offers, on the page itself:

- *Rerun the filter*: the paper preset's intervention config, or a looser keep rule of the user's own, as an
  ``intervene`` job whose progress shows here (the newest intervention run is the one every page shows);
- *Pin candidates*: pinned features count at once (the Selection page scores the pool with them);
- *Select with a baseline*: on the Selection page (:func:`baseline_panel`), a ``select`` job stored under a name.

While the task's intervention run is unfinished it says how far it is (n of N) instead of a verdict. Every message
names only controls that are on the page it points to.
"""

from __future__ import annotations

import streamlit as st

from igds import jobs
from igds.method.config import InterventionConfig
from igds.progress import format_seconds
from igds.ui.jobs import job_launcher, needs_or_waiting
from igds.ui.resources import pool_ready
from igds.ui.widgets import md_text

SELECTION_PAGE, FINETUNE_PAGE = "pages/4_selection.py", "pages/5_finetune.py"
PAPER_FILTER, OWN_FILTER = "the paper preset's", "a looser setting of my own"
FLASH = "ways.flash"  # a message a button's callback leaves for the next run (shown once, as a toast)


def flash() -> None:
    """Show (once) the message the last pin / unpin left."""
    if msg := st.session_state.pop(FLASH, None):
        st.toast(msg, icon=":material/push_pin:")


def intervention_job(task: str) -> dict | None:
    """The newest intervention job of ``task`` (any params): its status with ``params`` added, or None."""
    for status in jobs.list_jobs():
        if status.get("kind") != "intervene":
            continue
        try:
            params = jobs.job_spec(status["job_id"]).get("params") or {}
        except (OSError, ValueError):
            continue
        if params.get("task") == task:
            return {**status, "params": params}
    return None


def fstar_notice(store, task: str, state, effects, *, page: str) -> None:
    """Below a page's counts: how far an unfinished intervention run is (with its job), or, for an empty ``F*``, why
    and the ways on. Nothing when ``F*`` holds features or no intervention run exists.

    Args:
        state: the task's :class:`~igds.workflow.explore.TaskState`.
        effects: the task's latest :class:`~igds.method.intervene.EffectResult` (None before any is measured).
        page: the page drawing it (its URL path: ``features``, ``interventions`` or ``selection``); the baseline is
            offered in place on the Selection page only.
    """
    from igds.workflow.explore import fstar_why, measuring_message

    if state.effect_id is None:
        return
    flash()
    if state.measuring:
        st.info(measuring_message(state), icon=":material/hourglass_top:")
        job = intervention_job(task)
        if job is not None and not (page == "interventions" and job["params"] == {"task": task}):
            job_launcher("intervene", job["params"], label=f"Interventions of {task}", key="way_running")
        elif job is None:
            st.caption("No dashboard job is measuring it (a CLI run may be): "
                       + ("it is still running." if state.effect_status == "running" else
                          "it stopped; start it again on the Interventions page (it resumes)."))
        return
    if state.n_kept:
        return
    if effects is None or not len(effects.verdict):
        st.warning("**F\\* is empty**: the intervention run measured no candidate (recall found none).",
                   icon=":material/block:")
        return
    st.warning(f"**F\\* is empty**: {md_text(fstar_why(effects))}.", icon=":material/block:")
    if state.pinned:
        st.success(f"The selection scores the pool with your {len(state.pinned)} pinned feature(s): "
                   f"{', '.join(f'f{f}' for f in state.pinned)}.", icon=":material/push_pin:")
    with st.container(border=True):
        st.markdown("**Ways on**")
        rerun_filter(task, state, effects)
        pin_panel(store, task, state, effects)
        if page == "selection":
            baseline_panel(store, task, state, title="**3 · Select with a baseline** (no features needed; a job)",
                           border=False)
        else:
            st.markdown("**3 · Select with a baseline** (Random, Loss, IFD, Zip, Longest …): on the Selection page.")
            st.page_link(SELECTION_PAGE, label="Open the Selection page", icon=":material/filter_alt:")


def rerun_filter(task: str, state, effects) -> None:
    """*1 · Rerun the filter*: the paper preset's intervention config or a looser keep rule, as a job."""
    from igds.method.presets import method_preset
    from igds.workflow.explore import filter_rule

    st.markdown("**1 · Rerun the filter** (a job; when it finishes, every page shows its verdict)")
    kind = st.radio("Filter", [PAPER_FILTER, OWN_FILTER], key="way_filter", horizontal=True)
    if kind == PAPER_FILTER:
        paper = method_preset("paper").intervene
        st.caption(f"The paper's literal reading on these {state.n_candidates} candidates: keep every candidate whose "
                   f"α = 1 amplification lowers the dev NLL ({filter_rule(paper)}); measures α = 1 only, with no "
                   "null, sweep or ablation, so it is faster than the first run.")
        job_launcher("intervene", {"task": task, "intervene_preset": "paper"},
                     label=f"Rerun {task}'s interventions with the paper preset's filter", key="way_paper",
                     help="measures the candidates again with the paper preset's intervention config")
        return
    cur = effects.config or InterventionConfig()
    c1, c2, c3 = st.columns(3)
    rule = c1.radio("Keep a candidate when", ["its q against the fitted null is below a looser level",
                                              "its α = 1 effect > δ nats (no test)"], key="way_rule")
    by_delta = rule.startswith("its α")
    fdr = c2.number_input("q", 0.001, 1.0, 0.2, 0.01, key="way_fdr", disabled=by_delta)
    delta = c3.number_input("δ (nats)", value=0.0, step=0.001, format="%.4f", key="way_delta", disabled=not by_delta)
    try:
        cfg = InterventionConfig.from_dict({**cur.to_dict(), "delta": float(delta) if by_delta else None,
                                            "require_significance": not by_delta, "fdr": float(fdr)})
    except ValueError as e:
        st.error(md_text(e))
        return
    st.caption(f"Keeps {filter_rule(cfg)}. The candidates are measured again with the current run's plan (that run "
               f"took {format_seconds(effects.seconds)}).")
    job_launcher("intervene", {"task": task, "intervene": cfg.to_dict()},
                 label=f"Rerun {task}'s interventions keeping {filter_rule(cfg)}", key="way_own",
                 help="measures the candidates again with this keep rule")


def _pin(store, task: str, sae_key: str | None, features: list[int], action: str | None, pick_key: str) -> None:
    """Button callback: pin (or clear) features before the rerun, so the whole page shows the new state."""
    from igds.method.selection import set_feature_override

    for f in features:
        set_feature_override(store, task, sae_key, int(f), action)
    st.session_state[pick_key] = []
    names = ", ".join(f"f{f}" for f in features)
    st.session_state[FLASH] = (f"Pinned {names}: the Selection page scores the pool with it now" if action
                               else f"Unpinned {names}")


def pin_panel(store, task: str, state, effects) -> None:
    """*2 · Pin candidates*: pick measured candidates (strongest first) and pin them; pinned ones are listed with an
    *Unpin all*."""
    from igds.workflow.explore import pin_choices

    st.markdown("**2 · Pin candidates** (a pinned feature scores the pool as a validated one would)")
    choices = pin_choices(effects)
    label = {int(r.feature): f"f{int(r.feature)} · {r.effect:+.4f} nats (95% CI {r.ci_low:+.4f}..{r.ci_high:+.4f}) · "
                             f"q {r.q_value:.3g}" for r in choices.itertuples()}
    options = [f for f in label if f not in state.pinned]
    c1, c2 = st.columns([4, 1])
    picked = c1.multiselect("Candidates to pin (strongest effect first)", options, format_func=label.get,
                            key="way_pick")
    c2.button("Pin", key="way_pin", disabled=not picked, type="primary", on_click=_pin,
              args=(store, task, state.sae_key, picked, "pin", "way_pick"))
    if state.pinned:
        c1.caption("Pinned: " + ", ".join(label.get(f, f"f{f}") for f in state.pinned))
        c2.button("Unpin all", key="way_unpin", on_click=_pin,
                  args=(store, task, state.sae_key, list(state.pinned), None, "way_pick"))


def name_field(label: str, default: str, key: str, **kwargs) -> str:
    """A name input showing ``default`` that follows it while the user has not typed a name of their own."""
    last = f"{key}.default"
    if st.session_state.get(key) in (None, "", st.session_state.get(last)):
        st.session_state[key] = default
    st.session_state[last] = default
    return st.text_input(label, key=key, **kwargs).strip()


def name_taken(store, name: str, own: str | None = None) -> str | None:
    """Why ``name`` cannot name a new selection (a different stored selection has it), or None."""
    from igds.workflow.explore import selection_named

    if not name:
        return "a selection needs a name"
    other = selection_named(store, name)
    if other is None or other["selection_id"] == own:
        return None
    return (f"a selection named “{name}” is already stored ({other['method']}, {other['n_selected']:,} examples, "
            f"{other['task']}, saved {other['created']:%Y-%m-%d %H:%M}): choose another name")


def _saved(status: dict) -> None:
    result = status.get("result") or {}
    if status["state"] == "done" and result.get("selection_id"):
        st.success(f"Saved selection {md_text(result.get('name') or result['selection_id'])} "
                   f"(`{result['selection_id']}`): export and fine-tune it on the next page.")
        st.page_link(FINETUNE_PAGE, label="Export & fine-tune", icon=":material/model_training:")


def selection_ways(store, task: str, state, effects) -> None:
    """The Selection page with no feature to score with: what is missing or why ``F*`` is empty, with the ways on
    (:func:`fstar_notice`), and a baseline in any case (it needs no features)."""
    if state.effect_id is None:
        needs_or_waiting("No features to select with yet: run recall (Features page) and interventions "
                         "(Interventions page) first, or select with a baseline below.",
                         ("bootstrap", "extract", "intervene"), task, "the validated features")
    fstar_notice(store, task, state, effects, page="selection")
    if state.effect_id is None or state.measuring or effects is None or not len(effects.verdict):
        baseline_panel(store, task, state)


def baseline_panel(store, task: str, state, title: str = "**Select with a baseline** (no features needed; a job)",
                   border: bool = True) -> None:
    """*Select with a baseline* on the Selection page: method, share, pool and name; stored by a ``select`` job."""
    from igds.data.corpus import POOL_SETTINGS
    from igds.method.baselines import BASELINES
    from igds.method.selection import SelectionConfig
    from igds.ui.jobs import latest_job
    from igds.workflow.explore import default_pool
    from igds.workflow.stages import baseline_name

    with st.container(border=border):
        st.markdown(title)
        c1, c2, c3 = st.columns(3)
        method = c1.selectbox("Baseline", list(BASELINES), key="base_method",
                              format_func=lambda m: f"{m}: {BASELINES[m].description}")
        ratio = c2.slider("Share of the pool", 0.05, 1.0, 0.5, 0.05, key="base_ratio")
        pools = list(reversed(POOL_SETTINGS))
        pool = c3.selectbox("Pool", pools, index=pools.index(default_pool(store, task, state.extract_run, pool_ready)),
                            key="base_pool")
        cfg = SelectionConfig(method=method, ratio=ratio, pool_setting=pool)
        name = name_field("Baseline selection name", baseline_name(task, cfg), key="base_name")
        params = {"task": task, "selection": cfg.to_dict(), "name": name,
                  **({"extract_run": state.extract_run} if state.extract_run else {})}
        done = latest_job("select", params)
        own = ((done or {}).get("result") or {}).get("selection_id")
        if problem := name_taken(store, name, own):
            st.error(md_text(problem))
            return
        job_launcher("select", params, label=f"Select {cfg.ratio:.0%} of the {pool} pool by {method} as {name}",
                     key="way_base", render=_saved, help="ranks the pool with the baseline and stores the selection")
