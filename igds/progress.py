"""One progress callback type shared by the CLI (tqdm), the dashboard (st.progress), background jobs and tests.

A callback is ``progress(done, total, message)``. Long operations made of several *stages* (the bootstrap: model and
SAE, extraction, recall, interventions, contexts) also announce each stage with :func:`begin_stage`; a callback that
has a ``stage(name, index, of)`` method (a job's, :class:`StagedProgress`) learns which stage runs, restarts its rate
estimate there and logs the stage's start and end; any other callback ignores the announcement. From a stage on,
``done``/``total`` count in that stage's own units (examples, features, steps), so an estimate from the measured
rate is one of that stage alone.
"""

from __future__ import annotations

from collections.abc import Callable

ProgressFn = Callable[[int, int, str], None]
StageFn = Callable[[str, int, int], None]
PlanFn = Callable[[list[tuple[str, float | None]]], None]


class StagedProgress:
    """A progress callback with a stage notion: ``p(done, total, message)`` like any callback, and
    ``p.stage(name, index, of)`` (``index`` of ``of`` 1-based; 0, 0 when the stages are not counted)."""

    def __init__(self, on_progress: ProgressFn, on_stage: StageFn, on_plan: PlanFn | None = None):
        self._on_progress, self._on_stage, self._on_plan = on_progress, on_stage, on_plan

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self._on_progress(done, total, message)

    def stage(self, name: str, index: int = 0, of: int = 0) -> None:
        """Stage ``name`` begins (the one before it, if any, has ended)."""
        self._on_stage(name, index, of)

    def plan(self, later: list[tuple[str, float | None]]) -> None:
        """The stages still to come after the current one, each with its estimated seconds (None: unknown)."""
        if self._on_plan is not None:
            self._on_plan(later)


def begin_stage(progress: ProgressFn | None, name: str, index: int = 0, of: int = 0) -> None:
    """Announce that stage ``name`` (``index`` of ``of``, 1-based) begins, to a callback that has a ``stage``
    method; a plain callback (or None) is left alone, so every existing callback keeps working."""
    stage = getattr(progress, "stage", None)
    if callable(stage):
        stage(name, index, of)


def report_plan(progress: ProgressFn | None, later: list[tuple[str, float | None]]) -> None:
    """Tell a callback that has a ``plan`` method (a job's) which stages come after the current one and how long each
    is estimated to take (seconds; None where no rate is measured yet), so a page can show the time left in all; any
    other callback ignores it."""
    plan = getattr(progress, "plan", None)
    if callable(plan):
        plan([(str(name), None if s is None else float(s)) for name, s in later])


def null_progress(done: int, total: int, message: str) -> None:
    """A progress callback that ignores everything."""


def format_seconds(seconds: float) -> str:
    """A duration for people: ``8 s``, ``6 min 02 s``, ``1 h 05 min`` (never a clock time)."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def format_left(seconds: float) -> str:
    """A time-left estimate, rounded as coarsely as it is known: ``under a minute``, ``about 7 min``,
    ``about 25 min`` (5-min steps from 10 min), ``about 1 h 30 min`` (15-min steps from 1 h)."""
    m = seconds / 60
    if m < 1:
        return "under a minute"
    if m < 10:
        return f"about {round(m)} min"
    if m < 60:
        return f"about {5 * round(m / 5)} min"
    q = 15 * round(m / 15)
    return f"about {q // 60} h" + (f" {q % 60:02d} min" if q % 60 else "")


def tqdm_progress(desc: str = "") -> ProgressFn:
    """A callback that drives a tqdm bar on stderr, re-created when a new stage message starts."""
    from tqdm import tqdm

    state: dict = {"bar": None, "stage": None}

    def update(done: int, total: int, message: str) -> None:
        stage = message.split(":", 1)[0]
        bar = state["bar"]
        if bar is None or stage != state["stage"] or (total and bar.total != total):
            if bar is not None:
                bar.close()
            bar = state["bar"] = tqdm(total=total or None, desc=desc or stage, leave=True, dynamic_ncols=True)
            state["stage"] = stage
        bar.set_postfix_str(message[:60], refresh=False)
        bar.n = done
        bar.refresh()
        if total and done >= total:
            bar.close()
            state["bar"] = None

    return update


def scaled(progress: ProgressFn | None, start: int, span: int, total: int) -> ProgressFn:
    """Map a sub-task's ``(done, sub_total)`` onto ``[start, start + span]`` of a parent ``total`` (stage
    announcements pass through to the parent)."""
    parent = progress or null_progress

    def update(done: int, sub_total: int, message: str) -> None:
        frac = done / sub_total if sub_total else 0.0
        parent(start + int(span * frac), total, message)

    return StagedProgress(update, lambda name, index, of: begin_stage(parent, name, index, of),
                          lambda later: report_plan(parent, later))
