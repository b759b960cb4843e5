"""Process liveness for job folders: which job processes this process launched, whether a pid still runs, and
whether it is still the process a job recorded (same pid *and* start time, so a reused pid is not taken for it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

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


def process_start(pid: int | None) -> int | None:
    """Start time of process ``pid`` in clock ticks since boot (``/proc/<pid>/stat`` field 22); None if unknown."""
    if not pid:
        return None
    try:  # the command name (field 2) may hold spaces and parentheses: split after its last ")"
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def same_process(pid: int | None, start: int | None) -> bool:
    """Whether the process a job recorded (``pid`` started at ``start``) still runs.

    A pid that runs but started at another time is a different process that reuses the number. Without a
    recorded ``start`` (a status written by an older version) or without ``/proc``, the pid alone decides.
    """
    if not pid_alive(pid):
        return False
    now = process_start(pid)
    return start is None or now is None or now == start
