"""Executors are pools (issue 25): a third kind of pool, registered by one call, runs every stage driver.

The fake kind here keeps its workers in processes of its own (``multiprocessing``, spawned), each loading the tiny
model and SAE from the specs the store records, as a cluster's workers would. It runs the four pooled stages
(extraction, interventions, NLL tables, evaluation) through the workspace entry points and gives the golden
fixture's selections, F* and (up to chunking's float rounding) numbers; a worker SIGKILLed mid-run is replaced and
its item retried, with no duplicate or missing row. Nothing in ``igds/`` names this kind.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
from multiprocessing.connection import wait

import pytest

from igds.executor.config import ExecutorConfig
from igds.executor.pool import Pool, PoolRequest, WorkerLost, run_method
from igds.executor.registry import register_pool, unregister_pool
from igds.method.config import InterventionConfig
from tests.integration import test_golden_stages as golden

KIND = "procs"


def serve(conn, spec: dict) -> None:
    """A worker process: load from the spec, then run ``(method, args)`` items until the pipe closes."""
    from igds.executor.worker import ModelWorker

    worker = ModelWorker(spec, cpus=1.0)
    try:
        conn.send(("ok", worker.load()))
        while True:
            try:
                method, args = conn.recv()
            except EOFError:
                return
            try:
                conn.send(("ok", run_method(worker, method, args)))
            except Exception as e:  # the item's own error: the driver raises it
                conn.send(("error", e))
    finally:
        conn.close()


class ProcessPool(Pool):
    def __init__(self, executor: ExecutorConfig, req: PoolRequest):
        super().__init__(max(1, min(executor.actors, req.n_items)), req)
        self.spec = req.spec().to_dict()
        self.procs: list = [None] * self.n
        self.conns: list = [None] * self.n
        self._seq = 0
        self._dead: set = set()  # items sent to a worker already gone

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None and p.is_alive()]

    def _start(self, slot: int):
        ctx = mp.get_context("spawn")
        here, there = ctx.Pipe()
        proc = ctx.Process(target=serve, args=(there, self.spec), daemon=True)
        proc.start()
        there.close()
        self.procs[slot], self.conns[slot] = proc, here
        return slot

    def _recv(self, slot: int, handle):
        try:
            status, value = self.conns[slot].recv()
        except (EOFError, ConnectionResetError) as e:
            raise WorkerLost(f"worker process {self.procs[slot].pid} died ({e!r})", handle) from None
        if status == "error":
            raise value
        return value

    def _ready(self, slot: int) -> list:
        out = [self._recv(slot, None)]
        for method, args in self.setup:
            self.conns[slot].send((method, args))
            out.append(self._recv(slot, None))
        return out

    def _submit(self, slot: int, method: str, args: tuple):
        self._seq += 1
        if KILL.get("method") == method and not KILL.get("pid"):  # the worker dies as it takes this item
            KILL["pid"] = self.procs[slot].pid
            os.kill(KILL["pid"], signal.SIGKILL)
            self.procs[slot].join(10)
        try:
            self.conns[slot].send((method, args))
        except OSError:  # the worker died between items
            self._dead.add((slot, self._seq))
        return (slot, self._seq)

    def _collect(self, handles: list):
        for handle in handles:
            if handle in self._dead:
                self._dead.discard(handle)
                raise WorkerLost(f"worker in slot {handle[0]} was gone", handle)
        by_conn = {self.conns[slot]: (slot, seq) for slot, seq in handles}
        conn = wait(list(by_conn))[0]
        handle = by_conn[conn]
        return handle, self._recv(handle[0], handle)

    def _stop(self, slot: int) -> None:
        proc, conn = self.procs[slot], self.conns[slot]
        self.procs[slot] = self.conns[slot] = None
        if conn is not None:
            conn.close()
        if proc is not None:
            proc.kill()
            proc.join(10)


OPENED: list[ProcessPool] = []
KILL: dict = {}  # {"method": m}: SIGKILL the worker that gets the first item of method m


def open_processes(executor: ExecutorConfig, req: PoolRequest) -> Pool:
    pool = ProcessPool(executor, req)
    OPENED.append(pool)
    return pool.start()


@pytest.fixture(autouse=True)
def procs_kind():
    """The fake kind, registered by one call for this module's tests only."""
    register_pool(KIND, open_processes)
    yield
    unregister_pool(KIND)


def candidates_of(model, tok, sae):
    """Dev items, the 6 features firing on most dev tokens, their density and a mean activation of 1."""
    import numpy as np

    from igds.method.intervene import feature_acts_at, prepare_dev
    from tests.helpers import make_items
    from tests.integration.test_ray_executor import SITE

    items = make_items(tok, repeat=2)
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, InterventionConfig(precision="fp32"))
    acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    count = (acts > 0).sum((0, 1))
    density = (acts > 0).float().mean((0, 1)).numpy()
    return items, [int(f) for f in np.argsort(-count.numpy(), kind="stable")[:6]], density, \
        np.where(density > 0, 1.0, np.nan)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from igds.demo import save_tiny_model, save_tiny_sae

    root = tmp_path_factory.mktemp("pools")
    return save_tiny_model(root / "model"), save_tiny_sae(root / "sae", d_in=32, layer=1)


def test_a_registered_third_pool_runs_every_stage_driver(folders, tmp_path):
    OPENED.clear()
    got = golden.run_stages(tmp_path / "procs.duckdb", folders, ExecutorConfig(kind=KIND, actors=2))
    # every stage opened this pool: extraction, interventions, the Loss and IFD NLL tables, evaluation
    assert [p.stage for p in OPENED] == ["extract", "intervene", "nll", "evaluate"]
    assert all(p.n == 2 for p in OPENED[:3]) and all(not p.pids() for p in OPENED)  # all workers stopped
    # the golden fixture's results; chunks replay their rows in batches of their own (float rounding, as on Ray)
    golden.check(got, "ray", tol=1e-5)


def test_a_worker_killed_mid_run_is_replaced_and_its_item_retried(folders, tmp_path):
    """Interventions on two worker processes: the worker that takes the first chunk of candidates is SIGKILLed as
    it takes it; the chunk runs again on a fresh worker (its model loaded, its dev prefix cached again); every
    feature is stored once and the effects are those of an uninterrupted run."""
    from igds.executor.intervene import Candidates, measure_effects
    from igds.executor.registry import stage_pool
    from igds.executor.worker import spec_for
    from tests.integration.test_ray_executor import SITE, tiny_store

    def run(path, progress=None):
        store, _, model, tok, sae, _ = tiny_store(path, folders)
        items, cands, density, mean_act = candidates_of(model, tok, sae)
        mkey = store.query_df("SELECT model_key FROM models").model_key[0]
        skey = store.query_df("SELECT sae_key FROM saes").sae_key[0]
        store.start_run("e", "intervene", {"intervene": ICFG.to_dict(), "compute": "fp32"}, mkey, skey,
                        n_total=len(cands))
        pool = stage_pool(ExecutorConfig(kind=KIND, actors=2, max_retries=2), None,
                          lambda: spec_for(store, mkey, skey, SITE, "float32"))
        return store, measure_effects(store, "e", items, Candidates(cands, mean_act, density), ICFG,
                                      tok.pad_token_id, pool, progress=progress), cands

    ICFG = InterventionConfig(null_directions=4, null_features=2, precision="fp32", sweep_top=2, batch_rows=16)
    _, clean, cands = run(tmp_path / "clean.duckdb")
    OPENED.clear()
    KILL.update(method="feature_effects")
    try:
        store, res, _ = run(tmp_path / "killed.duckdb")
    finally:
        killed = KILL.pop("pid", None)
        KILL.clear()
    assert killed and OPENED[-1].retries == 1
    assert store.run("e")["status"] == "done"
    n = store.scalar("SELECT count(*) FROM effect_summary WHERE effect_id = 'e'")
    distinct = store.scalar("SELECT count(*) FROM (SELECT DISTINCT feature, kind, alpha FROM effect_summary "
                            "WHERE effect_id = 'e')")
    assert n == distinct == len(clean.summary)
    key = ["feature", "kind", "alpha"]
    a = clean.summary.sort_values(key).reset_index(drop=True)
    b = res.summary.sort_values(key).reset_index(drop=True)
    assert a[key].equals(b[key]) and set(b.feature) == set(cands)
    assert (abs(a.effect - b.effect) < 1e-6).all()
