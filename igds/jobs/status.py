"""Reading jobs from their folders, from any process: status (a running job whose process is gone reads
as ``dead``; one whose process lives but has stopped beating reads ``stalled``), its timing (stage, elapsed,
time left), spec, the list of jobs, metrics and log lines."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections import deque

from igds import settings
from igds.jobs import ray_target
from igds.jobs.folder import LOG, METRICS, SPEC, STATUS, job_dir, jobs_dir, read_json, status_lock, write_json
from igds.jobs.pids import _children, pid_alive, same_process, track_child
from igds.jobs.queue import queue_place, slot_holders

TERMINAL = frozenset({"done", "failed", "cancelled", "dead"})
RESUMABLE = frozenset({"dead", "failed", "cancelled"})
LIVE = frozenset({"queued", "running", "stalled"})  # a process may still work on the job: never start a second
DEAD_AFTER_S = settings.JOB_DEAD_AFTER_S  # default heartbeat age past which a running job is stalled or dead
HEARTBEAT_S = 2.0  # the job's heartbeat period (igds.jobs.context.HEARTBEAT_S)

__all__ = ["DEAD_AFTER_S", "LIVE", "RESUMABLE", "TERMINAL", "_children", "active_jobs", "job_spec", "job_status",
           "job_timing", "list_jobs", "own_process", "pid_alive", "read_log", "read_metrics", "track_child"]


def own_process(st: dict) -> bool | None:
    """Whether the process recorded in a status still runs (same pid and start time); None when it cannot be
    told from here (no pid yet, or another host)."""
    if not st.get("pid") or st.get("host") != socket.gethostname():
        return None
    return same_process(st["pid"], st.get("pid_start"))


def _read_state(st: dict, now: float) -> str:
    """The state a reader reports: the recorded one, or ``dead`` / ``stalled`` for a job that stopped reporting."""
    state = st.get("state")
    if state not in ("queued", "running"):
        return state
    alive = own_process(st)
    if alive is False:
        return "dead"
    # a queued job has no heartbeat yet (the process is still importing); only its pid says anything
    hb = st.get("heartbeat")
    if state == "running" and hb is not None and now - hb > settings.job_dead_after_s():
        # stopped (SIGSTOP), swapping or starved: its process may go on at any moment, so it is not dead
        return "stalled" if alive else "dead"
    # a submitted job that is still queued, or has gone quiet: ask its cluster whether the Ray job has ended
    ray = st.get("ray")
    if st.get("target") == "ray" and ray and (state == "queued" or hb is None or now - hb > 2 * HEARTBEAT_S) \
            and ray_target.ray_state(ray) in ray_target.ENDED:
        return "dead"
    return state


def job_status(job_id: str) -> dict:
    """Current status of a job, with ``dir`` added; a running job whose process is gone is marked ``dead``.

    A running job whose heartbeat is older than :func:`igds.settings.job_dead_after_s` while its process (same
    pid and start time) still runs reads ``stalled`` (with ``stalled_s``, the heartbeat's age); that is reported,
    not written, since the process may go on beating. A stale job on another host reads ``dead``.

    Returns:
        The ``status.json`` dict: ``job_id, kind, state, pid, pid_start (its start time in clock ticks since
        boot), attempt, created, started, updated, finished,
        heartbeat, progress {done, total, message, eta_seconds, at}, stage {name, index, of, started, declared,
        ended}, log_tail, error, result`` (times are epoch s; ``eta_seconds`` is the time left in the stage as of
        ``at``, None once the job ended: read it through :func:`job_timing`),
        plus ``target`` (``local`` or ``ray``; a submitted job also has ``ray {dashboard, submission_id, ...}``),
        ``slot {index, threads, gpus}`` of a running job that holds a queue slot, and for a job waiting in the
        local queue ``queue {place, of}`` (1-based).
    """
    d = job_dir(job_id)
    if not (d / STATUS).exists():
        raise FileNotFoundError(f"no job {job_id!r} in {jobs_dir()}")
    st = read_json(d / STATUS)
    now = time.time()
    state = _read_state(st, now)
    if state == "dead" and st["state"] != "dead":
        with status_lock(d):
            st = read_json(d / STATUS)
            now = time.time()
            state = _read_state(st, now)
            if state == "dead" and st["state"] != "dead":  # re-checked under the lock: it may have finished
                st.update(state="dead", updated=now, finished=now)
                write_json(d / STATUS, st)
    out = {"target": "local", **st, "dir": str(d)}
    if state == "stalled":
        out.update(state="stalled", stalled_s=now - st["heartbeat"])
    if st["state"] == "queued" and out["target"] == "local":
        place = queue_place(job_id)
        if place is not None:
            out["queue"] = {"place": place[0], "of": place[1]}
    return out


def job_timing(status: dict, now: float | None = None) -> dict:
    """How far a job is, read at ``now``: what a page or the CLI shows next to its progress.

    The time left is the job's last estimate (from the rate measured within its current stage, see
    :class:`igds.jobs.context.JobContext`) counted down since that report; only a ``running`` job has one. Once the
    countdown has run out with no newer report, there is no estimate, only ``overdue_s``.

    Returns:
        ``{elapsed_s, stage, stage_index, stage_of, stage_elapsed_s, stages_after, left_s, overdue_s, silent_s,
        step_complete, later, rest_s}``:
        ``elapsed_s`` since the job started (to its end once it ended; None while queued), the current (or last)
        stage's name, 1-based ``stage_index`` of ``stage_of`` (0 when the stages are not counted),
        ``stage_elapsed_s`` in it, ``stages_after`` it (None when not counted), ``left_s`` in the stage (None: no
        estimate), ``overdue_s`` past the estimate, ``silent_s`` since its last progress report, and whether its
        last report completed a step (``done == total``; ``left_s`` is then 0); ``later``: the stages the job
        reported after the current one (``[(name, seconds or None)]``, see :func:`igds.progress.report_plan`), and
        ``rest_s`` the time left in all (the stage's ``left_s`` plus every later estimate; None while any is unknown).
    """
    now = time.time() if now is None else now
    started, ended = status.get("started"), status.get("finished")
    stage, prog = status.get("stage") or {}, status.get("progress") or {}
    running = status.get("state") == "running"
    queued = status.get("state") == "queued" or started is None
    out = {"elapsed_s": None if queued else (ended or now) - started,
           "stage": stage.get("name"), "stage_index": stage.get("index") or 0, "stage_of": stage.get("of") or 0,
           "stage_elapsed_s": ((stage.get("ended") or ended or now) - stage["started"]) if stage else None,
           "stages_after": (stage["of"] - stage["index"]) if stage.get("of") else None,
           "left_s": None, "overdue_s": None,
           "silent_s": now - prog["at"] if running and prog.get("at") else None}
    eta = prog.get("eta_seconds")
    out["step_complete"] = bool(running and prog.get("total") and prog.get("done", 0) >= prog["total"])
    if out["step_complete"]:
        out["left_s"] = 0.0  # the next step (or the stage's end) has not reported yet: nothing to count down
    elif running and eta is not None:
        left = eta - (out["silent_s"] or 0.0)
        out["left_s" if left >= 0 else "overdue_s"] = abs(left)
    plan = status.get("plan") or {}
    out["later"] = [(name, secs) for name, secs in plan.get("later") or []] if running else []
    parts = [out["left_s"], *(secs for _, secs in out["later"])]
    out["rest_s"] = sum(parts) if running and plan and None not in parts else None
    return out


def job_spec(job_id: str) -> dict:
    """What a job was started with: ``{job_id, kind, params, created}``."""
    return read_json(job_dir(job_id) / SPEC)


def list_jobs() -> list[dict]:
    """Status of every job, newest first."""
    root = jobs_dir()
    out = []
    for d in root.iterdir() if root.exists() else ():
        with contextlib.suppress(FileNotFoundError, ValueError):
            out.append(job_status(d.name))
    return sorted(out, key=lambda s: s.get("created") or 0, reverse=True)


def active_jobs() -> list[dict]:
    """Running, stalled and queued jobs: running and stalled first, then the queue in its order, each status with
    its place or slot.

    A running job that holds a slot has ``slot``; a waiting one ``queue``; ``slots`` on every row is the setting's
    slot → holder map, so a reader can show free slots too.
    """
    rows = [s for s in list_jobs() if s["state"] in LIVE]
    holders = slot_holders()
    for s in rows:
        s["slots"] = holders
    far = 1 << 30
    return sorted(rows, key=lambda s: (s["state"] == "queued", (s.get("queue") or {}).get("place", far),
                                       s.get("created") or 0))


def read_metrics(job_id: str, name: str | None = None) -> list[dict]:
    """Metric points ``{name, step, value, t, attempt}`` in the order written (optionally one name only)."""
    path = job_dir(job_id) / METRICS
    out = []
    for line in path.read_text().splitlines() if path.exists() else ():
        with contextlib.suppress(json.JSONDecodeError):  # a SIGKILL can leave a torn last line
            p = json.loads(line)
            if name is None or p.get("name") == name:
                out.append(p)
    return out


def read_log(job_id: str, n: int = 200) -> list[str]:
    """The last ``n`` lines of the job's ``log.txt``."""
    path = job_dir(job_id) / LOG
    if not path.exists():
        return []
    with open(path, errors="replace") as f:
        return [line.rstrip("\n") for line in deque(f, maxlen=n)]
