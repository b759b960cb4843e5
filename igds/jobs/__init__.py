"""Background jobs: long work runs in its own process and reports through files in its job folder.

Process model: a job is a separate ``python -m igds job run <id>`` process, started in its own session
so that it outlives the dashboard or CLI that launched it. Its stage code (extraction, interventions,
selection, fine-tuning, evaluation) reads and writes the DuckDB store like every other process: through
short-lived connections that retry while another process holds the file lock (see :mod:`igds.store`).
The job's own state (status, progress, heartbeat, log, metrics, checkpoints, the cancel flag) lives in
files in its folder (:mod:`igds.jobs.folder`), not in the database, so any reader (dashboard, CLI, a
second browser tab) sees every job without opening the store.

Rooms, each importing only those above it:

- ``folder``: the job folder's file names, atomic JSON writes and the status lock;
- ``context``: the :class:`JobContext` a job function gets and :func:`~igds.jobs.context.execute`;
- ``registry``: job kinds by name (``register_job_kind``, ``get_job_kind``, ``job_kinds``);
- ``kinds``: the kinds IGDS registers (every long stage, plus the toy ``count``);
- ``status``: reading jobs from any process (status, dead detection, list, metrics, log);
- ``process``: starting, resuming, cancelling, waiting for and inline-running jobs;
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
from igds.jobs.registry import get_job_kind, job_kinds, register_job_kind
from igds.jobs.status import (
    DEAD_AFTER_S,
    RESUMABLE,
    TERMINAL,
    _children,
    job_spec,
    job_status,
    list_jobs,
    read_log,
    read_metrics,
)

__all__ = [
    "CANCEL_GRACE_S", "DEAD_AFTER_S", "EXIT_CANCELLED", "EXIT_FAILED", "RESUMABLE", "SPEC", "TERMINAL", "JobCancelled",
    "JobContext", "_children", "_new_job", "cancel_job", "get_job_kind", "job_dir", "job_kinds", "job_spec",
    "job_status", "jobs_dir", "list_jobs", "read_log", "read_metrics", "register_job_kind", "resume_job",
    "run_job_inline", "run_job_process", "start_job", "wait_job",
]
