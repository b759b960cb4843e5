"""Extraction on Ray actors: the shards the local executor would cut (:func:`igds.method.extract.plan_shards`, same
content keys, same batches), each computed by a model actor that writes its two Parquet files, ingested by the
driver (the one store owner) as they complete."""

from __future__ import annotations

import time
from collections.abc import Sequence

from igds.executor.config import ExecutorConfig
from igds.executor.pool import WorkerPool
from igds.executor.worker import WorkerSpec, spec_for
from igds.method.extract import ExtractConfig, ExtractResult, start_shards
from igds.modeling.batching import EncodedItem
from igds.progress import ProgressFn, null_progress


def run_extraction_ray(store, run_id: str, items: Sequence[EncodedItem], cfg: ExtractConfig, pad_id: int,
                       executor: ExecutorConfig, progress: ProgressFn | None = None, max_shards: int | None = None,
                       spec: WorkerSpec | None = None, dtype: str | None = None) -> ExtractResult:
    """:func:`igds.method.extract.run_extraction` with the shards computed by Ray actors.

    Shard files already written (by an earlier run or a killed worker) are ingested without an actor; the others
    are computed, one shard per task, by actors that load the run's model and SAE from their stored specs. A shard
    whose actor died runs again on a fresh actor (``executor.max_retries``); rows are ingested once per shard key,
    so a rerun or a retry never duplicates or drops a row. The run row must exist (``store.start_run``).

    Args:
        spec: what the actors load; None reads the run's model / SAE specs from the store.
        dtype: the weights' dtype the run's model key was made with (e.g. ``float32``); None keeps the spec's.
        max_shards: stop after this many new shards.
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    plans, n_before = start_shards(store, run_id, items, cfg, progress)
    n_done = n_before
    total = len(items)
    if max_shards is not None:
        plans = plans[:max_shards]
    n_rows = n_shards = tokens = 0

    def ingest(plan, acts, stats) -> None:
        nonlocal n_done, n_rows, n_shards, tokens
        if not plan.written:  # a worker without the driver's filesystem: the driver writes the shard
            plan.write(acts, stats)
        store.ingest_shard(run_id, plan.key, acts, stats, str(plan.acts_path))
        n_done += len(plan.items)
        n_rows += acts.num_rows
        n_shards += 1
        tokens += sum(len(it.input_ids) for it in plan.items)
        store.update_run(run_id, n_done=n_done, message=f"{n_done}/{total} examples")
        progress(n_done, total, f"extract: {n_done}/{total} examples")

    for plan in [p for p in plans if p.written]:
        ingest(plan, *plan.read())
    todo = [p for p in plans if not p.written]
    retries = 0
    if todo:
        if spec is None:
            run = store.run(run_id)
            site = (run.get("config") or {}).get("site", "")
            spec = spec_for(store, run.get("model_key"), run.get("sae_key"), site, dtype)
        payloads = [(p.items, cfg.to_dict(), pad_id, str(p.acts_path), str(p.stats_path)) for p in todo]
        with WorkerPool(executor, spec, len(todo), progress=progress, stage="extract") as pool:
            for i, (acts, stats) in pool.imap_unordered("extract", payloads):
                ingest(todo[i], acts, stats)
            retries = pool.retries
    finished = n_done >= total
    store.update_run(run_id, status="done" if finished else "partial", n_done=n_done)
    return ExtractResult(run_id=run_id, n_examples=total, n_new=n_done - n_before, n_rows=n_rows,
                         n_shards=n_shards, seconds=time.perf_counter() - t0, tokens=tokens, retries=retries)
