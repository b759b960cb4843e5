"""One progress callback type shared by the CLI (tqdm), the dashboard (st.progress) and tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """``progress(done, total, message)``: called as work advances; ``total`` may be 0 if unknown."""

    def __call__(self, done: int, total: int, message: str) -> None: ...


ProgressFn = Callable[[int, int, str], None]


def null_progress(done: int, total: int, message: str) -> None:
    """A progress callback that ignores everything."""


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
    """Map a sub-task's ``(done, sub_total)`` onto ``[start, start + span]`` of a parent ``total``."""
    parent = progress or null_progress

    def update(done: int, sub_total: int, message: str) -> None:
        frac = done / sub_total if sub_total else 0.0
        parent(start + int(span * frac), total, message)

    return update
