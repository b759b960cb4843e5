"""Starting and stopping job processes: create a job's folder, launch ``python -m igds job run <id>`` in
its own session, resume, cancel (flag, then SIGTERM, then SIGKILL) and wait; or run a job in this
process with the same files."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable

from igds.jobs.context import CANCEL_GRACE_S, EXIT_CANCELLED, EXIT_FAILED, execute
from igds.jobs.folder import CANCEL, CHECKPOINTS, LOG, SPEC, STATUS, job_dir, read_json, status_lock, write_json
from igds.jobs.registry import get_job_kind
from igds.jobs.status import RESUMABLE, TERMINAL, job_status, pid_alive, track_child
from igds.progress import ProgressFn


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
    track_child(p)
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
            if st.get("detached") and pid and pid != os.getpid() and pid_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)  # the job runs in its own session, so its pgid is its pid
            with contextlib.suppress(TimeoutError):
                return wait_job(job_id, timeout=5.0)
    st = job_status(job_id)
    if st["state"] == "dead" or (st["state"] == "queued" and not pid_alive(st.get("pid"))):
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
