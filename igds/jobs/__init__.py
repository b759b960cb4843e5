"""Background jobs: long work runs in its own process and reports through files in its job folder.

Process model: a job is a separate ``python -m igds job run <id>`` process, started in its own session
so that it outlives the dashboard or CLI that launched it. Its stage code (extraction, interventions,
selection, fine-tuning, evaluation) reads and writes the DuckDB store like every other process: through
short-lived connections that retry while another process holds the file lock (see :mod:`igds.store`).
The job's own state (status, progress, heartbeat, log, metrics, checkpoints, the cancel flag) lives in
files in its folder (:mod:`igds.jobs.folder`), not in the database, so any reader (dashboard, CLI, a
second browser tab) sees every job without opening the store.

Rooms, each importing only those above it:

- ``folder``: the job folder's file names, atomic writes (temp file, fsync, ``os.replace``) and the status lock;
- ``pids``: whether a job's process still runs (same pid and start time);
- ``registry``: job kinds by name (``register_job_kind``, ``get_job_kind``, ``job_kinds``, ``needs_slot``);
- ``queue``: the local FIFO queue of heavy jobs and its resource slots (threads, GPU ids), in files with flocks;
- ``context``: the :class:`JobContext` a job function gets and :func:`~igds.jobs.context.execute` (which first
  waits for a slot when the job needs one);
- ``kinds``: the kinds IGDS registers (every long stage, heavy; the toy ``count``; the bench kind ``matmul``);
- ``ray_target``: jobs submitted to a Ray cluster through the Jobs API (inputs by the shared workspace folder);
- ``status``: reading jobs from any process (status, dead and stalled detection, queue place, list, metrics, log);
- ``process``: starting (locally or on Ray), resuming, cancelling, waiting for and inline-running jobs;
- ``cli``: the ``igds job ...`` subcommands (imports this package, so that patching
  ``igds.jobs.start_job`` reaches it).

Callers use the names re-exported here (``from igds import jobs``; ``jobs.start_job(...)``).
"""

from igds.jobs import kinds as _kinds  # noqa: F401 - registers the kinds
from igds.jobs.context import CANCEL_GRACE_S, EXIT_CANCELLED, EXIT_FAILED, JobCancelled, JobContext
from igds.jobs.folder import SPEC, job_dir, jobs_dir
from igds.jobs.process import (
    _new_job,
    cancel_job,
    resume_job,
    run_job_inline,
    run_job_process,
    start_job,
    wait_job,
)
from igds.jobs.queue import QueueConfig, queue_config, queue_place, save_queue_config, slot_holders, waiting_jobs
from igds.jobs.registry import get_job_kind, job_kinds, needs_slot, register_job_kind
from igds.jobs.status import (
    DEAD_AFTER_S,
    LIVE,
    RESUMABLE,
    TERMINAL,
    _children,
    active_jobs,
    job_spec,
    job_status,
    list_jobs,
    read_log,
    read_metrics,
)

__all__ = [
    "CANCEL_GRACE_S", "DEAD_AFTER_S", "EXIT_CANCELLED", "EXIT_FAILED", "LIVE", "RESUMABLE", "SPEC", "TERMINAL",
    "JobCancelled", "JobContext", "QueueConfig", "_children", "_new_job", "active_jobs", "cancel_job", "get_job_kind",
    "job_dir", "job_kinds", "job_spec", "job_status", "jobs_dir", "list_jobs", "needs_slot", "queue_config",
    "queue_place", "read_log", "read_metrics", "register_job_kind", "resume_job", "run_job_inline", "run_job_process",
    "save_queue_config", "slot_holders", "start_job", "wait_job", "waiting_jobs",
]
