"""Jobs submitted to a Ray cluster through the Ray Jobs API: same entrypoint, same job folder.

A job whose target is ``ray`` (``start_job(..., target="ray")``, or the workspace's executor setting
``job_target: ray``, see :class:`igds.executor.ExecutorConfig`) is not started as a local process: its
entrypoint, ``<python> -u -m igds job run <id>``, is submitted with
``ray.job_submission.JobSubmissionClient(<dashboard>).submit_job`` and Ray runs it on a node of the cluster.

How the inputs reach the workers: through the **shared filesystem of the workspace**. The job folder, the
DuckDB store, the converted models, the SAEs and the examples all live under ``IGDS_HOME``, which must be
mounted at the same path on the submitting machine and on every Ray node (an NFS/Lustre home, or one machine).
The runtime environment carries only environment variables: ``IGDS_HOME``, ``IGDS_STORE``, ``IGDS_DATA``, the
offline flags (``IGDS_OFFLINE``, ``HF_HUB_OFFLINE``, ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``) and, for a
job that does its own heavy work, ``OMP_NUM_THREADS`` sized to the CPUs it reserves. The entrypoint uses the
submitting interpreter's path, which the same shared filesystem makes visible on the nodes (one virtual
environment for all). Object storage (inputs and job folders at an ``s3://``/``gs://`` URI through fsspec, with a
Ray ``working_dir``/``py_modules`` package) is a plan, not built.

How results come back: exactly as for a local job. The job process writes status, progress, heartbeat,
``log.txt`` (its stdout and stderr are redirected there by the entrypoint), metrics and checkpoints into its
folder, and the dashboard and CLI read that folder. ``status.json`` records the target, the dashboard address
and the Ray submission id (``ray.submission_id``). Cancel writes the same flag (the job's own watchdog sends
itself SIGTERM after the grace period), and ``cancel_job(..., wait=True)`` escalates with ``client.stop_job``; a
job still pending on the cluster is stopped at once. Resume submits again under a new submission id. A submitted
job that is queued or silent, whose Ray job has ended without the job writing a final state, reads as dead.

Resources: a heavy job that runs on the local executor reserves ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs
of the executor setting for its entrypoint; a light job, or a heavy one whose stages use the Ray executor (its
actors reserve their own), reserves none, so a small cluster never deadlocks on its drivers.
"""

from __future__ import annotations

import shlex
import sys
import time
from functools import lru_cache
from urllib.parse import urlsplit

from igds import settings
from igds.jobs.folder import LOG, job_dir

ENDED = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})  # Ray job states after which nothing will write status
AGENT_WAIT_S = 60.0  # a cluster that just started answers "No available agent to submit job" for a while


def dashboard_of(address: str | None, dashboard_address: str | None) -> str:
    """The Jobs API address: ``dashboard_address``, else ``http://<host of address>:8265``."""
    if dashboard_address:
        return dashboard_address if "://" in dashboard_address else f"http://{dashboard_address}"
    if not address or address == "auto":
        raise ValueError("a job target of 'ray' needs the cluster's dashboard address (executor setting "
                         "dashboard_address, e.g. http://head:8265) or its address (host:6379)")
    host = urlsplit(address if "://" in address else f"ray://{address}").hostname
    return f"http://{host}:8265"


@lru_cache(maxsize=8)
def client(dashboard: str):
    """A cached ``JobSubmissionClient`` for a dashboard address (creating one costs an HTTP round trip)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(dashboard)


def runtime_env(threads: int | None) -> dict:
    """The environment a submitted job needs: workspace paths and offline flags (inputs come by shared FS)."""
    env = {"IGDS_HOME": str(settings.home()), "IGDS_STORE": str(settings.store_path()),
           "IGDS_DATA": str(settings.data_dir()), "IGDS_OFFLINE": "1" if settings.offline() else "0"}
    if settings.offline():
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return {"env_vars": env}


def entrypoint(job_id: str) -> str:
    """The shell command Ray runs: the local job process's command, its output appended to the job's log."""
    log = job_dir(job_id) / LOG
    return (f"{shlex.quote(sys.executable)} -u -m igds job run {shlex.quote(job_id)} "
            f">> {shlex.quote(str(log))} 2>&1")


def submit_entrypoint(dashboard: str, *, wait_s: float = AGENT_WAIT_S, **kwargs) -> str:
    """``client.submit_job(**kwargs)``, retried while a freshly started cluster has no job agent ready yet."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return client(dashboard).submit_job(**kwargs)
        except RuntimeError as e:
            if "No available agent" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(1.0)


def submit(job_id: str, ray_info: dict, attempt: int) -> str:
    """Submit a prepared job to its cluster; returns the Ray submission id (unique per attempt)."""
    cpus, gpus = float(ray_info.get("num_cpus") or 0), float(ray_info.get("num_gpus") or 0)
    return submit_entrypoint(
        ray_info["dashboard"], entrypoint=entrypoint(job_id), submission_id=f"igds-{job_id}-a{attempt}",
        runtime_env=runtime_env(max(1, int(cpus)) if cpus else None), entrypoint_num_cpus=cpus,
        entrypoint_num_gpus=gpus, metadata={"igds_job": job_id})


def ray_state(ray_info: dict) -> str | None:
    """The Ray job's state (``PENDING``, ``RUNNING``, ``STOPPED``, ``SUCCEEDED``, ``FAILED``); None if unknown."""
    sid = ray_info.get("submission_id")
    if not sid:
        return None
    try:
        return str(client(ray_info["dashboard"]).get_job_status(sid).value)
    except Exception:  # cluster unreachable or job unknown: say nothing rather than fail a status read
        return None


def stop(ray_info: dict) -> bool:
    """Ask Ray to stop the job (SIGTERM, then SIGKILL to its process group); False if it could not be asked."""
    sid = ray_info.get("submission_id")
    if not sid:
        return False
    try:
        return bool(client(ray_info["dashboard"]).stop_job(sid))
    except Exception:
        return False
