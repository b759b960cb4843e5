"""Test setup: offline, seeded, and every test gets its own IGDS workspace under tmp_path."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="session")
def _session_home(tmp_path_factory):
    # module-scoped fixtures run before the per-test ones: give them a workspace that is not cache/
    os.environ["IGDS_HOME"] = str(tmp_path_factory.mktemp("igds_session_home"))
    # tiny models: two torch threads on two cores fight each other (~500x slower forwards)
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(autouse=True)
def _seed_and_isolate(tmp_path, monkeypatch, request):
    random.seed(0)
    np.random.seed(0)
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(1)
    # committed results of record are imported only where a test asks for them (tests/unit/test_record.py)
    monkeypatch.setenv("IGDS_RECORDS", "off")
    # slow tests share the real workspace (converted model) so they do not reconvert every time
    if "slow" in request.keywords:
        monkeypatch.delenv("IGDS_HOME", raising=False)  # the real workspace, to reuse the converted model
        torch.set_num_threads(2)
    else:
        monkeypatch.setenv("IGDS_HOME", str(tmp_path / "igds_home"))
        monkeypatch.delenv("IGDS_STORE", raising=False)
    yield


def pytest_collection_modifyitems(config, items):
    # a test on the local Ray cluster is in the `cluster` tier (`make test-cluster`), whichever file holds it
    for item in items:
        if "ray_local" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


# -- Ray -----------------------------------------------------------------------------------------------------
# One local Ray per test session (started on first use, about 5 s, dashboard included for the Jobs API), sized
# to this machine's 2 cores. A test that uses it must release every actor it started; `ray_local` checks.
_RAY: dict = {}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def _ray_session():
    ray = pytest.importorskip("ray")
    from igds.executor.runtime import start_local  # the project's own loopback-only start

    dashboard_port = _free_port()
    info = start_local(2, dashboard_port=dashboard_port, namespace="igds-tests")
    _RAY.update(address=info.address_info["gcs_address"], dashboard=f"http://127.0.0.1:{dashboard_port}",
                cpus=2.0)
    yield dict(_RAY)
    ray.shutdown()


@pytest.fixture
def ray_local(_ray_session):
    """A running local Ray (``address``, ``dashboard`` URL, ``cpus``); fails a test that leaves CPUs held."""
    import time

    import ray

    yield _ray_session
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < _ray_session["cpus"]:
        if time.monotonic() > deadline:
            pytest.fail(f"the test left Ray CPUs held: {ray.available_resources()}")
        time.sleep(0.2)
