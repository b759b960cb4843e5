"""Connecting to Ray: an explicit cluster address, an already-initialised Ray (tests, notebooks), or a local Ray
started in this process with ``ExecutorConfig.local_cpus`` CPUs. Ray is imported only here and in the pool, so
the local executor never needs it.

A local Ray listens on loopback only (:func:`start_local`): whoever reaches a Ray port can run code as this user,
so a Ray the project starts for itself is not offered to the network."""

from __future__ import annotations

import math
import os
import socket

from igds import settings
from igds.executor.config import ExecutorConfig
from igds.executor.pool import ExecutorError

CONNECT_TIMEOUT_S = 5.0
LOOPBACK = "127.0.0.1"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # Ray's switch; "0" keeps a node address of 127.0.0.1


def _host_port(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of an address to probe before ``ray.init`` (None for ``auto``/``local``)."""
    if address in ("auto", "local"):
        return None
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"Ray address {address!r}: write host:port (e.g. 10.0.0.5:6379), ray://host:10001 "
                            "or auto")
    return host.strip("[]"), int(port)


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail fast, naming the address, when nothing listens there (``ray.init`` would retry for a minute).

    Raises:
        ExecutorError: malformed address, or no TCP connection within ``timeout_s``.
    """
    hp = _host_port(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as e:
        raise ExecutorError(f"cannot reach the Ray cluster at {address!r} ({e.strerror or e}); start it with "
                            "'ray start --head' there, or set another address with 'igds executor set "
                            "--address ...'") from None


def connect(cfg: ExecutorConfig):
    """Make sure this process is connected to Ray; returns the ``ray`` module.

    An initialised Ray is reused as it is. Otherwise ``cfg.address`` is probed then joined, or, with no address,
    a local Ray with ``cfg.local_cpus`` CPUs and no dashboard is started in this process (:func:`start_local`).
    """
    import ray

    if ray.is_initialized():
        return ray
    if cfg.address:
        check_reachable(cfg.address)
        try:
            ray.init(address=cfg.address, configure_logging=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, TimeoutError) as e:
            raise ExecutorError(f"could not join the Ray cluster at {cfg.address!r}: {e}") from None
    else:
        start_local(cfg.local_cpus)
    return ray


def start_local(num_cpus: int, *, dashboard_port: int | None = None, **init_kwargs):
    """Start a Ray in this process whose servers all listen on 127.0.0.1; returns ``ray.init``'s context.

    That is the GCS, the raylet and its object manager, every worker, the dashboard and its metrics port (44227),
    the dashboard agent (gRPC, and HTTP on 52365), the runtime-env agent and the autoscaler monitor's metrics port
    (44217): each binds the node address, 127.0.0.1 here. By default several bind every interface.

    Ray turns a node address of 127.0.0.1 into the machine's network address (and then cannot reach its own GCS)
    unless it takes the machine for single-node: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read when ``ray`` is
    imported. The switch is set in this process (the constant it sets) and in the environment the node's processes
    inherit (the dashboard, its agents, workers, submitted jobs) while the node starts, then put back, so a later
    ``ray.init(address=...)`` to a real cluster still advertises this machine's reachable address.

    Args:
        num_cpus: CPUs Ray may schedule on.
        dashboard_port: start Ray's dashboard (and its Jobs API) on 127.0.0.1 at this port; None starts none.
        init_kwargs: further ``ray.init`` arguments, e.g. ``namespace``.
    """
    import ray
    from ray._private import ray_constants

    dashboard = (dict(include_dashboard=True, dashboard_host=LOOPBACK, dashboard_port=dashboard_port)
                 if dashboard_port is not None else dict(include_dashboard=False))
    multi_node, env_before = ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(SINGLE_NODE_ENV)
    ray_constants.ENABLE_RAY_CLUSTER = False
    os.environ[SINGLE_NODE_ENV] = "0"
    try:
        return ray.init(num_cpus=num_cpus, _node_ip_address=LOOPBACK, configure_logging=False, log_to_driver=False,
                        **dashboard, **init_kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = multi_node
        if env_before is None:
            os.environ.pop(SINGLE_NODE_ENV, None)
        else:
            os.environ[SINGLE_NODE_ENV] = env_before


def worker_env() -> dict[str, str]:
    """Environment of the model actors: this process's workspace paths and offline switch (the workers of a
    remote cluster must see the same paths: a shared filesystem)."""
    return {"IGDS_HOME": str(settings.home()), "IGDS_DATA": str(settings.data_dir()),
            "IGDS_OFFLINE": "1" if settings.offline() else "0",
            **({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
               if settings.offline() else {})}


def actors_that_fit(ray, cfg: ExecutorConfig, n_tasks: int) -> int:
    """How many actors to start: ``cfg.actors``, no more than there are tasks or than the cluster's CPUs and GPUs
    hold at ``cfg.cpus_per_actor`` / ``cfg.gpus_per_actor`` each.

    Raises:
        ExecutorError: not even one actor fits.
    """
    res = ray.cluster_resources()
    fit = math.floor(res.get("CPU", 0) / cfg.cpus_per_actor + 1e-9)
    if cfg.gpus_per_actor > 0:
        fit = min(fit, math.floor(res.get("GPU", 0) / cfg.gpus_per_actor + 1e-9))
    if fit < 1:
        raise ExecutorError(f"the Ray cluster has {res.get('CPU', 0):g} CPUs and {res.get('GPU', 0):g} GPUs; one "
                            f"actor needs {cfg.cpus_per_actor:g} CPUs and {cfg.gpus_per_actor:g} GPUs ('igds executor "
                            "set --cpus-per-actor / --gpus-per-actor')")
    return max(1, min(cfg.actors, fit, n_tasks))
