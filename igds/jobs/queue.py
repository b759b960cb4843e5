"""The local job queue: heavy jobs on one machine wait in FIFO order for a resource slot.

Two model jobs started together would each take every core (on 2 cores about 10x slower than one after the
other), so a job of a heavy kind (one that runs a model: bootstrap, extract, intervene, select, finetune,
evaluate, experiment, highlights; see :func:`igds.jobs.registry.needs_slot`) first queues for a *slot*: a
number of CPU threads and, optionally, GPU ids. Light jobs (the toy ``count``) never queue.

Everything lives in files under ``<home>/jobs/.queue/``, because jobs are separate processes and may outlive
the dashboard that started them (no in-memory scheduler):

- ``config.json``: the queue setting (:class:`QueueConfig`; default one slot with every CPU thread);
- ``tickets/<seq>.<job_id>``: one ticket per waiting job; ``seq`` comes from a counter (``seq``, rewritten
  atomically) taken under ``lock`` (``fcntl.flock``), so the tickets sort in the order the jobs were started (FIFO);
- ``slots/<i>.lock``: a job *holds* slot ``i`` by holding an exclusive ``flock`` on this file for its whole run;
  the kernel drops the lock when the holder exits or is killed, so a dead holder never blocks the queue;
- ``slots/<i>.json``: who holds slot ``i`` (shown by the dashboard; a stale one is ignored by its pid and the
  pid's start time).

The job process (not its launcher) waits: only the job at the head of the queue tries the slots; once it holds
one it removes its ticket, sets its torch threads (``OMP_NUM_THREADS``/``MKL_NUM_THREADS``, and
``torch.set_num_threads`` if torch is loaded) and ``CUDA_VISIBLE_DEVICES`` to the slot, and only then runs its
kind. A waiting job re-reads ``config.json`` at every look, so a setting saved while it waits applies to it:
raise the slots from 1 to 2 and the head of the line starts at once in the new slot, with the new threads. A job
that already runs keeps its slot and threads until it ends (lowering the slots never stops one, but no new job
starts while as many jobs as the setting allows still hold slots).

A ticket whose job is no longer queued (cancelled, or its process died) is dropped by whoever reads the queue
next, so a dead waiter never blocks the ones behind it. Cancelling a queued job removes its ticket at once
(:func:`igds.jobs.process.cancel_job`). Jobs run in the caller's process (``run_job_inline``) and jobs submitted
to a Ray cluster bypass this queue: the caller chose to run in the foreground, and a cluster schedules its own
resources (``entrypoint_num_cpus``/``_gpus``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from igds.config import ConfigBase
from igds.jobs.folder import STATUS, jobs_dir, read_json, write_json, write_text_atomic
from igds.jobs.pids import process_start, same_process

QUEUE_DIR = ".queue"
LAUNCH_GRACE_S = 60.0  # a ticket whose job has no pid yet (its launcher is starting it) counts this long
POLL_S = 0.2  # how often a waiting job looks at the queue


@dataclass(frozen=True, kw_only=True)
class QueueConfig(ConfigBase):
    """The local queue's slots (the workspace's ``<home>/jobs/.queue/config.json``; see :func:`save_queue_config`).

    Args:
        slots: heavy jobs that may run at once on this machine.
        threads_per_slot: CPU threads (torch intra-op threads) each slot's job uses; 0 divides this machine's
            cores evenly over the slots.
        gpu_ids: per slot, the ``CUDA_VISIBLE_DEVICES`` value its job gets (e.g. ``["0", "1"]`` for two slots of
            one GPU each); empty leaves the GPUs alone.
    """

    slots: int = field(default=1, metadata={"help": "heavy jobs that run at once on this machine"})
    threads_per_slot: int = field(default=0, metadata={"help": "CPU threads per slot; 0 = cores / slots"})
    gpu_ids: tuple[str, ...] = field(default=(), metadata={"help": "CUDA_VISIBLE_DEVICES per slot (empty: unset)"})

    def __post_init__(self):
        if self.slots < 1:
            raise ValueError(f"the job queue needs at least one slot, got {self.slots}")
        if self.threads_per_slot < 0:
            raise ValueError(f"threads_per_slot must be >= 0 (0 = cores / slots), got {self.threads_per_slot}")
        if self.gpu_ids and len(self.gpu_ids) != self.slots:
            raise ValueError(f"gpu_ids gives {len(self.gpu_ids)} entries for {self.slots} slot(s); give one per slot")
        for g in self.gpu_ids:
            if not all(part.strip().isdigit() for part in str(g).split(",")):
                raise ValueError(f"gpu_ids entry {g!r} is not a comma-separated list of GPU indices")

    def threads(self) -> int:
        """Threads each slot's job uses."""
        return self.threads_per_slot or max(1, len(os.sched_getaffinity(0)) // self.slots)


def _root() -> Path:
    return jobs_dir() / QUEUE_DIR


def queue_config() -> QueueConfig:
    """The workspace's queue setting (defaults when none was saved)."""
    path = _root() / "config.json"
    return QueueConfig.from_dict(read_json(path)) if path.exists() else QueueConfig()


def save_queue_config(cfg: QueueConfig) -> None:
    """Make ``cfg`` the queue setting of this workspace; jobs waiting now and later use it when they start (jobs
    that already run keep their slot)."""
    _root().mkdir(parents=True, exist_ok=True)
    write_json(_root() / "config.json", cfg.to_dict())


@contextlib.contextmanager
def _queue_lock() -> Iterator[Path]:
    root = _root()
    (root / "tickets").mkdir(parents=True, exist_ok=True)
    with open(root / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _tickets() -> list[Path]:
    d = _root() / "tickets"
    return sorted(d.iterdir()) if d.exists() else []


def _ticket_job(t: Path) -> str:
    return t.name.split(".", 1)[1]


def enqueue(job_id: str) -> None:
    """Put a job at the end of the queue (no-op if it already has a ticket)."""
    with _queue_lock() as root:
        if any(_ticket_job(t) == job_id for t in _tickets()):
            return
        counter = root / "seq"
        seq = int(counter.read_text() or 0) + 1 if counter.exists() else 1
        write_text_atomic(counter, str(seq))  # a kill mid-write must not restart the count (and the FIFO order)
        (root / "tickets" / f"{seq:012d}.{job_id}").touch()


def dequeue(job_id: str) -> None:
    """Remove a job's ticket (it got a slot, was cancelled or died)."""
    for t in _tickets():
        if _ticket_job(t) == job_id:
            t.unlink(missing_ok=True)


def _waiting_alive(job_id: str, ticket: Path) -> bool:
    try:
        st = read_json(jobs_dir() / job_id / STATUS)
    except (OSError, ValueError):
        return False
    if st.get("state") != "queued":
        return False
    if not st.get("pid"):  # its launcher is still starting it
        with contextlib.suppress(OSError):
            return time.time() - ticket.stat().st_mtime < LAUNCH_GRACE_S
        return False
    return st.get("host") != socket.gethostname() or same_process(st["pid"], st.get("pid_start"))


def waiting_jobs() -> list[str]:
    """Ids of the jobs waiting for a slot, first in line first; drops the tickets of jobs that stopped waiting."""
    out = []
    for t in _tickets():
        job_id = _ticket_job(t)
        if _waiting_alive(job_id, t):
            out.append(job_id)
        else:
            t.unlink(missing_ok=True)
    return out


def queue_place(job_id: str) -> tuple[int, int] | None:
    """``(place, waiting)`` of a waiting job, 1-based (``(1, 3)``: next of three); None if it is not waiting."""
    waiting = waiting_jobs()
    return (waiting.index(job_id) + 1, len(waiting)) if job_id in waiting else None


def _live_holders() -> dict[int, str]:
    """Slot index → job id of every slot file whose holder still runs, whatever the current setting."""
    out: dict[int, str] = {}
    d = _root() / "slots"
    for path in d.glob("*.json") if d.exists() else ():
        with contextlib.suppress(OSError, ValueError):
            h = read_json(path)
            if h.get("host") != socket.gethostname() or same_process(h.get("pid"), h.get("pid_start")):
                out[int(path.stem)] = h.get("job_id")
    return out


def slot_holders() -> dict[int, str | None]:
    """Slot index → id of the job holding it (None when free), for the slots of the current setting, plus any slot
    beyond it that a job started under a larger setting still holds."""
    live = _live_holders()
    return {i: live.get(i) for i in sorted(set(range(queue_config().slots)) | set(live))}


@dataclass
class SlotLease:
    """A held slot: ``index``, the ``threads`` and ``gpus`` of its job; released on :meth:`release` or exit."""

    index: int
    threads: int
    gpus: str | None
    job_id: str
    _fd: int | None = None

    def info(self) -> dict:
        """What the job's status records about its slot."""
        return {"index": self.index, "threads": self.threads, "gpus": self.gpus}

    def release(self) -> None:
        """Give the slot back (the kernel does this too when the process ends)."""
        if self._fd is None:
            return
        holder = _root() / "slots" / f"{self.index}.json"
        with contextlib.suppress(OSError, ValueError):
            if read_json(holder).get("job_id") == self.job_id:
                holder.unlink()
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def _try_slot(i: int, job_id: str, cfg: QueueConfig) -> SlotLease | None:
    d = _root() / "slots"
    d.mkdir(parents=True, exist_ok=True)
    fd = os.open(d / f"{i}.lock", os.O_RDWR | os.O_CREAT, 0o644)  # O_CLOEXEC by default: no exec'd child inherits it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    gpus = cfg.gpu_ids[i] if cfg.gpu_ids else None
    write_json(d / f"{i}.json", {"job_id": job_id, "pid": os.getpid(), "pid_start": process_start(os.getpid()),
                                 "host": socket.gethostname(),
                                 "since": time.time(), "threads": cfg.threads(), "gpus": gpus})
    return SlotLease(index=i, threads=cfg.threads(), gpus=gpus, job_id=job_id, _fd=fd)


def acquire_slot(job_id: str, stop: Callable[[], bool], *, config: Callable[[], QueueConfig] = queue_config,
                 poll_s: float = POLL_S) -> SlotLease | None:
    """Wait in the queue until this job may run; returns its lease, or None once ``stop()`` says to give up.

    Only the head of the queue tries the slots, so jobs start in the order they were queued. ``config()`` (the
    saved setting) is read at every look, so a setting changed while the job waits applies to it.
    """
    enqueue(job_id)  # no-op when the launcher queued it already
    cfg = QueueConfig()
    while True:
        if stop():
            dequeue(job_id)
            return None
        waiting = waiting_jobs()
        if job_id not in waiting:  # a reader dropped our ticket (we looked dead a moment): line up again
            enqueue(job_id)
        elif waiting[0] == job_id:
            with contextlib.suppress(OSError, ValueError):  # a setting edited by hand into nonsense: keep the last
                cfg = config()
            if len(_live_holders()) < cfg.slots:  # after lowering the slots, wait until few enough jobs run
                for i in range(cfg.slots):
                    lease = _try_slot(i, job_id, cfg)
                    if lease is not None:
                        dequeue(job_id)
                        return lease
        time.sleep(poll_s)


def apply_slot(lease: SlotLease) -> None:
    """Give this process the slot's threads (torch and OpenMP/MKL) and GPUs, before any heavy import or work."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(lease.threads)
    if lease.gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = lease.gpus
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(lease.threads)
