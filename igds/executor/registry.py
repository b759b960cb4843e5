"""The registry of executor kinds: each names a pool factory (:func:`register_pool`). The executor kind
(``ExecutorConfig.kind``) is read here, in exactly one place (:func:`_kind_of`); a stage driver takes an
:data:`Opener` (:func:`stage_pool`) and never asks which kind it runs on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from igds.executor.config import ExecutorConfig
from igds.executor.pool import ExecutorError, Loaded, LocalPool, Pool, PoolRequest

PoolFactory = Callable[[ExecutorConfig, PoolRequest], Pool]


@dataclass(frozen=True)
class _Kind:
    factory: PoolFactory
    in_process: bool
    check: Callable[[ExecutorConfig], None] | None


_POOLS: dict[str, _Kind] = {}


def register_pool(kind: str, factory: PoolFactory, in_process: bool = False,
                  check: Callable[[ExecutorConfig], None] | None = None) -> None:
    """Make ``kind`` an executor kind: ``factory(executor_config, request)`` returns a started :class:`Pool`.
    ``ExecutorConfig(kind=...)`` then accepts it and every stage runs on it.

    Args:
        in_process: the pool computes in the calling process (a background job then holds the local slot).
        check: probes the setting before any model loads (e.g. that a cluster address answers); raises
            :class:`ExecutorError`.
    """
    _POOLS[kind] = _Kind(factory, in_process, check)


def unregister_pool(kind: str) -> None:
    """Forget a kind :func:`register_pool` added (a setting naming it is then refused by name)."""
    _POOLS.pop(kind, None)


def pool_kinds() -> tuple[str, ...]:
    """The registered executor kinds."""
    return tuple(_POOLS)


def _kind_of(executor: ExecutorConfig) -> _Kind:
    """The registered pool kind ``executor`` names: the one place the executor kind is read."""
    kind = _POOLS.get(executor.kind)
    if kind is None:
        raise ExecutorError(f"no executor {executor.kind!r}; registered: {', '.join(_POOLS)}")
    return kind


def runs_here(executor: ExecutorConfig) -> bool:
    """Whether the pool of ``executor`` computes in this process (so a background job holds the local slot)."""
    return _kind_of(executor).in_process


def check_executor(executor: ExecutorConfig, probe: bool = True) -> None:
    """Check ``executor`` before any model loads: its kind is registered and (``probe``) it answers, e.g. a cluster
    address (an unreachable one fails here, naming it).

    Raises:
        ExecutorError: an unknown kind, or a probe that failed.
    """
    kind = _kind_of(executor)
    if probe and kind.check is not None:
        kind.check(executor)


def open_pool(executor: ExecutorConfig, req: PoolRequest) -> Pool:
    """A started pool of the kind ``executor`` names, for ``req``.

    Raises:
        ExecutorError: no pool of that kind is registered.
    """
    return _kind_of(executor).factory(executor, req)


Opener = Callable[[PoolRequest], Pool]


def stage_pool(executor: ExecutorConfig, loaded: Loaded | None = None,
               spec: Callable[[], Any] | None = None) -> Opener:
    """What a stage driver takes: a pool opener. A request gets the caller's loaded model (for in-process pools)
    and the stored specs' loader (for remote ones) before :func:`open_pool` opens the kind ``executor`` names; the
    driver opens a pool only when it has work."""

    def opener(req: PoolRequest) -> Pool:
        return open_pool(executor, replace(req, loaded=req.loaded or loaded, spec=req.spec or spec,
                                           max_retries=executor.max_retries))

    return opener


def local_pool(model, sae=None, site: str = "") -> Opener:
    """The opener of a local pool serving a model (and SAE) this process already holds."""
    return stage_pool(ExecutorConfig(), Loaded(model, None, sae, site))


def _local(executor: ExecutorConfig, req: PoolRequest) -> Pool:
    return LocalPool(req).start()


def _ray(executor: ExecutorConfig, req: PoolRequest) -> Pool:  # Ray is imported only when a Ray pool opens
    from igds.executor.ray_pool import RayPool

    return RayPool(executor, req).start()


def _ray_check(executor: ExecutorConfig) -> None:
    from igds.executor.runtime import check_reachable

    if executor.address:
        check_reachable(executor.address)


register_pool("local", _local, in_process=True)
register_pool("ray", _ray, check=_ray_check)
