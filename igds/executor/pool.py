"""A pool of model actors with retries: tasks go to whichever actor is free; a task whose actor died (a killed
or crashed worker) goes again to a fresh actor, at most ``ExecutorConfig.max_retries`` times per task.

Actors are plain Ray actors with ``max_restarts=0``: the pool itself replaces a dead one (loading the model again
and replaying the stage's setup calls, e.g. the dev prefix), so a retried task always runs on a complete actor and
the driver knows which tasks were retried. Results come back in completion order; the driver writes them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from igds.executor.config import ExecutorConfig
from igds.executor.runtime import ExecutorError, actors_that_fit, connect, worker_env
from igds.executor.worker import ModelWorker, WorkerSpec
from igds.progress import ProgressFn, null_progress


class WorkerPool:
    """``n`` model actors (``cfg.actors``, no more than tasks or cluster resources), each with ``cfg.cpus_per_actor``
    CPUs (its torch threads) and ``cfg.gpus_per_actor`` GPUs. Use as a context manager: leaving it kills the actors.

    Args:
        spec: what each actor loads.
        n_tasks: how many tasks the stage has (no more actors than that).
        setup: ``(method, args)`` calls every actor runs after loading, before any task (e.g. ``prepare_dev``).
        stage: name used in progress messages.
    """

    def __init__(self, cfg: ExecutorConfig, spec: WorkerSpec, n_tasks: int,
                 setup: Sequence[tuple[str, tuple]] = (), progress: ProgressFn | None = None, stage: str = "ray"):
        self.ray = connect(cfg)
        self.cfg = cfg
        self.spec = spec
        self.setup = list(setup)
        self.progress = progress or null_progress
        self.stage = stage
        self.retries = 0
        self._cls = self.ray.remote(ModelWorker)
        self.n = actors_that_fit(self.ray, cfg, max(1, n_tasks))
        self.progress(0, 0, f"{stage}: starting {self.n} Ray actor(s) ({cfg.cpus_per_actor:g} CPU, "
                            f"{cfg.gpus_per_actor:g} GPU each)")
        self.actors: list = []
        try:
            spawned = [self._spawn() for _ in range(self.n)]
            self.actors = [a for a, _ in spawned]
            # all actors load in parallel; ready[i] = [load(), *setup results] of actor i
            self.ready = [self._get(refs) for _, refs in spawned]
        except BaseException:
            self.close()
            raise

    # -- lifecycle --------------------------------------------------------------------------------------------

    def _spawn(self):
        """A new actor with its load and setup calls queued (not waited for)."""
        actor = self._cls.options(num_cpus=self.cfg.cpus_per_actor, num_gpus=self.cfg.gpus_per_actor,
                                  max_restarts=0, max_task_retries=0,
                                  runtime_env={"env_vars": worker_env()}).remote(
            self.spec.to_dict(), self.cfg.cpus_per_actor, self.cfg.gpus_per_actor)
        refs = [actor.load.remote()] + [getattr(actor, m).remote(*args) for m, args in self.setup]
        return actor, refs

    def _get(self, refs):
        """``ray.get`` that raises a Python error of a task (a model that does not load, a bad input) as itself:
        a fresh actor would fail the same way, so it is not retried."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None

    def _replace(self, i: int) -> None:
        """Kill actor ``i`` (if it still runs) and start a ready fresh one in its place."""
        try:
            self.ray.kill(self.actors[i], no_restart=True)
        except Exception:  # already dead: nothing to release
            pass
        actor, refs = self._spawn()
        self.actors[i] = actor
        try:
            self._get(refs)
        except self.ray.exceptions.RayActorError as e:
            raise ExecutorError(f"{self.stage}: a fresh Ray actor died while loading the model: {e}") from None

    def close(self) -> None:
        """Kill every actor (their CPUs and GPUs go back to the cluster)."""
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        self.actors = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- work -------------------------------------------------------------------------------------------------

    def imap_unordered(self, method: str, payloads: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
        """Run ``actor.<method>(*payload)`` for every payload, one task per free actor at a time; yields
        ``(payload index, result)`` as tasks finish. A task whose actor died is run again on a fresh actor.

        Raises:
            ExecutorError: a task failed on ``cfg.max_retries + 1`` actors in a row.
            Exception: a Python error raised inside a task (the same input would fail again), as it was raised.
        """
        pending = list(range(len(payloads)))[::-1]  # popped from the end: in order
        attempts = dict.fromkeys(range(len(payloads)), 0)
        in_flight: dict = {}  # ref -> (payload index, actor slot)
        free = list(range(len(self.actors)))[::-1]

        def submit(slot: int) -> None:
            i = pending.pop()
            ref = getattr(self.actors[slot], method).remote(*payloads[i])
            in_flight[ref] = (i, slot)

        while pending or in_flight:
            while pending and free:
                submit(free.pop())
            ready, _ = self.ray.wait(list(in_flight), num_returns=1)
            ref = ready[0]
            i, slot = in_flight.pop(ref)
            try:
                result = self._get(ref)
            except self.ray.exceptions.RayActorError as e:
                attempts[i] += 1
                if attempts[i] > self.cfg.max_retries:
                    raise ExecutorError(f"{self.stage}: task {i} failed on {attempts[i]} Ray actors in a row (last: "
                                        f"{str(e).splitlines()[0]}); raise max_retries or check the workers' "
                                        "memory") from None
                self.retries += 1
                self.progress(0, 0, f"{self.stage}: a Ray actor died; task {i} runs again on a fresh actor "
                                    f"(retry {attempts[i]}/{self.cfg.max_retries})")
                self._replace(slot)
                pending.append(i)
                free.append(slot)
                continue
            free.append(slot)
            yield i, result

    def call(self, method: str, *args) -> Any:
        """One task on whichever actor is free (retried like :meth:`imap_unordered`)."""
        return next(self.imap_unordered(method, [args]))[1]
