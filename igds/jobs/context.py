"""The job side of background jobs: the :class:`JobContext` a job function gets, and :func:`execute`, the
loop that runs one prepared job in this process and records how it ended in the job's folder."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from igds.jobs.folder import (
    CANCEL,
    CHECKPOINTS,
    LOG,
    METRICS,
    SPEC,
    STATUS,
    job_dir,
    read_json,
    status_lock,
    write_json,
)
from igds.jobs.pids import process_start
from igds.jobs.queue import acquire_slot, apply_slot
from igds.progress import ProgressFn, StagedProgress, begin_stage, format_seconds, report_plan

HEARTBEAT_S = 2.0  # how often a live job rewrites its heartbeat
PROGRESS_EVERY_S = 0.5  # throttle for persisting progress and log lines
CANCEL_GRACE_S = 10.0  # after a cancel request, how long a job may take to notice before SIGTERM
LOG_TAIL = 50
EXIT_FAILED, EXIT_CANCELLED = 1, 3


class JobCancelled(BaseException):
    """Raised inside a job on SIGTERM; a BaseException so that ``except Exception`` in job code lets it pass."""


class JobNotQueued(RuntimeError):
    """A job process found its job no longer queued (run twice, or cancelled before it started)."""

    def __init__(self, job_id: str, status: dict):
        super().__init__(f"job {job_id} is {status['state']}, not queued; use resume_job")
        self.status = status


class JobContext:
    """What a job function gets: progress, log, metric, ``checkpoint_dir``, ``should_stop()`` and ``job_id``.

    ``progress`` is the library callback ``progress(done, total, message)`` with a stage notion
    (:class:`igds.progress.StagedProgress`): a kind that calls ``begin_stage(ctx.progress, name, i, n)`` names its
    stages; otherwise a message's text before ``:`` (``extract: 12/40 examples``) names the stage (see
    :func:`_stage_of_message`). The status
    holds ``stage {name, index, of, started, declared}`` and ``progress {done, total, message, eta_seconds, at}``,
    where ``eta_seconds`` is the time left *in the current stage* from the rate measured since the stage (or its
    step, when ``total`` changes) began, and ``at`` the time of the report; the log gets a line when each stage
    starts and one when it ends, with its duration. A kind that knows its later stages reports them with
    :func:`igds.progress.report_plan`: the status then holds ``plan {later: [[name, seconds], ...], at}``, from which
    :func:`igds.jobs.status.job_timing` gives the time left in all. An ended job keeps no estimate.
    """

    def __init__(self, job_id: str, *, detached: bool, echo: ProgressFn | None = None, slot: dict | None = None):
        self.job_id = job_id
        self.dir = job_dir(job_id)
        self.checkpoint_dir = self.dir / CHECKPOINTS
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        self._echo = echo
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self._rate_base: tuple[float, int, int] | None = None  # (time, done, total) of this step's first report
        self.progress = StagedProgress(self._progress, self._stage, self._plan)
        self._sigterm_sent = False
        self._superseded_at: float | None = None  # when a later attempt was found owning the folder
        with status_lock(self.dir):
            st = read_json(self.dir / STATUS)
            if st["state"] != "queued":  # a second `job run` of the same folder would corrupt it
                raise JobNotQueued(job_id, st)
            now = time.time()
            st.update(state="running", pid=os.getpid(), pid_start=process_start(os.getpid()),
                      host=socket.gethostname(), detached=detached, slot=slot, started=now, updated=now,
                      heartbeat=now, finished=None, error=None, result=None, stage=None, plan=None)
            if st.get("progress"):  # an earlier attempt's last report: kept for reference, with no estimate
                st["progress"] = {**st["progress"], "eta_seconds": None}
            st.setdefault("log_tail", [])
            self.status = st
            write_json(self.dir / STATUS, st)

    def _progress(self, done: int, total: int, message: str = "") -> None:
        """The library progress callback; persisted at most every 0.5 s and always on completion."""
        prefix = _stage_of_message(message)
        cur = self.status.get("stage")
        if prefix and not (cur and cur.get("declared")) and prefix != (cur or {}).get("name"):
            self._enter_stage(prefix, 0, 0, declared=False)  # an undeclared stage, named by the message
        now = time.time()
        with self._lock:
            base = self._rate_base
            first = base is None or base[2] != total or done < base[1]
            if first:  # a new stage or step restarts the rate estimate
                base = self._rate_base = (now, done, total)
            rate = (done - base[1]) / (now - base[0]) if now > base[0] else 0.0
            eta = (total - done) / rate if rate > 0 and total else (0.0 if total and done >= total else None)
            self.status["progress"] = {"done": done, "total": total, "message": message, "eta_seconds": eta,
                                       "at": now}
        if self._echo is not None:
            self._echo(done, total, message)
        self._flush(force=first or (bool(total) and done >= total))  # a stage's or step's first report shows

    def _stage(self, name: str, index: int = 0, of: int = 0) -> None:
        """``ctx.progress.stage``: stage ``name`` (``index`` of ``of``) begins; the one before it has ended."""
        self._enter_stage(name, index, of, declared=True)
        begin_stage(self._echo, name, index, of)

    def _plan(self, later: list[tuple[str, float | None]]) -> None:
        """``ctx.progress.plan``: the stages after the current one with their estimated seconds."""
        with self._lock:
            self.status["plan"] = {"later": [[n, s] for n, s in later], "at": time.time()}
        report_plan(self._echo, later)
        self._flush(force=True)

    def _enter_stage(self, name: str, index: int, of: int, *, declared: bool) -> None:
        now = time.time()
        self._end_stage("done in", now)
        with self._lock:
            self._rate_base = None
            self.status["stage"] = {"name": name, "index": index, "of": of, "started": now, "declared": declared}
            # the last stage's counts and message are not this stage's: nothing is claimed before it reports
            self.status["progress"] = {"done": 0, "total": 0, "message": name, "eta_seconds": None, "at": now}
        self.log(f"{_stage_label(self.status['stage'])}: started")
        self._flush(force=True)

    def _end_stage(self, how: str, now: float) -> None:
        with self._lock:
            cur = self.status.get("stage")
            if not cur or cur.get("ended") is not None:
                return
            cur["ended"] = now
        self.log(f"{_stage_label(cur)}: {how} {format_seconds(now - cur['started'])}")

    def log(self, line: str) -> None:
        """Append a line to ``log.txt`` and to the recent lines shown in the status."""
        stamped = f"{time.strftime('%H:%M:%S')} {line}"
        with self._lock, open(self.dir / LOG, "a") as f:
            f.write(stamped + "\n")
            self.status["log_tail"] = [*self.status.get("log_tail", []), stamped][-LOG_TAIL:]
        self._flush()

    def metric(self, name: str, step: int, value: float) -> None:
        """Append one metric point (e.g. a training loss) to ``metrics.jsonl``."""
        point = {"name": name, "step": step, "value": float(value), "t": time.time(),
                 "attempt": self.status.get("attempt", 1)}
        with self._lock, open(self.dir / METRICS, "a") as f:
            f.write(json.dumps(point) + "\n")

    def should_stop(self) -> bool:
        """True once the job was asked to cancel (or was superseded); long loops should check it and return early."""
        return self._superseded_at is not None or (self.dir / CANCEL).exists()

    def _flush(self, force: bool = False, **updates: Any) -> None:
        # the write stays under the thread lock: a heartbeat's older snapshot must never land after the final state
        with self._lock:
            now = time.time()
            if not force and now - self._last_flush < PROGRESS_EVERY_S:
                return
            self._last_flush = now
            self.status.update(updates, updated=now)
            with status_lock(self.dir):
                # a later attempt was started over this one (its host could not see that we live): leave its
                # status alone and stop; resume_job refuses while a local job's process lives
                if read_json(self.dir / STATUS).get("attempt") != self.status.get("attempt"):
                    self._superseded_at = self._superseded_at or now
                    return
                write_json(self.dir / STATUS, self.status)

    def _heartbeat(self, stop: threading.Event) -> None:
        last = time.time()
        while not stop.wait(PROGRESS_EVERY_S):  # ticks faster than the heartbeat so a cancel escalates on time
            if time.time() - last >= HEARTBEAT_S:
                last = time.time()
                self._flush(force=True, heartbeat=last)
            if self.status.get("detached") and self.should_stop():
                self._watchdog()

    def _watchdog(self) -> None:
        # the job process enforces its own cancel grace period, so cancel_job() never has to block or outlive it
        if self._superseded_at is not None:  # as if cancelled then, with the default grace period
            waited, grace = time.time() - self._superseded_at, CANCEL_GRACE_S
        else:
            try:
                flag = self.dir / CANCEL
                waited, grace = time.time() - flag.stat().st_mtime, float(flag.read_text() or CANCEL_GRACE_S)
            except (OSError, ValueError):
                return
        if waited > 2 * grace + 5:  # stuck in native code and deaf to SIGTERM: give up hard
            self._finish("cancelled", error={"type": "JobCancelled", "message": "killed after cancel grace"})
            os._exit(EXIT_CANCELLED)
        if waited > grace and not self._sigterm_sent:
            self._sigterm_sent = True
            os.kill(os.getpid(), signal.SIGTERM)

    def _finish(self, state: str, *, result: Any = None, error: dict | None = None) -> None:
        now = time.time()
        self._end_stage({"done": "done in", "cancelled": "cancelled after"}.get(state, f"{state} after"), now)
        with self._lock:
            if self.status.get("progress"):  # an ended job has no time left to estimate
                self.status["progress"] = {**self.status["progress"], "eta_seconds": None}
        self._flush(force=True, state=state, result=result, error=error, finished=now, heartbeat=now)


def _stage_of_message(message: str) -> str | None:
    """The stage a message names: its text before ``:`` (``train SAE: step 9/292`` → ``train SAE``), if short and
    free of digits (a counter there would start a new stage on every report)."""
    head, sep, _ = message.partition(":")
    head = head.strip()
    return head if sep and head and len(head) <= 40 and not any(c.isdigit() for c in head) else None


def _stage_label(stage: dict) -> str:
    """``stage 2/5 extraction`` for a counted stage, else its name."""
    return f"stage {stage['index']}/{stage['of']} {stage['name']}" if stage.get("of") else stage["name"]


def _error_info(e: BaseException) -> dict:
    tb = traceback.format_exception(e)
    return {"type": type(e).__name__, "message": str(e), "traceback": "".join(tb)[-4000:]}


def _on_sigterm(signum, frame):
    raise JobCancelled("terminated by SIGTERM")


def _stop_waiting(d) -> bool:
    # a queued job gives up its place once cancelled: the flag, or cancel_job() already recorded the state
    if (d / CANCEL).exists():
        return True
    try:
        return read_json(d / STATUS)["state"] != "queued"
    except (OSError, ValueError, KeyError):
        return True


def _cancelled_in_queue(job_id: str) -> dict:
    d = job_dir(job_id)
    with status_lock(d):
        st = read_json(d / STATUS)
        if st["state"] == "queued":  # only the flag was set: record the cancel here
            st.update(state="cancelled", finished=time.time(), updated=time.time())
            write_json(d / STATUS, st)
    return st


def execute(job_id: str, resolve: Callable[[str], Callable], *, detached: bool,
            echo: ProgressFn | None = None, needs_slot: Callable[[str, dict], bool] | None = None) -> dict:
    """Run a prepared (queued) job in this process, recording its end state; returns the final status.

    With ``needs_slot`` (kind, params → bool; the job process passes the registry's), a local job that needs one
    first waits for a slot of the local queue (:mod:`igds.jobs.queue`) and sets its threads and GPUs to it; an
    inline run (no ``needs_slot``) and a job submitted to Ray bypass the queue.
    """
    d = job_dir(job_id)
    spec = read_json(d / SPEC)
    lease = None
    if needs_slot is not None and read_json(d / STATUS).get("target", "local") == "local" \
            and needs_slot(spec["kind"], spec["params"]):
        lease = acquire_slot(job_id, lambda: _stop_waiting(d))  # reads the setting while it waits
        if lease is None:
            return _cancelled_in_queue(job_id)
        apply_slot(lease)
    try:
        ctx = JobContext(job_id, detached=detached, echo=echo, slot=lease.info() if lease else None)
    except JobNotQueued as e:
        if lease is not None:
            lease.release()
        if e.status["state"] == "cancelled":  # cancelled after it got its slot, before it started
            return e.status
        raise
    if lease is not None:
        ctx.log(f"slot {lease.index}: {lease.threads} thread(s)" + (f", GPUs {lease.gpus}" if lease.gpus else ""))
    stop = threading.Event()
    beat = threading.Thread(target=ctx._heartbeat, args=(stop,), daemon=True, name=f"heartbeat-{job_id}")
    beat.start()
    if detached and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        result = resolve(spec["kind"])(dict(spec["params"]), ctx)
        ctx._finish("cancelled" if ctx.should_stop() else "done", result=result)
    except JobCancelled as e:
        ctx._finish("cancelled", error=_error_info(e))
    except KeyboardInterrupt as e:
        ctx._finish("cancelled", error=_error_info(e))
        raise
    except Exception as e:
        ctx._finish("failed", error=_error_info(e))
        traceback.print_exc()  # into log.txt for a detached job
    finally:
        stop.set()
        if lease is not None:
            lease.release()
    return dict(ctx.status)
