"""The Ray pool: model actors on a Ray cluster, each loading the stored model / SAE specs.

Actors are plain Ray actors with ``max_restarts=0``: the pool itself replaces a dead one (loading the model again
and replaying the stage's setup calls, e.g. the dev prefix), so a retried item always runs on a complete actor and
the driver knows which items were retried. Results come back in completion order; the driver writes them.
"""

from __future__ import annotations

from typing import Any

from igds.executor.config import ExecutorConfig
from igds.executor.pool import Pool, PoolRequest, WorkerLost, run_method
from igds.executor.runtime import actors_that_fit, connect, worker_env


class RemoteWorker:
    """The body of a Ray actor (``ray.remote(RemoteWorker)``): a :class:`~igds.executor.worker.ModelWorker` loaded
    from its spec, whose streaming methods send their whole result back."""

    def __init__(self, spec: dict, cpus: float, gpus: float):
        from igds.executor.worker import ModelWorker

        self.worker = ModelWorker(spec, cpus, gpus)

    def load(self) -> dict:
        return self.worker.load()

    def run(self, method: str, *args) -> Any:
        return run_method(self.worker, method, args)


class RayPool(Pool):
    """``cfg.actors`` model actors (no more than items or cluster resources), each with ``cfg.cpus_per_actor`` CPUs
    (its torch threads) and ``cfg.gpus_per_actor`` GPUs."""

    def __init__(self, cfg: ExecutorConfig, req: PoolRequest):
        if req.spec is None:
            raise ValueError(f"{req.stage}: Ray actors load stored specs (PoolRequest.spec)")
        self.ray = connect(cfg)
        self.cfg = cfg
        self.spec = req.spec()
        self._cls = self.ray.remote(RemoteWorker)
        super().__init__(actors_that_fit(self.ray, cfg, max(1, req.n_items)), req)
        self.actors: list = [None] * self.n
        self.progress(0, 0, f"{self.stage}: starting {self.n} Ray actor(s) ({cfg.cpus_per_actor:g} CPU, "
                            f"{cfg.gpus_per_actor:g} GPU each)")

    def _start(self, slot: int) -> list:
        """A new actor in ``slot`` with its load and setup calls queued (not waited for)."""
        actor = self._cls.options(num_cpus=self.cfg.cpus_per_actor, num_gpus=self.cfg.gpus_per_actor,
                                  max_restarts=0, max_task_retries=0,
                                  runtime_env={"env_vars": worker_env()}).remote(
            self.spec.to_dict(), self.cfg.cpus_per_actor, self.cfg.gpus_per_actor)
        self.actors[slot] = actor
        return [actor.load.remote()] + [actor.run.remote(m, *args) for m, args in self.setup]

    def _get(self, refs):
        """``ray.get`` that raises a Python error of an item (a model that does not load, a bad input) as itself:
        a fresh actor would fail the same way, so it is not retried. A dead actor is :class:`WorkerLost`."""
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
        except self.ray.exceptions.RayActorError as e:
            raise WorkerLost(str(e), refs) from None

    def _ready(self, handle: list) -> list:
        return self._get(handle)

    def _submit(self, slot: int, method: str, args: tuple):
        return self.actors[slot].run.remote(method, *args)

    def _collect(self, handles: list):
        ready, _ = self.ray.wait(handles, num_returns=1)
        return ready[0], self._get(ready[0])

    def _stop(self, slot: int) -> None:
        actor, self.actors[slot] = self.actors[slot], None
        if actor is not None:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead: nothing to release
                pass
