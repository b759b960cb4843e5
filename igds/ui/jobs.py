"""A job panel: start / watch / cancel / resume a background job with live progress, and what a page says while
it waits on a job (:func:`waiting_on`, :func:`waiting_notice`).

A running job shows its stage ("stage 4 of 5: interventions"), its progress within the stage, its elapsed time and
the time left as a duration ("about 20 min left in this stage, then 1 more stage"), from the rate measured within
the stage (:func:`igds.jobs.status.job_timing`); a queued, stalled or ended job shows no estimate.

Jobs are reached through the package (``jobs.start_job``), so that tests patching ``igds.jobs.start_job``
reach the panel.
"""

from __future__ import annotations

import json
import time

import streamlit as st

from igds import jobs
from igds.jobs.status import job_timing
from igds.progress import format_left, format_seconds
from igds.ui.pages import PAGES
from igds.ui.widgets import md_text, needs, section_table

SILENT_NOTE_S = 30.0  # a running job silent this long says so next to "no estimate yet"
LOG_LINES = 200  # lines of log.txt the Log expander shows


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


def fmt_left(status: dict, now: float | None = None) -> str:
    """The time left of a running job as a duration (``about 20 min left in this stage, then 2 more stages``), or
    why there is none; ``""`` for a job that is not running (queued, stalled or ended jobs have no estimate)."""
    if status["state"] != "running":
        return ""
    t = job_timing(status, now)
    after = t["stages_after"]
    then = f", then {after} more stage{'s' if after > 1 else ''}" if after else ""
    in_all = f" ({format_left(t['rest_s'])} left in all)" if t["rest_s"] is not None and t["later"] else ""
    if t["step_complete"]:
        return "this step is complete" + then + in_all
    if t["left_s"] is not None:
        if not after:
            return f"{format_left(t['left_s'])} left" + (" (last stage)" if t["stage_of"] else "")
        return f"{format_left(t['left_s'])} left in this stage{then}{in_all}"
    if t["overdue_s"] is not None:
        return f"taking longer than estimated: no progress report for {format_seconds(t['silent_s'])}"
    silent = t["silent_s"] or 0.0
    return "no estimate yet" + (f": no progress report for {format_seconds(silent)}" if silent >= SILENT_NOTE_S
                                else " (measuring the rate)")


def fmt_timing(status: dict, now: float | None = None) -> str:
    """Where a job is in time: ``stage 3 of 5: recall · 40 s in this stage · 12 min 05 s elapsed``; an ended job
    reads ``ended in stage 3 of 5: recall · ran 12 min 05 s``; ``""`` for a queued job."""
    t = job_timing(status, now)
    live = status["state"] in jobs.LIVE
    parts = []
    if t["stage"]:
        where = f"stage {t['stage_index']} of {t['stage_of']}: {t['stage']}" if t["stage_of"] else t["stage"]
        parts.append(where if live or status["state"] == "done" else f"ended in {where}")
        if live and t["stage_elapsed_s"] is not None:
            parts.append(f"{format_seconds(t['stage_elapsed_s'])} in this stage")
    if t["elapsed_s"] is not None:
        parts.append(f"{format_seconds(t['elapsed_s'])} elapsed" if live else f"ran {format_seconds(t['elapsed_s'])}")
    return " · ".join(parts)


def _bar_text(status: dict) -> str:
    msg = (status.get("progress") or {}).get("message")
    state = status["state"]
    if state == "queued" or not msg:
        return fmt_state(status)
    if state == "running":
        return f"{msg} · {fmt_left(status)}"
    return msg if state == "stalled" else f"{state} — last report: {msg}"


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
    """Running and queued jobs for a table: job, kind, state with place, slot, target, progress, stage and time
    (elapsed, and the time left of a running job)."""
    return [{"job": s["job_id"], "kind": s["kind"], "state": fmt_state(s), "slot": fmt_slot(s),
             "target": fmt_target(s), "progress": (s.get("progress") or {}).get("message", ""),
             "time": " · ".join(x for x in (fmt_timing(s), fmt_left(s)) if x)}
            for s in jobs.active_jobs()]


def queue_table(run_every: float = 3.0) -> None:
    """The running and waiting jobs (:func:`queue_rows`) as a table that refreshes itself every ``run_every`` s."""

    @st.fragment(run_every=run_every)
    def table() -> None:
        section_table("Job queue (running and waiting)", queue_rows(), "no running or queued jobs")

    table()


def job_rows(n: int = 20) -> list[dict]:
    """The newest ``n`` jobs for a table: job, kind, state, attempt, last progress message and time."""
    return [{"job": j["job_id"], "kind": j["kind"], "state": fmt_state(j), "attempt": j.get("attempt"),
             "progress": (j.get("progress") or {}).get("message", ""),
             "time": " · ".join(x for x in (fmt_timing(j), fmt_left(j)) if x)} for j in jobs.list_jobs()[:n]]


def newest_job(kind: str) -> dict | None:
    """Newest job of ``kind`` (its status), whatever its params, or None."""
    return next((s for s in jobs.list_jobs() if s.get("kind") == kind), None)


def job_view(status: dict, label: str, render=None, head=None) -> None:
    """One job: its line (label, state, slot, target) in ``head`` (a column; default: here), then, while it is not
    done, its progress within the stage with the time left (running jobs only), its stage and elapsed time, its
    error, ``render(status)`` and its log. The label and the error are shown as text (they may hold a selection's
    name or a dataset's content)."""
    prog = status.get("progress") or {}
    frac = prog["done"] / prog["total"] if prog.get("total") else 0.0
    where = "" if status.get("target", "local") == "local" else f" on {fmt_target(status)}"
    slot = f" ({fmt_slot(status)})" if fmt_slot(status) else ""
    (head or st).markdown(f"**{md_text(label)}** — job `{status['job_id']}` is **{fmt_state(status)}**{slot}{where}")
    if status["state"] != "done":
        st.progress(min(1.0, frac), text=md_text(_bar_text(status)))
    if timing := fmt_timing(status):
        st.caption(md_text(timing))
    if status.get("error"):
        st.error(md_text(f"{status['error'].get('type')}: {status['error'].get('message')}"))
    if render is not None:
        render(status)
    with st.expander("Log", expanded=False):
        lines = jobs.read_log(status["job_id"], LOG_LINES) or status.get("log_tail") or []
        st.code("\n".join(lines) or "(empty)")


def _job_tasks(job_id: str) -> set[str] | None:
    """Tasks a job's params name (``task``, ``tasks`` or ``config.tasks``); None when it names none."""
    try:
        params = jobs.job_spec(job_id).get("params") or {}
    except (OSError, ValueError):
        return None
    named = [params.get("task"), *(params.get("tasks") or []), *((params.get("config") or {}).get("tasks") or [])]
    return {t for t in named if isinstance(t, str)} or None


def waiting_on(*kinds: str, task: str | None = None) -> dict | None:
    """The job a page waits for: the newest queued, running or stalled job of one of ``kinds`` (any kind if none
    given) that works on ``task``, as its status; None when no such job is live.

    A job whose params name no task (the bootstrap with its default config) counts for every task. A page with
    nothing to show yet calls it before saying "start X first", and shows :func:`waiting_notice` instead when a
    job is on its way, e.g. ``if (job := waiting_on("bootstrap", "extract", task=task)): waiting_notice(job,
    "the features of this task")``.
    """
    for status in jobs.list_jobs():  # newest first
        if status["state"] not in jobs.LIVE or (kinds and status.get("kind") not in kinds):
            continue
        named = _job_tasks(status["job_id"]) if task is not None else None
        if named is None or task in named:
            return status
    return None


def waiting_text(status: dict, what: str) -> str:
    """One line for a page waiting on ``status``'s job: ``Waiting for job bootstrap-… (bootstrap; running,
    stage 4 of 5: interventions, feature 12/32, about 6 min left in this stage, then 1 more stage): the
    features of this task appear when it has finished.`` (plain text; Markdown-escape it to show it)."""
    prog = (status.get("progress") or {}).get("message")
    t = job_timing(status)
    stage = (f"stage {t['stage_index']} of {t['stage_of']}: {t['stage']}" if t["stage_of"] else t["stage"]) \
        if t["stage"] else None
    facts = ", ".join(x for x in (fmt_state(status), stage, prog if prog != t["stage"] else None,
                                  fmt_left(status)) if x)
    return f"Waiting for job {status['job_id']} ({status['kind']}; {facts}): {what} appear when it has finished."


def waiting_notice(status: dict, what: str) -> None:
    """Say which job a page waits for (:func:`waiting_text`) and link to the Overview, where it can be watched and
    cancelled."""
    st.info(md_text(waiting_text(status, what)), icon=":material/hourglass_top:")
    file, title, url, _ = next(p for p in PAGES if p[2] == "overview")
    try:
        st.page_link(file, label=f"Watch or cancel it on the {title}", icon=":material/dashboard:")
    except st.errors.StreamlitAPIException:  # run outside the app's navigation (a page file on its own)
        st.markdown(f"[Watch or cancel it on the {title}]({url})")


def preparing_text(status: dict, now: float | None = None) -> str:
    """What a live job is still preparing, for every page: ``Still being prepared by job bootstrap-…: quick look
    (now, about 2 min left), then extraction (task pool) about 3 min, interventions about 35 min; about 40 min left
    in all.`` The later stages are the job's own plan (:func:`igds.progress.report_plan`); "" when it has none."""
    t = job_timing(status, now)
    if not t["later"] or not t["stage"]:
        return ""
    cur = f"{t['stage']} (now, {format_left(t['left_s'])} left)" if t["left_s"] is not None else f"{t['stage']} (now)"
    later = ", ".join(f"{name} {format_left(secs) if secs is not None else '(no estimate yet)'}"
                      for name, secs in t["later"])
    rest = f"; {format_left(t['rest_s'])} left in all" if t["rest_s"] is not None else \
        "; the time left in all once the current stage has measured its rate"
    return f"Still being prepared by job {status['job_id']}: {cur}, then {later}{rest}."


def preparing_notice() -> None:
    """On every page (the app's frame calls it): what the live job with a plan (the first run) is still preparing,
    with its ETA; nothing when no such job runs. Reads only the jobs' status files."""
    for status in jobs.list_jobs():
        if status["state"] == "running" and (text := preparing_text(status)):
            st.caption(md_text(text))
            return


def needs_or_waiting(message: str, kinds: tuple[str, ...], task: str | None, what: str) -> bool:
    """A page with nothing to show yet: which live job of ``kinds`` (on ``task``) it waits for, with a link to watch
    it (:func:`waiting_notice`), or else ``message`` (what to start). Returns whether a job is on its way (the page
    then offers no second start)."""
    if job := waiting_on(*kinds, task=task):
        waiting_notice(job, what)
        return True
    needs(message)
    return False


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
