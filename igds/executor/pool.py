"""Executors are pools of model workers; every stage has one driver that takes a pool.

A :class:`Pool` holds ``n`` workers (:class:`igds.executor.worker.ModelWorker`), each loaded once with a setup
replayed on it (e.g. the interventions' dev prefix). A driver submits work items (a worker method and its
arguments) and gets ``(item index, result)`` back as items finish; a worker that dies mid-item is replaced by a
fresh one (load and setup replayed) and the item runs again, at most ``max_retries`` times. The driver alone
writes the store.

Kinds of pool:

- ``local``: one worker in this process, serving the model the caller already loaded; work runs lazily in the
  driver's loop, so a streaming work method (a generator) reports each feature or batch as it is done.
- ``ray``: model actors on a Ray cluster (:mod:`igds.executor.ray_pool`), each loading the stored specs.

Kinds are registered by name in :mod:`igds.executor.registry`, where the executor kind (``ExecutorConfig.kind``)
is read, in exactly one place.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from igds.progress import ProgressFn, null_progress

CHUNKS_PER_WORKER = 2  # items per worker and phase on a remote pool: finer items report sooner, replay less per batch


class WorkerLost(RuntimeError):
    """A worker died while running an item (killed, out of memory, its node gone): the item runs again on a fresh
    worker. Raised by a pool's :meth:`Pool._collect` with the item's handle; any other exception is the item's own
    error and is raised as it is."""

    def __init__(self, message: str, handle: Any = None):
        super().__init__(message)
        self.handle = handle


class ExecutorError(RuntimeError):
    """The executor cannot run: an unreachable address, a cluster too small for one worker, an item that kept
    failing after its retries."""


@dataclass
class Loaded:
    """What this process already holds for a stage: the model (fp32 for interventions), its tokenizer, the SAE
    (None for stages without one) and its site. A local pool serves these; a remote pool loads ``spec()``."""

    model: Any
    tokenizer: Any = None
    sae: Any = None
    site: str = ""


@dataclass
class PoolRequest:
    """What a stage asks of a pool.

    Args:
        stage: name used in progress messages (``extract``, ``intervene``, ``nll``, ``evaluate``).
        n_items: how many items the stage has (no more workers than that).
        loaded: the caller's loaded model (and SAE) for an in-process pool.
        spec: a callable returning the :class:`igds.executor.worker.WorkerSpec` remote workers load (called only
            by pools that start workers elsewhere: a local pool never needs stored specs).
        setup: ``(method, args)`` calls every worker runs after loading, before any item (a replaced worker too).
        progress: ``progress(done, total, message)`` for starting workers and retries.
    """

    stage: str
    n_items: int
    loaded: Loaded | None = None
    spec: Callable[[], Any] | None = None
    setup: Sequence[tuple[str, tuple]] = ()
    progress: ProgressFn | None = None
    max_retries: int = 3


def chunks(seq: Sequence, n: int) -> list:
    """``seq`` cut into at most ``n`` contiguous, nearly equal, non-empty pieces (order kept)."""
    size = math.ceil(len(seq) / max(1, n)) if len(seq) else 1
    return [seq[i : i + size] for i in range(0, len(seq), size)]


class Pool:
    """``n`` workers and the scheduling every kind shares: one item per free worker, retries on a fresh worker.

    A kind implements four hooks: :meth:`_start` (a worker in a slot, loaded, setup queued; returns a handle on
    its setup results), :meth:`_submit` (an item to a slot's worker; returns a handle), :meth:`_collect` (the
    first finished handle and its result, raising :class:`WorkerLost` for a dead worker) and :meth:`_stop`.
    Use as a context manager: leaving it stops every worker.
    """

    def __init__(self, n: int, req: PoolRequest):
        self.n = n
        self.req = req
        self.stage = req.stage
        self.setup = list(req.setup)
        self.progress = req.progress or null_progress
        self.max_retries = req.max_retries
        self.retries = 0
        self.ready: list = []  # per worker: [load result, *setup results]

    def start(self) -> Pool:
        """Start the ``n`` workers (in parallel where the kind can) and wait until they are ready."""
        try:
            handles = [self._start(slot) for slot in range(self.n)]
            self.ready = [self._ready(h) for h in handles]
        except BaseException:
            self.close()
            raise
        return self

    # -- hooks ------------------------------------------------------------------------------------------------

    def _start(self, slot: int) -> Any:
        raise NotImplementedError

    def _ready(self, handle: Any) -> list:
        """The setup results behind a :meth:`_start` handle (waits for them)."""
        return handle

    def _submit(self, slot: int, method: str, args: tuple) -> Any:
        raise NotImplementedError

    def _collect(self, handles: list) -> tuple[Any, Any]:
        raise NotImplementedError

    def _stop(self, slot: int) -> None:
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------------------------------

    def parts(self, seq: Sequence) -> list:
        """``seq`` cut into the items a phase submits: one per worker and ``CHUNKS_PER_WORKER`` each."""
        return chunks(seq, self.n * CHUNKS_PER_WORKER)

    def _replace(self, slot: int) -> None:
        self._stop(slot)
        try:
            self._ready(self._start(slot))
        except WorkerLost as e:
            raise ExecutorError(f"{self.stage}: a fresh worker died while loading the model: {e}") from None

    def imap(self, method: str, payloads: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Run ``worker.<method>(*payload)`` for every payload, one item per free worker at a time; yields
        ``(payload index, result)`` as items finish. An item whose worker died runs again on a fresh worker.

        Raises:
            ExecutorError: an item failed on ``max_retries + 1`` workers in a row.
            Exception: an error raised inside an item (the same input would fail again), as it was raised.
        """
        pending = list(range(len(payloads)))[::-1]  # popped from the end: in order
        attempts = dict.fromkeys(range(len(payloads)), 0)
        in_flight: dict = {}  # handle -> (payload index, slot)
        free = list(range(self.n))[::-1]
        while pending or in_flight:
            while pending and free:
                slot, i = free.pop(), pending.pop()
                in_flight[self._submit(slot, method, payloads[i])] = (i, slot)
            try:
                handle, outcome = self._collect(list(in_flight))
            except WorkerLost as lost:
                i, slot = in_flight.pop(lost.handle)
                attempts[i] += 1
                if attempts[i] > self.max_retries:
                    raise ExecutorError(f"{self.stage}: item {i} failed on {attempts[i]} workers in a row (last: "
                                        f"{str(lost).splitlines()[0]}); raise max_retries or check the "
                                        "workers' memory") from None
                self.retries += 1
                self.progress(0, 0, f"{self.stage}: a worker died; item {i} runs again on a fresh worker "
                                    f"(retry {attempts[i]}/{self.max_retries})")
                self._replace(slot)
                pending.append(i)
                free.append(slot)
                continue
            i, slot = in_flight.pop(handle)
            free.append(slot)
            yield i, outcome

    def call(self, method: str, *args) -> Any:
        """One item on whichever worker is free (retried like :meth:`imap`)."""
        return next(self.imap(method, [args]))[1]

    def close(self) -> None:
        """Stop every worker (their CPUs, GPUs and memory go back)."""
        for slot in range(self.n):
            try:
                self._stop(slot)
            except Exception:  # already gone
                pass

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def run_method(worker, method: str, args: tuple, stream: bool = False):
    """``worker.<method>(*args)``; a streaming method's generator is listed unless ``stream`` (a worker in
    another process sends its whole result back)."""
    out = getattr(worker, method)(*args)
    return out if stream or not inspect.isgenerator(out) else list(out)


class LocalPool(Pool):
    """One worker in this process, serving the caller's loaded model and SAE (:class:`Loaded`). Items run lazily
    in the driver's loop: a streaming method's events reach the driver as they are produced (a feature's rows are
    stored when that feature is done), and the worker's ``progress`` is the stage's. Items are not cut: the whole
    phase is one item, so batches are what one in-process loop would make."""

    def __init__(self, req: PoolRequest):
        super().__init__(1, req)
        if req.loaded is None:
            raise ValueError(f"{req.stage}: a local pool serves a model this process loaded (PoolRequest.loaded)")
        self.worker = None
        self._seq = 0
        self._pending: dict = {}

    def _start(self, slot: int) -> list:
        from igds.executor.worker import ModelWorker

        loaded = self.req.loaded
        self.worker = ModelWorker.serving(loaded.model, loaded.tokenizer, loaded.sae, loaded.site, self.progress)
        return [self.worker.describe(), *(run_method(self.worker, m, args) for m, args in self.setup)]

    def _submit(self, slot: int, method: str, args: tuple) -> int:
        self._seq += 1
        self._pending[self._seq] = (method, args)
        return self._seq

    def _collect(self, handles: list) -> tuple[int, Any]:
        h = handles[0]
        method, args = self._pending.pop(h)
        return h, run_method(self.worker, method, args, stream=True)

    def _stop(self, slot: int) -> None:
        self.worker = None

    def parts(self, seq: Sequence) -> list:
        return [seq] if len(seq) else []
