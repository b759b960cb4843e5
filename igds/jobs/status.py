"""Reading jobs from their folders, from any process: status (a running job whose process is gone reads
as ``dead``), spec, the list of jobs, metrics and log lines."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import time
from collections import deque
from pathlib import Path

from igds.jobs.folder import LOG, METRICS, SPEC, STATUS, job_dir, jobs_dir, read_json, status_lock, write_json

TERMINAL = frozenset({"done", "failed", "cancelled", "dead"})
RESUMABLE = frozenset({"dead", "failed", "cancelled"})
DEAD_AFTER_S = 15.0  # a running job whose heartbeat is older than this is dead

_children: dict[int, subprocess.Popen] = {}  # processes this process launched, kept so they can be reaped


def track_child(proc: subprocess.Popen) -> None:
    """Remember a job process this process launched, so that :func:`pid_alive` can reap it once it exits."""
    _children[proc.pid] = proc


def pid_alive(pid: int | None) -> bool:
    """Whether a process runs under ``pid`` (a zombie, or a child of ours that exited, does not)."""
    if not pid:
        return False
    child = _children.get(pid)
    if child is not None and child.poll() is not None:  # poll() also reaps our own exited children
        _children.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, parent has not reaped it yet) still answers kill(pid, 0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _is_dead(st: dict, now: float) -> bool:
    if st.get("state") not in ("queued", "running"):
        return False
    local = st.get("host") == socket.gethostname()
    if local and st.get("pid") and not pid_alive(st["pid"]):
        return True
    # a queued job has no heartbeat yet (the process is still importing); only its pid says anything
    hb = st.get("heartbeat")
    return st["state"] == "running" and hb is not None and now - hb > DEAD_AFTER_S


def job_status(job_id: str) -> dict:
    """Current status of a job, with ``dir`` added; a running job whose process is gone is marked ``dead``.

    Returns:
        The ``status.json`` dict: ``job_id, kind, state, pid, attempt, created, started, updated, finished,
        heartbeat, progress {done, total, message, eta_seconds}, log_tail, error, result`` (times are epoch s).
    """
    d = job_dir(job_id)
    if not (d / STATUS).exists():
        raise FileNotFoundError(f"no job {job_id!r} in {jobs_dir()}")
    st = read_json(d / STATUS)
    if _is_dead(st, time.time()):
        with status_lock(d):
            st = read_json(d / STATUS)
            now = time.time()
            if _is_dead(st, now):  # re-checked under the lock: the job may have finished meanwhile
                st.update(state="dead", updated=now, finished=now)
                write_json(d / STATUS, st)
    return {**st, "dir": str(d)}


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
