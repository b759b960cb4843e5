"""A job panel: start / watch / cancel / resume a background job with live progress.

Jobs are reached through the package (``jobs.start_job``), so that tests patching ``igds.jobs.start_job``
reach the panel.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from igds import jobs
from igds.ui.widgets import md_text


def latest_job(kind: str, params: dict) -> dict | None:
    """Newest job of ``kind`` started with exactly ``params`` (its status), or None."""
    want = json.loads(json.dumps(params))
    for status in jobs.list_jobs():
        if status.get("kind") != kind:
            continue
        try:
            spec = jobs.job_spec(status["job_id"])
        except (OSError, ValueError):
            continue
        if spec.get("params") == want:
            return status
    return None


def _fmt_eta(seconds) -> str:
    return "" if seconds is None else f" · ETA {int(seconds) // 60}:{int(seconds) % 60:02d}"


def fmt_state(status: dict) -> str:
    """A job's state for people: ``queued — place 2 of 3`` for a job waiting in the local queue."""
    q = status.get("queue")
    if status["state"] == "queued" and q:
        return f"queued — place {q['place']} of {q['of']}"
    if status["state"] == "stalled":
        return (f"stalled — no heartbeat for {status.get('stalled_s') or 0:.0f} s, its process is alive "
                "(stopped or swapping?)")
    return status["state"]


def fmt_slot(status: dict) -> str:
    """The slot a running job holds (``slot 0 · 2 threads · GPUs 0``), or ``""``."""
    slot = status.get("slot")
    if not slot or status["state"] not in ("running", "stalled"):
        return ""
    return f"slot {slot['index']} · {slot['threads']} threads" + (f" · GPUs {slot['gpus']}" if slot.get("gpus") else "")


def fmt_target(status: dict) -> str:
    """Where a job runs: ``local`` or ``ray (<dashboard>, <submission id>)``."""
    ray = status.get("ray")
    if status.get("target") != "ray" or not ray:
        return "local"
    return f"ray ({ray.get('dashboard')}, {ray.get('submission_id') or 'not submitted'})"


def queue_rows() -> list[dict]:
    """Running and queued jobs for a table: job, kind, state with place, slot, target and progress."""
    return [{"job": s["job_id"], "kind": s["kind"], "state": fmt_state(s), "slot": fmt_slot(s),
             "target": fmt_target(s), "progress": (s.get("progress") or {}).get("message", "")}
            for s in jobs.active_jobs()]


def newest_job(kind: str) -> dict | None:
    """Newest job of ``kind`` (its status), whatever its params, or None."""
    return next((s for s in jobs.list_jobs() if s.get("kind") == kind), None)


def job_view(status: dict, label: str, render=None, head=None) -> None:
    """One job: its line (label, state, slot, target) in ``head`` (a column; default: here), then its progress
    while it is not done, its error, ``render(status)`` and its log. The label and the error are shown as text
    (they may hold a selection's name or a dataset's content)."""
    prog = status.get("progress") or {}
    frac = prog["done"] / prog["total"] if prog.get("total") else 0.0
    where = "" if status.get("target", "local") == "local" else f" on {fmt_target(status)}"
    slot = f" ({fmt_slot(status)})" if fmt_slot(status) else ""
    (head or st).markdown(f"**{md_text(label)}** — job `{status['job_id']}` is **{fmt_state(status)}**{slot}{where}")
    if status["state"] != "done":
        text = (prog.get("message") or fmt_state(status)) + _fmt_eta(prog.get("eta_seconds"))
        st.progress(min(1.0, frac), text=text)
    if status.get("error"):
        st.error(md_text(f"{status['error'].get('type')}: {status['error'].get('message')}"))
    if render is not None:
        render(status)
    with st.expander("Log", expanded=False):
        st.code("\n".join(status.get("log_tail") or jobs.read_log(status["job_id"], 30)) or "(empty)")


def just_finished(status: dict | None) -> bool:
    """Whether ``status`` is a job this session sees done for the first time, finished in the last minute (the
    page then reruns once so its results appear)."""
    if not status or status["state"] != "done":
        return False
    seen = st.session_state.setdefault("jobs.seen_done", set())
    if status["job_id"] in seen:
        return False
    seen.add(status["job_id"])
    return time.time() - (status.get("finished") or 0) < 60


def job_launcher(kind: str, params: dict, *, label: str, key: str, help: str = "",
                 render=None) -> dict | None:
    """Show the newest matching job with live progress, plus Start / Cancel / Resume buttons.

    Args:
        render: optional ``render(status)`` drawn inside the live panel (e.g. a loss curve).

    Returns:
        the job's status dict (None when no job was started yet).
    """
    jobs.get_job_kind(kind)  # the registry is the list of kinds: a misspelt one fails here, not on the click

    @st.fragment(run_every=2.0)
    def panel() -> None:
        status = latest_job(kind, params)
        state = status["state"] if status else None
        running = state in jobs.LIVE  # a stalled job's process may go on: never start a second copy
        cols = st.columns([3, 1, 1])
        if cols[1].button("Start" if not status or state == "done" else "Start anew", key=f"{key}_start",
                          disabled=running, help=help, type="primary" if not status else "secondary"):
            jobs.start_job(kind, params)
            st.rerun()
        if running and cols[2].button("Cancel", key=f"{key}_cancel"):
            jobs.cancel_job(status["job_id"])
            st.rerun()
        if state in ("dead", "failed", "cancelled") and cols[2].button("Resume", key=f"{key}_resume"):
            jobs.resume_job(status["job_id"])
            st.rerun()
        if not status:
            cols[0].markdown(f"**{md_text(label)}**")
            return
        job_view(status, label, render, head=cols[0])
        if just_finished(status):  # a job that just finished: rerun the whole page once so its results appear
            st.rerun(scope="app")

    panel()
    return latest_job(kind, params)
