"""A job's folder ``<home>/jobs/<job_id>/``: its file names, atomic writes (temp file, fsync, ``os.replace``), and
the lock that serialises read-modify-write of ``status.json`` across processes.

- ``spec.json``: kind and params, written once at creation;
- ``status.json``: state, pid, progress, heartbeat, result or error (rewritten atomically);
- ``metrics.jsonl``: one metric point per line;
- ``log.txt``: the process's stdout and stderr plus :meth:`JobContext.log` lines;
- ``checkpoint/``: whatever the kind keeps across resumes;
- ``cancel``: the cancel request (its text is the grace period in seconds).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from igds import settings

SPEC, STATUS, METRICS, LOG, CANCEL, CHECKPOINTS = (
    "spec.json", "status.json", "metrics.jsonl", "log.txt", "cancel", "checkpoint")


def jobs_dir() -> Path:
    """Folder holding one sub-folder per job (``<home>/jobs``)."""
    return settings.home() / "jobs"


def job_dir(job_id: str) -> Path:
    """Folder of one job; raises ``ValueError`` for ids that are not plain names."""
    if not job_id or "/" in job_id or job_id.startswith(".") or job_id != job_id.strip():
        raise ValueError(f"bad job id {job_id!r}")
    return jobs_dir() / job_id


def write_text_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically: a reader, or a kill at any moment, finds the old or the new text."""
    # a temp file in the same folder (os.replace is atomic only within one filesystem), fsynced before the
    # rename so that the new name never points at data still in the page cache only; a writer killed before
    # the rename leaves the old file and a stray temp file, never a torn one
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, default=str, indent=1))


def read_json(path: Path) -> dict:
    """Read a JSON file."""
    return json.loads(path.read_text())


@contextlib.contextmanager
def status_lock(d: Path) -> Iterator[None]:
    """Hold the job folder's cross-process lock for a read-modify-write of ``status.json``."""
    # read-modify-write of status.json by different processes (launcher, job, readers marking dead) is
    # serialised with flock; the kernel drops the lock when a holder is SIGKILLed
    with open(d / ".status.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
