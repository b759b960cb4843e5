"""Starting and stopping job processes: create a job's folder, launch ``python -m igds job run <id>`` in
its own session (or submit it to a Ray cluster, :mod:`igds.jobs.ray_target`), resume, cancel (flag, then
SIGTERM, then SIGKILL or ``stop_job``) and wait; or run a job in this process with the same files.

A local job of a heavy kind is queued (:mod:`igds.jobs.queue`) here, in the launcher, before its process starts,
so the queue keeps the order of the ``start_job`` calls whatever the processes' start-up times."""

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

from igds import settings
from igds.executor.config import EXECUTOR_KINDS
from igds.executor.registry import runs_here
from igds.jobs import ray_target
from igds.jobs.context import CANCEL_GRACE_S, EXIT_CANCELLED, EXIT_FAILED, execute
from igds.jobs.folder import (
    CANCEL,
    CHECKPOINTS,
    LOG,
    SPEC,
    STATUS,
    job_dir,
    read_json,
    status_lock,
    write_json,
    write_text_atomic,
)
from igds.jobs.pids import process_start
from igds.jobs.queue import dequeue, enqueue
from igds.jobs.registry import get_job_kind, needs_slot
from igds.jobs.status import RESUMABLE, TERMINAL, job_status, own_process, track_child
from igds.progress import ProgressFn


def run_job_process(job_id: str) -> int:
    """Body of ``python -m igds job run <id>``: run a prepared job here; exit code 0 done, 1 failed, 3 cancelled."""
    st = execute(job_id, get_job_kind, detached=True, needs_slot=needs_slot)
    return {"done": 0, "cancelled": EXIT_CANCELLED}.get(st["state"], EXIT_FAILED)


JOB_TARGETS = EXECUTOR_KINDS  # a job runs here or on the Ray cluster, like the stages


def _resolve_target(kind: str, params: dict, target: str | None, dashboard_address: str | None) -> dict:
    """``{"target": ..., "ray": {...}}`` for a new job: the argument, else the workspace's executor setting."""
    if target is not None and target not in JOB_TARGETS:
        raise ValueError(f"job target {target!r}; use one of {', '.join(JOB_TARGETS)}")
    cfg = None
    if target != "local" and settings.store_path().exists():  # no store yet: no setting, the default (local)
        from igds.executor import executor_config
        from igds.store import ActivationStore

        cfg = executor_config(ActivationStore())
    target = target or (cfg.job_target if cfg else "local")
    if target == "local":
        return {"target": "local"}
    heavy_here = needs_slot(kind, params) and (cfg is None or runs_here(cfg))
    ray = {"dashboard": ray_target.dashboard_of(cfg.address if cfg else None,
                                                dashboard_address or (cfg.dashboard_address if cfg else None)),
           "num_cpus": (cfg.cpus_per_actor if cfg else 1.0) if heavy_here else 0.0,
           "num_gpus": (cfg.gpus_per_actor if cfg else 0.0) if heavy_here else 0.0, "submission_id": None}
    return {"target": "ray", "ray": ray}


def _new_job(kind: str, params: dict, job_id: str | None, where: dict | None = None) -> str:
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
                             "log_tail": [], "error": None, "result": None, **(where or {"target": "local"})})
    return job_id


def _launch(job_id: str) -> None:
    d = job_dir(job_id)
    st = read_json(d / STATUS)
    if st.get("target") == "ray":
        sid = ray_target.submit(job_id, st["ray"], st.get("attempt", 1))
        with status_lock(d):
            st = read_json(d / STATUS)
            st["ray"] = {**st["ray"], "submission_id": sid}
            st.update(updated=time.time())
            write_json(d / STATUS, st)
        return
    spec = read_json(d / SPEC)
    if needs_slot(spec["kind"], spec["params"]):
        enqueue(job_id)  # here, not in the child: the queue keeps the order of the start_job calls
    with open(d / LOG, "ab") as log:
        p = subprocess.Popen([sys.executable, "-u", "-m", "igds", "job", "run", job_id], stdout=log,
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    track_child(p)
    with status_lock(d):  # record the pid unless the child already wrote its own status
        st = read_json(d / STATUS)
        if st["state"] == "queued":
            st.update(pid=p.pid, pid_start=process_start(p.pid), host=socket.gethostname(), detached=True,
                      updated=time.time())
            write_json(d / STATUS, st)


def start_job(kind: str, params: dict | None = None, *, job_id: str | None = None, target: str | None = None,
              dashboard_address: str | None = None) -> str:
    """Start a job in a separate process (or on a Ray cluster) and return its id at once.

    A heavy kind's local job waits in the local queue for a slot (its status reads ``queued`` with
    ``queue.place``) before it runs; see :mod:`igds.jobs.queue`.

    Args:
        kind: A registered job kind.
        params: JSON-able parameters passed to the kind's function.
        job_id: Explicit id; if that job exists it must be resumable with the same kind and params, and is resumed.
        target: ``local`` (a process on this machine) or ``ray`` (submitted through the Ray Jobs API, see
            :mod:`igds.jobs.ray_target`); None reads the workspace's executor setting (``job_target``).
        dashboard_address: the Ray dashboard for ``target="ray"``; None reads the executor setting.

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
    where = _resolve_target(kind, params, target, dashboard_address)
    job_id = _new_job(kind, params, job_id, where)
    try:
        _launch(job_id)
    except Exception as e:  # e.g. the cluster refused the submission: the job folder says so
        with status_lock(job_dir(job_id)):
            st = read_json(job_dir(job_id) / STATUS)
            st.update(state="failed", finished=time.time(), error={"type": type(e).__name__, "message": str(e)})
            write_json(job_dir(job_id) / STATUS, st)
        raise
    return job_id


def resume_job(job_id: str, *, force: bool = False, grace_s: float = CANCEL_GRACE_S,
               say: Callable[[str], None] | None = None) -> str:
    """Relaunch a dead, failed or cancelled job in its folder (attempt + 1); its function resumes from checkpoints.

    A job whose process still runs (``running``, ``queued`` or ``stalled``: stopped or swapping, its heartbeat
    stale) is refused, since two processes would write the same status and checkpoints. With ``force`` its
    process group is stopped first (SIGTERM, then SIGKILL after ``grace_s``), which ``say`` reports.

    Raises:
        ValueError: the job is not resumable (its process lives and ``force`` is off, it is done, or another
            resume was first); RuntimeError: ``force`` could not stop its process.
    """
    d = job_dir(job_id)
    st = job_status(job_id)
    if force and st["state"] not in TERMINAL:
        _stop_job_process(st, grace_s, say or (lambda line: None))
        st = job_status(job_id)
    if st["state"] == "stalled":
        raise ValueError(f"job {job_id!r} is stalled: its process {st['pid']} is alive but has not reported for "
                         f"{st['stalled_s']:.0f} s (stopped or swapping?). It may go on: wait for it, cancel it, or "
                         f"resume with --force to stop its process first")
    if st["state"] not in RESUMABLE:
        raise ValueError(f"job {job_id!r} is {st['state']}; only {sorted(RESUMABLE)} jobs can be resumed"
                         + ("" if st["state"] == "done" else " (--force stops its process first)"))
    with status_lock(d):
        (d / CANCEL).unlink(missing_ok=True)
        st = read_json(d / STATUS)
        if st["state"] not in RESUMABLE:  # re-checked under the lock: a second resume must not launch a second copy
            raise ValueError(f"job {job_id!r} is {st['state']} (resumed by another process meanwhile)")
        st.update(state="queued", attempt=st.get("attempt", 1) + 1, pid=None, pid_start=None, error=None,
                  result=None, finished=None, heartbeat=None, updated=time.time(), stage=None)
        if st.get("ray"):  # the previous attempt's Ray job has ended: it must not make this one read as dead
            st["ray"] = {**st["ray"], "submission_id": None}
        write_json(d / STATUS, st)
    _launch(job_id)
    return job_id


def _stop_job_process(st: dict, grace_s: float, say: Callable[[str], None]) -> None:
    """Stop a live job's process group for ``resume --force``: SIGTERM (and SIGCONT, so that a stopped process
    can act on it), then SIGKILL after ``grace_s``; returns once the process is gone."""
    job_id, pid, state = st["job_id"], st.get("pid"), st["state"]
    if st.get("target") == "ray":
        raise ValueError(f"job {job_id!r} is {state} on Ray: cancel it (igds job cancel), then resume it")
    if not pid:
        raise ValueError(f"job {job_id!r} is {state} and its process is still starting; try again in a moment")
    alive = own_process(st)
    if alive is None or not st.get("detached") or pid == os.getpid():
        raise ValueError(f"job {job_id!r} is {state} in process {pid} on {st.get('host')}, which resume --force "
                         "does not stop (another host, or a foreground run): stop that process, then resume")
    if not alive:
        return
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
        say(f"{job_id}: sending {sig.name} to process group {pid}")
        _log_line(job_id, f"resume --force: {sig.name} to process group {pid}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)  # the job runs in its own session, so its pgid is its pid
            if sig == signal.SIGTERM:
                os.killpg(pid, signal.SIGCONT)
        deadline = time.monotonic() + wait_s
        while own_process(st) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not own_process(st):
            say(f"{job_id}: process {pid} stopped ({sig.name})")
            return
    raise RuntimeError(f"job {job_id!r}: process {pid} still runs after SIGKILL (uninterruptible I/O?); "
                       "not resuming while it lives")


def _log_line(job_id: str, line: str) -> None:
    with open(job_dir(job_id) / LOG, "a") as f:
        f.write(f"{time.strftime('%H:%M:%S')} {line}\n")


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
    write_text_atomic(d / CANCEL, str(grace_s))
    with status_lock(d):  # a job that has not started yet (waiting for a slot, pending on Ray) ends here and now
        st = read_json(d / STATUS)
        if st["state"] == "queued":
            st.update(state="cancelled", finished=time.time(), updated=time.time())
            write_json(d / STATUS, st)
    if st["state"] == "cancelled":
        dequeue(job_id)  # its place goes to the next job at once
        if st.get("target") == "ray":
            ray_target.stop(st["ray"])
        return job_status(job_id)
    if wait:
        with contextlib.suppress(TimeoutError):
            return wait_job(job_id, timeout=grace_s)
        pid = st.get("pid")
        if st.get("target") == "ray":  # Ray sends SIGTERM, then SIGKILL, to the entrypoint's process group
            ray_target.stop(st["ray"])
            with contextlib.suppress(TimeoutError):
                return wait_job(job_id, timeout=15.0)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if st.get("target") != "ray" and st.get("detached") and pid and pid != os.getpid() and own_process(st):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, sig)  # the job runs in its own session, so its pgid is its pid
                    if sig == signal.SIGTERM:
                        os.killpg(pid, signal.SIGCONT)  # a stopped (stalled) job acts on SIGTERM only once continued
            with contextlib.suppress(TimeoutError):
                return wait_job(job_id, timeout=5.0)
    st = job_status(job_id)
    if st["state"] == "dead":
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

    It bypasses the local queue: it takes no slot and keeps the caller's threads (the caller chose to run now).

    Returns:
        The final status; a failure is recorded in it (``state == "failed"``), not raised.
    """
    get_job_kind(kind)
    job_id = _new_job(kind, params or {}, job_id)
    execute(job_id, get_job_kind, detached=False, echo=progress)
    return job_status(job_id)
