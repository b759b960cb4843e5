"""Background jobs: long work runs in its own process and reports through files in its job folder.

A job folder ``<home>/jobs/<job_id>/`` holds ``spec.json`` (kind, params), ``status.json`` (state, progress,
heartbeat, result or error; rewritten atomically), ``metrics.jsonl`` (one point per line), ``log.txt`` (the
process's stdout and stderr plus :meth:`JobContext.log` lines), ``checkpoint/`` (kept across resumes) and a
``cancel`` flag file. Files, not database rows, carry the state: a job process must never open the DuckDB
store for writing, and any reader (dashboard, CLI, a second browser tab) sees every job by reading the folder.

Job kinds are plain functions ``fn(params, ctx) -> dict`` registered with :func:`register_job_kind`; kinds
defined elsewhere live in ``igds.jobs.kinds``, imported on first lookup.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from igds.jobs.context import (
    CANCEL,
    CANCEL_GRACE_S,
    CHECKPOINTS,
    EXIT_CANCELLED,
    EXIT_FAILED,
    LOG,
    METRICS,
    SPEC,
    STATUS,
    JobCancelled,
    JobContext,
    execute,
    job_dir,
    jobs_dir,
    read_json,
    status_lock,
    write_json,
)
from igds.progress import ProgressFn

__all__ = [
    "CANCEL_GRACE_S", "DEAD_AFTER_S", "EXIT_CANCELLED", "EXIT_FAILED", "RESUMABLE", "TERMINAL", "JobCancelled",
    "JobContext", "cancel_job", "get_job_kind", "job_dir", "job_kinds", "job_status", "jobs_dir", "list_jobs",
    "SPEC", "job_spec", "read_log", "read_metrics", "register_job_kind", "resume_job", "run_job_inline",
    "run_job_process", "start_job", "wait_job",
]

TERMINAL = frozenset({"done", "failed", "cancelled", "dead"})
RESUMABLE = frozenset({"dead", "failed", "cancelled"})
DEAD_AFTER_S = 15.0  # a running job whose heartbeat is older than this is dead

JobFn = Callable[[dict, "JobContext"], dict]
_KINDS: dict[str, JobFn] = {}
_children: dict[int, subprocess.Popen] = {}  # processes this process launched, kept so they can be reaped
_kinds_imported = False


def register_job_kind(name: str, fn: JobFn) -> None:
    """Register a job kind.

    Args:
        name: Kind name used in ``start_job`` and job ids (letters, digits, ``_``).
        fn: ``fn(params, ctx) -> dict``; the returned dict (JSON-able) is stored as the job's result.
    """
    _KINDS[name] = fn


def job_kinds() -> list[str]:
    """Names of all registered job kinds (after importing ``igds.jobs.kinds`` if it exists)."""
    _import_kinds()
    return sorted(_KINDS)


def get_job_kind(name: str) -> JobFn:
    """The function of a registered kind; raises ``ValueError`` for an unknown one."""
    _import_kinds()
    if name not in _KINDS:
        raise ValueError(f"unknown job kind {name!r}; known: {sorted(_KINDS)}")
    return _KINDS[name]


def _import_kinds() -> None:
    # real kinds pull in torch and friends, so they register lazily, on first lookup, from their own module
    global _kinds_imported
    if not _kinds_imported:
        _kinds_imported = True
        if importlib.util.find_spec("igds.jobs.kinds") is not None:
            importlib.import_module("igds.jobs.kinds")


def _pid_alive(pid: int | None) -> bool:
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
    if local and st.get("pid") and not _pid_alive(st["pid"]):
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


def run_job_process(job_id: str) -> int:
    """Body of ``python -m igds job run <id>``: run a prepared job here; exit code 0 done, 1 failed, 3 cancelled."""
    st = execute(job_id, get_job_kind, detached=True)
    return {"done": 0, "cancelled": EXIT_CANCELLED}.get(st["state"], EXIT_FAILED)


def _new_job(kind: str, params: dict, job_id: str | None) -> str:
    params = json.loads(json.dumps(params))  # fail early on params that a child process could not receive
    job_id = job_id or f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    d = job_dir(job_id)
    d.parent.mkdir(parents=True, exist_ok=True)
    d.mkdir()  # exist_ok=False: two starters racing for one id cannot share a folder
    (d / CHECKPOINTS).mkdir()
    now = time.time()
    write_json(d / SPEC, {"job_id": job_id, "kind": kind, "params": params, "created": now})
    write_json(d / STATUS, {"job_id": job_id, "kind": kind, "state": "queued", "attempt": 1, "created": now,
                             "updated": now, "pid": None, "host": socket.gethostname(), "progress": None,
                             "log_tail": [], "error": None, "result": None})
    return job_id


def _launch(job_id: str) -> None:
    d = job_dir(job_id)
    with open(d / LOG, "ab") as log:
        p = subprocess.Popen([sys.executable, "-u", "-m", "igds", "job", "run", job_id], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    _children[p.pid] = p
    with status_lock(d):  # record the pid unless the child already wrote its own status
        st = read_json(d / STATUS)
        if st["state"] == "queued":
            st.update(pid=p.pid, host=socket.gethostname(), detached=True, updated=time.time())
            write_json(d / STATUS, st)


def start_job(kind: str, params: dict | None = None, *, job_id: str | None = None) -> str:
    """Start a job in a separate process and return its id at once.

    Args:
        kind: A registered job kind.
        params: JSON-able parameters passed to the kind's function.
        job_id: Explicit id; if that job exists it must be resumable with the same kind and params, and is resumed.

    Returns:
        The job id, ``<kind>-<yyyymmdd-hhmmss>-<4 hex>`` unless given.
    """
    get_job_kind(kind)
    params = json.loads(json.dumps(params or {}))  # compare as a child would see them
    if job_id is not None and (job_dir(job_id) / SPEC).exists():
        spec, st = read_json(job_dir(job_id) / SPEC), job_status(job_id)
        if st["state"] in RESUMABLE and spec["kind"] == kind and spec["params"] == params:
            return resume_job(job_id)
        raise ValueError(f"job {job_id!r} exists ({st['state']}, kind {spec['kind']}) and cannot be resumed as given")
    job_id = _new_job(kind, params, job_id)
    _launch(job_id)
    return job_id


def resume_job(job_id: str) -> str:
    """Relaunch a dead, failed or cancelled job in its folder (attempt + 1); its function resumes from checkpoints."""
    d = job_dir(job_id)
    st = job_status(job_id)
    if st["state"] not in RESUMABLE:
        raise ValueError(f"job {job_id!r} is {st['state']}; only {sorted(RESUMABLE)} jobs can be resumed")
    with status_lock(d):
        (d / CANCEL).unlink(missing_ok=True)
        st = read_json(d / STATUS)
        st.update(state="queued", attempt=st.get("attempt", 1) + 1, pid=None, error=None, result=None,
                  finished=None, heartbeat=None, updated=time.time())
        write_json(d / STATUS, st)
    _launch(job_id)
    return job_id


def cancel_job(job_id: str, *, grace_s: float = CANCEL_GRACE_S, wait: bool = False) -> dict:
    """Ask a job to stop: sets the flag ``should_stop()`` sees; SIGTERM follows after ``grace_s`` if needed.

    The job process escalates by itself, so the caller need not wait. With ``wait=True`` this call also
    waits, sends SIGTERM to the job's process group after the grace period, and SIGKILL if that fails.

    Returns:
        The job's status after the request (final if ``wait``).
    """
    d = job_dir(job_id)
    st = job_status(job_id)
    if st["state"] in TERMINAL:
        return st
    (d / CANCEL).write_text(str(grace_s))
    if wait:
        with contextlib.suppress(TimeoutError):
            return wait_job(job_id, timeout=grace_s)
        pid = st.get("pid")
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if st.get("detached") and pid and pid != os.getpid() and _pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)  # the job runs in its own session, so its pgid is its pid
            with contextlib.suppress(TimeoutError):
                return wait_job(job_id, timeout=5.0)
    st = job_status(job_id)
    if st["state"] == "dead" or (st["state"] == "queued" and not _pid_alive(st.get("pid"))):
        with status_lock(d):  # nothing is left to notice the flag: record the cancel ourselves
            st = {**read_json(d / STATUS), "state": "cancelled", "finished": time.time()}
            write_json(d / STATUS, st)
    return job_status(job_id)


def wait_job(job_id: str, timeout: float | None = None, *, poll_s: float = 0.2,
             on_status: Callable[[dict], None] | None = None) -> dict:
    """Block until the job reaches a terminal state; raises ``TimeoutError`` after ``timeout`` seconds.

    Args:
        job_id: The job.
        timeout: Seconds to wait; None waits forever.
        poll_s: Seconds between status reads.
        on_status: Called with every status read (the CLI drives a progress bar with it).
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        st = job_status(job_id)
        if on_status is not None:
            on_status(st)
        if st["state"] in TERMINAL:
            return st
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {st['state']} after {timeout} s")
        time.sleep(poll_s)


def run_job_inline(kind: str, params: dict | None = None, *, job_id: str | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Run a job in this process (tests, CLI foreground mode), writing the same folder and files.

    Returns:
        The final status; a failure is recorded in it (``state == "failed"``), not raised.
    """
    get_job_kind(kind)
    job_id = _new_job(kind, params or {}, job_id)
    execute(job_id, get_job_kind, detached=False, echo=progress)
    return job_status(job_id)


def _count(params: dict, ctx: JobContext) -> dict:
    """Toy kind: count to ``steps`` sleeping ``sleep`` s per step, checkpointing each step; ``fail_at`` raises."""
    steps, sleep = int(params.get("steps", 10)), float(params.get("sleep", 0.1))
    ckpt = ctx.checkpoint_dir / "step.json"
    step = read_json(ckpt)["step"] if ckpt.exists() else 0
    if step:
        ctx.log(f"resuming after step {step}")
    while step < steps:
        if ctx.should_stop():
            ctx.log(f"cancelled after step {step}")
            return {"count": step, "stopped": True}
        time.sleep(sleep)
        step += 1
        if params.get("fail_at") == step:
            raise RuntimeError(f"planted failure at step {step}")
        ctx.metric("step", step, step)
        write_json(ckpt, {"step": step})
        ctx.progress(step, steps, f"count: {step}/{steps}")
    return {"count": step}


register_job_kind("count", _count)
