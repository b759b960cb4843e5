"""The job kinds: name → function ``fn(params, ctx) -> dict``, the single list that the CLI and the
dashboard offer and that a job process resolves its kind from.

:mod:`igds.jobs.kinds` fills it when :mod:`igds.jobs` is imported; other code (tests, plugins) may add
kinds with :func:`register_job_kind`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from igds.jobs.context import JobContext

JobFn = Callable[[dict, "JobContext"], dict]
_KINDS: dict[str, JobFn] = {}
_HEAVY: set[str] = set()  # kinds that run a model (or other all-cores work) and so wait for a heavy slot


def register_job_kind(name: str, fn: JobFn, *, heavy: bool = False) -> JobFn:
    """Register a job kind.

    Args:
        name: Kind name used in ``start_job`` and job ids (letters, digits, ``_``).
        fn: ``fn(params, ctx) -> dict``; the returned dict (JSON-able) is stored as the job's result.
        heavy: whether its jobs need a heavy slot of the local queue (see :mod:`igds.jobs.queue`).

    Returns:
        ``fn``, so that the call can decorate a definition.
    """
    _KINDS[name] = fn
    (_HEAVY.add if heavy else _HEAVY.discard)(name)
    return fn


def needs_slot(kind: str, params: dict) -> bool:
    """Whether a job of ``kind`` with ``params`` waits for a heavy slot: the kind's default, unless the params
    say otherwise with ``"heavy": true/false`` (e.g. a toy ``count`` job made heavy in a test)."""
    heavy = params.get("heavy") if isinstance(params, dict) else None
    return bool(heavy) if heavy is not None else kind in _HEAVY


def job_kinds() -> list[str]:
    """Names of all registered job kinds, sorted."""
    return sorted(_KINDS)


def get_job_kind(name: str) -> JobFn:
    """The function of a registered kind; raises ``ValueError`` for an unknown one."""
    if name not in _KINDS:
        raise ValueError(f"unknown job kind {name!r}; known: {sorted(_KINDS)}")
    return _KINDS[name]
