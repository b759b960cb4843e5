"""Loopback by default (issue 23): every listening socket of a local Ray the project starts is on 127.0.0.1 or ::1.

A Ray port grants code execution to whoever reaches it, so the Ray that ``igds.executor.runtime`` starts (for the
Ray executor without an address, and the session fixture ``ray_local``, which starts it through the same function)
must not be reachable from the network. The sockets are read from the process table: this process (the driver) and
all its descendants, which are the Ray session's GCS, raylet, dashboard, agents, monitor and workers.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import time

import psutil
import pytest

pytestmark = pytest.mark.cluster

# Sockets allowed on a wildcard or network address: {process label: reason}. None with the pinned Ray (2.60): every
# server binds the node address, 127.0.0.1. Without start_local's settings the GCS, raylet, workers and the driver
# bind "::", the dashboard agent, dashboard and monitor metrics ports 0.0.0.0, and the runtime-env agent and the
# dashboard agent's HTTP port the machine's network address.
WILDCARD_ALLOWED: dict[str, str] = {}
# Servers every local Ray runs; finding each with a socket shows the check saw the session's processes. (The
# dashboard head and the autoscaler monitor listen too, on fixed metrics ports, 44227 and 44217, that a second Ray on
# the machine may hold already: then they have no socket to check.)
SERVERS = {"gcs_server", "raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent"}
SETTLE_S = 60.0


def label(proc: psutil.Process) -> str:
    """A process's name as Ray's process table shows it: ``gcs_server``, ``ray::IDLE``, ``dashboard.py``, ..."""
    cmd = proc.cmdline()
    if not cmd:
        return proc.name()
    script = next((c for c in cmd[1:3] if c.endswith(".py")), cmd[0])  # python -u .../monitor.py: the script
    return os.path.basename(script)


def listening_sockets(root: psutil.Process) -> list[tuple[str, str, int]]:
    """``(process label, address, port)`` of every listening TCP socket and bound UDP socket of ``root`` and its
    descendants."""
    out = []
    for proc in [root, *root.children(recursive=True)]:
        try:
            name, conns = label(proc), proc.net_connections(kind="inet")
        except psutil.Error:  # a worker that just exited
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN or (c.type == socket.SOCK_DGRAM and not c.raddr):
                out.append((name, c.laddr.ip, c.laddr.port))
    return out


def is_loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    mapped = getattr(ip, "ipv4_mapped", None)  # "::ffff:127.0.0.1": an IPv6 socket bound to 127.0.0.1
    return (mapped or ip).is_loopback


def settled_sockets(root: psutil.Process) -> list[tuple[str, str, int]]:
    """The sockets once every server in :data:`SERVERS` listens (the agents start a few seconds after ray.init)."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        found = listening_sockets(root)
        if {name for name, _, _ in found} >= SERVERS or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def check_loopback(found: list[tuple[str, str, int]]) -> None:
    missing = SERVERS - {name for name, _, _ in found}
    assert not missing, f"no listening socket found for {sorted(missing)}: the check did not see the whole session"
    exposed = [s for s in found if not is_loopback(s[1]) and s[0] not in WILDCARD_ALLOWED]
    assert not exposed, f"Ray sockets reachable from the network: {exposed}"


def env_task(ray) -> str:
    """Run a task with a runtime environment (the actors' ``worker_env`` way): it needs the runtime-env agent, whose
    own connection to the GCS fails if it resolves 127.0.0.1 to the network address."""
    return ray.get(ray.remote(num_cpus=1)(lambda: os.environ["IGDS_PROBE"])
                   .options(runtime_env={"env_vars": {"IGDS_PROBE": "seen"}}).remote(), timeout=120)


def test_session_ray_listens_on_loopback_only_and_serves_jobs(ray_local) -> None:
    import ray

    from igds.jobs import ray_target

    assert env_task(ray) == "seen"  # a worker process too
    # the Jobs API (dashboard head -> dashboard agent on the node address) still finds its agent
    sid = ray_target.submit_entrypoint(ray_local["dashboard"], entrypoint="true", entrypoint_num_cpus=0)
    info = {"dashboard": ray_local["dashboard"], "submission_id": sid}
    deadline = time.monotonic() + 120
    while ray_target.ray_state(info) not in ray_target.ENDED and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ray_target.ray_state(info) == "SUCCEEDED"
    found = settled_sockets(psutil.Process())
    check_loopback(found)
    dashboard_port = int(ray_local["dashboard"].rsplit(":", 1)[1])  # the Jobs API the job tests submit to
    gcs_port = int(ray_local["address"].rsplit(":", 1)[1])
    assert {(n, p) for n, _, p in found} >= {("dashboard.py", dashboard_port), ("gcs_server", gcs_port)}
    assert ray_local["address"].startswith("127.0.0.1:")


# The Ray executor with no address (``igds extract --executor ray``): connect() starts the local Ray. In a fresh
# interpreter, since this one may already hold the session's Ray; it prints the GCS address, then waits for stdin.
CONNECT = """
import os
import sys
import ray
from igds.executor.config import ExecutorConfig
from igds.executor.runtime import connect

connect(ExecutorConfig(kind="ray", local_cpus=1))
probe = ray.remote(num_cpus=1)(lambda: os.environ["IGDS_PROBE"]).options(runtime_env={"env_vars": {"IGDS_PROBE": "1"}})
assert ray.get(probe.remote(), timeout=120) == "1"
assert os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") is None  # put back once the node is up
print(ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def test_executor_starts_its_local_ray_on_loopback_only() -> None:
    child = subprocess.Popen([sys.executable, "-c", CONNECT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        address = child.stdout.readline().strip()
        assert address, child.stderr.read()[-3000:] if child.poll() is not None else "no address printed"
        check_loopback(settled_sockets(psutil.Process(child.pid)))
        assert address.startswith("127.0.0.1:")
    finally:
        child.stdin.close()  # the child shuts its Ray down and exits
        try:
            child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
