"""Where heavy stage work runs: this process (``local``, the default) or a Ray cluster (``ray``).

``config`` holds :class:`ExecutorConfig` (the workspace setting ``executor``, overridable per command).
The per-batch functions of each stage stay pure (model + SAE + inputs -> Arrow rows), so a local loop and a
Ray actor call the same code; the store is written by one owner (the driver), never by workers.
"""

from igds.executor.config import EXECUTOR_KINDS, ExecutorConfig, executor_config, save_executor_config

__all__ = ["EXECUTOR_KINDS", "ExecutorConfig", "executor_config", "save_executor_config"]
