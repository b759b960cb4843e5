"""The executor setting: which engine runs extraction, interventions, NLL tables, evaluation and jobs."""

from __future__ import annotations

from dataclasses import dataclass, field

from igds.config import ConfigBase

EXECUTOR_KINDS = ("local", "ray")  # the built-in pools; igds.executor.pool.register_pool adds others
SETTING_KEY = "executor"


@dataclass(frozen=True, kw_only=True)
class ExecutorConfig(ConfigBase):
    """Where the heavy per-batch work runs.

    Args:
        kind: the pool the stages run on: ``local`` (this process, the default), ``ray`` (actors on a Ray cluster)
            or a kind registered with :func:`igds.executor.pool.register_pool`.
        address: Ray cluster address (``ray://host:10001``, ``host:6379`` or ``auto``); None starts a local Ray
            in this process with ``local_cpus`` CPUs.
        local_cpus: CPUs a local Ray may use when no address is given.
        actors: model actors (one model + SAE each) per stage.
        cpus_per_actor: CPUs each actor reserves; also its torch thread count. Sized explicitly: Ray's default
            of one CPU per actor plus a task deadlocks a 2-core machine.
        gpus_per_actor: GPUs each actor reserves (0 on CPU-only clusters).
        max_retries: how often a failed shard (a killed worker) is retried before the run fails.
        job_target: where a background job runs: ``local`` (a process here) or ``ray`` (submitted to ``address``).
        dashboard_address: the Ray dashboard (Jobs API) address used when ``job_target`` is ``ray``; None derives
            ``http://<host of address>:8265``.
    """

    kind: str = field(default="local", metadata={"help": "local | ray"})
    address: str | None = field(default=None, metadata={"help": "Ray cluster address; none starts a local Ray"})
    local_cpus: int = field(default=2, metadata={"help": "CPUs of a local Ray started without an address"})
    actors: int = field(default=2, metadata={"help": "model actors per stage"})
    cpus_per_actor: float = field(default=1.0, metadata={"help": "CPUs (and torch threads) per actor"})
    gpus_per_actor: float = field(default=0.0, metadata={"help": "GPUs per actor"})
    max_retries: int = field(default=3, metadata={"help": "retries of a failed shard"})
    job_target: str = field(default="local", metadata={"help": "where background jobs run: local | ray"})
    dashboard_address: str | None = field(default=None, metadata={"help": "Ray dashboard (Jobs API) address"})

    def __post_init__(self):
        if not self.kind:  # a kind is checked against the registered pools when one opens (check_executor)
            raise ValueError("executor kind is empty; use local, ray or a registered kind")
        if self.job_target not in EXECUTOR_KINDS:
            raise ValueError(f"job target {self.job_target!r}; use one of {', '.join(EXECUTOR_KINDS)}")
        if self.actors < 1 or self.cpus_per_actor <= 0 or self.gpus_per_actor < 0 or self.local_cpus < 1:
            raise ValueError("need actors >= 1, cpus_per_actor > 0, gpus_per_actor >= 0 and local_cpus >= 1")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")


def executor_config(store, **overrides) -> ExecutorConfig:
    """The workspace's executor setting (stored in the store's settings), with ``overrides`` (None ignored)."""
    stored = store.get_setting(SETTING_KEY) or {}
    return ExecutorConfig.from_dict({**stored, **{k: v for k, v in overrides.items() if v is not None}})


def save_executor_config(store, cfg: ExecutorConfig) -> None:
    """Make ``cfg`` the workspace's executor setting (every page, CLI command and job reads it)."""
    store.set_setting(SETTING_KEY, cfg.to_dict())
