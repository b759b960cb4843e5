"""The Ray pool (issue 17) on a local Ray with 2 CPUs (the session fixture ``ray_local``): extraction through Ray
actors gives the local pool's rows bit for bit; an actor SIGKILLed mid-run is replaced and its shard retried with no
duplicate or missing row; a rerun is a no-op; a cluster too small for one actor is refused by name. (Resuming an
interrupted run is the driver's, the same on every pool: ``tests/integration/test_extract.py`` tests it locally.)

The actors load a tiny random Llama and a tiny SAE from folders, through the specs the store records (as they would
load a user's model on a cluster)."""

import os
import signal

import pytest
import torch

from igds.executor.config import ExecutorConfig
from igds.executor.extract import extract_here, run_extraction
from igds.executor.registry import stage_pool
from igds.executor.worker import spec_for
from igds.method.config import ExtractConfig
from tests.helpers import make_items, registered_store

SITE = "blocks.1.hook_resid_post"
# 24 examples in 8 shards of 3, each shard in 2-3 batches: the sink guard's batch median makes batches matter
EXTRACT = ExtractConfig(shard_size=3, max_length=64, batch_tokens=96)
RAY2 = dict(kind="ray", actors=2, cpus_per_actor=1.0, max_retries=2)


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory):
    from igds.demo import save_tiny_model, save_tiny_sae

    root = tmp_path_factory.mktemp("tiny-ray")
    return save_tiny_model(root / "model"), save_tiny_sae(root / "sae", d_in=32, layer=1)


def tiny_store(path, folders):
    """A store with the tiny model and SAE registered with their specs, an extraction run started; returns
    ``(store, run_id, model, tokenizer, sae, items)``."""
    store, model, tok, sae, mkey, skey = registered_store(path, folders, SITE)
    run_id = EXTRACT.stage_key(mkey, skey)
    items = make_items(tok, repeat=3)
    store.start_run(run_id, "extract", {"extract": EXTRACT.to_dict(), "site": SITE}, mkey, skey,
                    n_total=len(items))
    return store, run_id, model, tok, sae, items


def on_ray(store, run_id: str, **executor):
    """The extraction driver's pool opener for Ray actors loading the run's stored model and SAE specs."""
    run = store.run(run_id)
    return stage_pool(ExecutorConfig(**executor), None,
                      lambda: spec_for(store, run["model_key"], run["sae_key"], SITE, "float32"))


def rows(store, run_id):
    acts = store.query_df("SELECT example_id, feature, max_act, sum_act, n_active FROM feature_acts WHERE run_id = ? "
                          "ORDER BY example_id, feature", [run_id])
    stats = store.query_df("SELECT example_id, n_tokens, n_positions, n_sinks FROM example_stats WHERE run_id = ? "
                           "ORDER BY example_id", [run_id])
    return ({(r.example_id, r.feature): (r.max_act, r.sum_act, r.n_active) for r in acts.itertuples()},
            [tuple(r) for r in stats.itertuples(index=False)], len(acts))


@pytest.fixture(scope="module")
def local_rows(tiny_folders, tmp_path_factory):
    store, run_id, model, tok, sae, items = tiny_store(tmp_path_factory.mktemp("local") / "s.duckdb", tiny_folders)
    torch.set_num_threads(1)
    extract_here(store, run_id, model, sae, SITE, items, EXTRACT, tok.pad_token_id)
    return rows(store, run_id)


def _kill_one_worker_once(state: dict, address: str):
    """A progress callback that SIGKILLs one live model actor right after the first shard is ingested."""
    from ray.util.state import list_actors

    def progress(done, total, message):
        state.setdefault("messages", []).append(message)
        if state["killed"] or not message.startswith("extract: ") or done == 0 or "already" in message:
            return
        alive = list_actors(address=address, filters=[("class_name", "=", "RemoteWorker"), ("state", "=", "ALIVE")])
        pid = next(a.pid for a in alive if a.pid)
        os.kill(pid, signal.SIGKILL)
        state["killed"] = pid

    return progress


def test_a_killed_worker_is_retried_without_duplicate_or_missing_rows_and_a_rerun_is_a_noop(
        ray_local, tiny_folders, local_rows, tmp_path):
    store, run_id, _, tok, _, items = tiny_store(tmp_path / "s.duckdb", tiny_folders)
    state = {"killed": None}
    res = run_extraction(store, run_id, items, EXTRACT, tok.pad_token_id, on_ray(store, run_id, **RAY2),
                         progress=_kill_one_worker_once(state, ray_local["address"]))
    assert state["killed"], "no worker was killed"
    # after the first of 8 shards, the killed actor had a shard in flight or got the next one: it ran again
    assert res.retries >= 1 and res.n_new == len(items) and store.run(run_id)["status"] == "done"
    # same shards, same batches, same fp32 weights, one torch thread on both sides: bit-exact, not approximately
    assert rows(store, run_id) == local_rows and local_rows[2] > 0
    assert any("starting 2 Ray actor" in m for m in state["messages"])
    # the workers wrote each shard under its content key
    shard_dir = store.run_dir(run_id) / "shards"
    assert len(list(shard_dir.glob("*.parquet"))) == 16
    assert not any(p.name.startswith(".tmp") for p in shard_dir.iterdir())
    n = store.scalar("SELECT count(*) FROM feature_acts WHERE run_id = ?", [run_id])
    distinct = store.scalar("SELECT count(*) FROM (SELECT DISTINCT example_id, feature FROM feature_acts "
                            "WHERE run_id = ?)", [run_id])
    assert n == distinct == local_rows[2]
    again = run_extraction(store, run_id, items, EXTRACT, tok.pad_token_id, on_ray(store, run_id, **RAY2))
    assert again.n_new == 0 and again.n_shards == 0 and rows(store, run_id) == local_rows


def test_a_cluster_too_small_for_one_actor_is_refused_by_name(ray_local, tiny_folders, tmp_path):
    from igds.executor.runtime import ExecutorError

    store, run_id, _, tok, _, items = tiny_store(tmp_path / "s.duckdb", tiny_folders)
    with pytest.raises(ExecutorError, match="one actor needs 4 CPUs"):
        run_extraction(store, run_id, items, EXTRACT, tok.pad_token_id,
                       on_ray(store, run_id, kind="ray", cpus_per_actor=4.0))
    assert store.scalar("SELECT count(*) FROM feature_acts") == 0


def test_extract_tasks_runs_on_the_workspace_executor_setting(ray_local, tiny_folders, tmp_path):
    from igds.executor.config import save_executor_config
    from igds.executor.runtime import ExecutorError
    from igds.workflow.workspace import Workspace, extract_tasks

    store, run_id, model, tok, sae, _ = tiny_store(tmp_path / "s.duckdb", tiny_folders)
    run = store.run(run_id)
    ws = Workspace(store=store, model=model, tokenizer=tok, sae=sae, model_key=run["model_key"],
                   sae_key=run["sae_key"], site=SITE, sae_info={})
    save_executor_config(store, ExecutorConfig(kind="ray", cpus_per_actor=64.0))
    cfg = ExtractConfig(max_length=64, shard_size=512)
    with pytest.raises(ExecutorError, match="one actor needs 64 CPUs"):
        extract_tasks(ws, ["summarization"], cfg, pool_setting="task-only")
    # an explicit executor wins over the setting
    res = extract_tasks(ws, ["summarization"], cfg, pool_setting="task-only", executor=ExecutorConfig(), max_shards=1)
    assert res.n_new > 0 and res.retries == 0
