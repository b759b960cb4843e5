"""Process liveness for job folders: which job processes this process launched, and whether a pid still runs."""

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
