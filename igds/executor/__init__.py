"""Where heavy stage work runs: a pool of model workers (:mod:`igds.executor.pool`) of the kind the workspace's
executor setting names (``local``, the default: this process; ``ray``: actors on a Ray cluster; or a kind registered
with :func:`igds.executor.registry.register_pool`).

``config`` holds :class:`ExecutorConfig` (the workspace setting ``executor``, overridable per command). Each stage has
one driver that takes a pool (``extract``, ``intervene``, ``nll``, ``evaluate``); the per-item functions stay pure
(model + SAE + inputs -> rows, :mod:`igds.executor.worker`), and the store is written by one owner (the driver), never
by workers.
"""

from igds.executor.config import EXECUTOR_KINDS, ExecutorConfig, executor_config, save_executor_config

__all__ = ["EXECUTOR_KINDS", "ExecutorConfig", "executor_config", "save_executor_config"]
