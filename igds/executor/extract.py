"""Extraction's one driver: the shards still to ingest (:func:`igds.method.extract.plan_shards`, content-keyed), each
computed by a pool worker that writes its two Parquet files, ingested by the driver (the one store owner) as they
complete. The same code runs on every pool; a local pool computes in this process with the caller's model."""

from __future__ import annotations

import time
from collections.abc import Sequence

from igds.executor.pool import PoolRequest
from igds.executor.registry import Opener, local_pool
from igds.method.extract import ExtractConfig, ExtractResult, start_shards
from igds.modeling.batching import EncodedItem
from igds.progress import ProgressFn, null_progress


def run_extraction(store, run_id: str, items: Sequence[EncodedItem], cfg: ExtractConfig, pad_id: int,
                   pool: Opener, progress: ProgressFn | None = None,
                   max_shards: int | None = None) -> ExtractResult:
    """Extract every item not yet stored for ``run_id``, shard by shard, on a pool.

    Each shard is computed by a worker, written as Parquet files (atomically) under ``runs/<run_id>/shards/`` next
    to the store and then ingested by this driver in one transaction. Shard files already written (an earlier run,
    a killed worker) are ingested without a worker. A rerun after a crash or kill skips ingested examples and
    recomputes only the rest; a shard whose worker died runs again on a fresh worker; rows are ingested once per
    shard key, so nothing is duplicated or missing. The run row must exist (``store.start_run``).

    Args:
        pool: opens the pool for a request (:func:`stage_pool`); called only when a shard needs computing.
        max_shards: stop after this many new shards (tests use it to simulate an interruption).
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    plans, n_before = start_shards(store, run_id, items, cfg, progress)
    if max_shards is not None:
        plans = plans[:max_shards]
    total = len(items)
    done = {"n": n_before, "rows": 0, "shards": 0, "tokens": 0, "computed": n_before}

    def ingest(plan, acts, stats) -> None:
        if not plan.written:  # a worker without the driver's filesystem: the driver writes the shard
            plan.write(acts, stats)
        store.ingest_shard(run_id, plan.key, acts, stats, str(plan.acts_path))
        done["n"] += len(plan.items)
        done["computed"] = done["n"]
        done["rows"] += acts.num_rows
        done["shards"] += 1
        done["tokens"] += sum(len(it.input_ids) for it in plan.items)
        store.update_run(run_id, n_done=done["n"], message=f"{done['n']}/{total} examples")
        progress(done["n"], total, f"extract: {done['n']}/{total} examples")

    for plan in [p for p in plans if p.written]:
        ingest(plan, *plan.read())
    todo = [p for p in plans if not p.written]
    retries = 0
    if todo:
        payloads = [(p.items, cfg.to_dict(), pad_id, str(p.acts_path), str(p.stats_path)) for p in todo]
        with pool(PoolRequest("extract", len(todo), progress=progress)) as workers:
            for i, events in workers.imap("extract", payloads):
                for event in events:
                    if event[0] == "batch":  # examples of a shard in flight: progress only
                        done["computed"] += event[1]
                        progress(done["computed"], total, f"extract: {done['computed']}/{total} examples")
                    else:
                        ingest(todo[i], *event[1:])
            retries = workers.retries
    store.update_run(run_id, status="done" if done["n"] >= total else "partial", n_done=done["n"])
    return ExtractResult(run_id=run_id, n_examples=total, n_new=done["n"] - n_before, n_rows=done["rows"],
                         n_shards=done["shards"], seconds=time.perf_counter() - t0, tokens=done["tokens"],
                         retries=retries)


def extract_here(store, run_id: str, model, sae, site: str, items: Sequence[EncodedItem], cfg: ExtractConfig,
                 pad_id: int, progress: ProgressFn | None = None, max_shards: int | None = None) -> ExtractResult:
    """:func:`run_extraction` on a local pool over a model and SAE this process holds."""
    return run_extraction(store, run_id, items, cfg, pad_id, local_pool(model, sae, site), progress, max_shards)
