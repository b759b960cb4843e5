"""Extraction: run the model to the SAE's site, encode with the SAE, aggregate per (example, feature).

The heavy part is one pure function, :func:`process_batch` (model + SAE + token ids → Arrow rows,
no I/O), so a local loop, a worker process or a Ray actor can all call it. :func:`run_extraction`
adds shards, resumability and the store.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from igds.config import ConfigBase
from igds.modeling.batching import (
    EncodedItem,
    check_positions,
    keep_mask,
    length_batches,
    pad_batch,
    position_mask,
)
from igds.modeling.hooks import run_until
from igds.progress import ProgressFn, null_progress


@dataclass(frozen=True, kw_only=True)
class ExtractConfig(ConfigBase):
    """How activations are extracted and aggregated.

    Args:
        positions: which token positions count (``igds.modeling.batching.POSITION_SCOPES``): ``content``
            (the example's own prompt content + response, default), ``prompt_content``, ``response``,
            ``last_prompt_token`` or ``all`` (template and instruction included).
        max_length: truncate formatted examples to this many tokens.
        batch_tokens: token budget per forward batch (padded length × rows).
        shard_size: examples per shard (the unit of resume and of scale-out).
        sink_norm_factor: drop positions whose residual norm exceeds this × the batch median.
    """

    positions: str = field(default="content", metadata={
        "help": "token scope: content | prompt_content | response | last_prompt_token | all"})
    max_length: int = field(default=256, metadata={"help": "truncate examples to this many tokens"})
    batch_tokens: int = field(default=4096, metadata={"help": "tokens per forward batch"})
    shard_size: int = field(default=256, metadata={"help": "examples per resumable shard"})
    sink_norm_factor: float = field(default=10.0, metadata={"help": "sink guard: norm > factor × median"})

    def __post_init__(self):
        check_positions(self.positions)
        if self.max_length < 2 or self.batch_tokens < self.max_length or self.shard_size < 1:
            raise ValueError("need max_length >= 2, batch_tokens >= max_length and shard_size >= 1")
        if self.sink_norm_factor <= 1:
            raise ValueError("sink_norm_factor must be > 1")


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`run_extraction` did."""

    run_id: str
    n_examples: int
    n_new: int
    n_rows: int
    n_shards: int
    seconds: float
    tokens: int
    retries: int = 0  # shards recomputed after a worker died (Ray executor)


def aggregate(z: torch.Tensor, rows: torch.Tensor, n_rows: int) -> dict[str, torch.Tensor]:
    """Sparse per-(row, feature) max / sum / count of positive activations.

    Args:
        z: feature activations ``[n_tokens, d_sae]``.
        rows: which row (example) each token belongs to, ``[n_tokens]``.
        n_rows: number of rows.

    Returns:
        dict with ``row``, ``feature``, ``max``, ``sum``, ``count`` (1-D tensors, one entry per pair).
    """
    tok, feat = (z > 0).nonzero(as_tuple=True)
    vals = z[tok, feat].float()
    d_sae = z.shape[1]
    key = rows[tok].long() * d_sae + feat
    uniq, inv = torch.unique(key, return_inverse=True)
    sums = torch.zeros(len(uniq)).index_add_(0, inv, vals)
    maxs = torch.zeros(len(uniq)).scatter_reduce_(0, inv, vals, reduce="amax", include_self=False)
    counts = torch.bincount(inv, minlength=len(uniq))
    return {"row": uniq // d_sae, "feature": uniq % d_sae, "max": maxs, "sum": sums, "count": counts}


@torch.no_grad()
def process_batch(model, sae, site: str, items: Sequence[EncodedItem], cfg: ExtractConfig,
                  pad_id: int) -> tuple[pa.Table, pa.Table]:
    """Extract one batch: early-exit forward, sink guard, SAE encode, aggregation.

    Returns:
        ``(acts, stats)`` Arrow tables: acts has example_id, feature, max_act, sum_act, n_active;
        stats has example_id, n_tokens, n_positions, n_sinks.
    """
    device = next(model.parameters()).device
    ids, attn = pad_batch(items, pad_id, device)
    h = run_until(model, site, ids, attn)
    real = keep_mask(h, attn, cfg.sink_norm_factor).cpu()
    pos = position_mask(items, ids.shape[1], cfg.positions)
    keep = real & pos
    sae_param = next(sae.parameters())
    flat = h[keep.to(h.device)].to(device=sae_param.device, dtype=sae_param.dtype)
    row_of = keep.nonzero(as_tuple=True)[0]
    z = sae.encode(flat)
    agg = aggregate(z.cpu(), row_of, len(items))
    eids = [it.example_id for it in items]
    acts = pa.table({
        "example_id": pa.array([eids[i] for i in agg["row"].tolist()], pa.string()),
        "feature": pa.array(agg["feature"].numpy().astype("int32")),
        "max_act": pa.array(agg["max"].numpy().astype("float32")),
        "sum_act": pa.array(agg["sum"].numpy().astype("float32")),
        "n_active": pa.array(agg["count"].numpy().astype("int32")),
    })
    lengths = attn.sum(1).cpu()
    n_sinks = (attn.bool().cpu() & ~real).sum(1) - 1  # position 0 is excluded by design, not a sink
    stats = pa.table({
        "example_id": pa.array(eids, pa.string()),
        "n_tokens": pa.array(keep.sum(1).numpy().astype("int32")),
        "n_positions": pa.array(lengths.numpy().astype("int32")),
        "n_sinks": pa.array(n_sinks.clamp(min=0).numpy().astype("int32")),
    })
    return acts, stats


def shard_key(example_ids: Sequence[str]) -> str:
    """Content key of a shard: hash of its (sorted) example ids."""
    return hashlib.sha256("\n".join(sorted(example_ids)).encode()).hexdigest()[:12]


def extract_shard(model, sae, site: str, items: Sequence[EncodedItem], cfg: ExtractConfig, pad_id: int,
                  on_batch=None) -> tuple[pa.Table, pa.Table]:
    """Process all items of one shard in length-bucketed batches; concatenate the tables."""
    acts, stats = [], []
    for batch in length_batches(items, cfg.batch_tokens):
        a, s = process_batch(model, sae, site, batch, cfg, pad_id)
        acts.append(a)
        stats.append(s)
        if on_batch:
            on_batch(batch)
    return pa.concat_tables(acts), pa.concat_tables(stats)


def _write_atomic(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(".tmp-" + path.name)
    pq.write_table(table, tmp)
    os.replace(tmp, path)


@dataclass(frozen=True)
class ShardPlan:
    """One shard of a run: its examples (sorted by id), content key and the Parquet files it is written to."""

    key: str
    items: list[EncodedItem]
    acts_path: Path
    stats_path: Path

    @property
    def written(self) -> bool:
        """Both files exist (a finished shard, ingested or not)."""
        return self.acts_path.exists() and self.stats_path.exists()

    def read(self) -> tuple[pa.Table, pa.Table]:
        """The shard's written ``(acts, stats)``."""
        return pq.read_table(self.acts_path), pq.read_table(self.stats_path)

    def write(self, acts: pa.Table, stats: pa.Table) -> None:
        """Write both files atomically (a crash never leaves a half-written shard under its key)."""
        self.acts_path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(acts, self.acts_path)
        _write_atomic(stats, self.stats_path)


def plan_shards(store, run_id: str, items: Sequence[EncodedItem], cfg: ExtractConfig) -> list[ShardPlan]:
    """The shards still to ingest for ``run_id``: the items not stored yet, sorted by example id and cut every
    ``cfg.shard_size``. Every executor cuts shards here, so their content keys (and so their batches) agree."""
    done = store.done_example_ids(run_id)
    pending = sorted((it for it in items if it.example_id not in done), key=lambda it: it.example_id)
    shard_dir = store.run_dir(run_id) / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for start in range(0, len(pending), cfg.shard_size):
        shard = pending[start : start + cfg.shard_size]
        key = shard_key([it.example_id for it in shard])
        out.append(ShardPlan(key, shard, shard_dir / f"acts-{key}.parquet", shard_dir / f"stats-{key}.parquet"))
    return out


def start_shards(store, run_id: str, items: Sequence[EncodedItem], cfg: ExtractConfig,
                 progress: ProgressFn) -> tuple[list[ShardPlan], int]:
    """The start of every extraction driver: the shards still to ingest (:func:`plan_shards`) and how many of the
    ``items`` are already stored, reported through ``progress``."""
    plans = plan_shards(store, run_id, items, cfg)
    n_done = len(items) - sum(len(p.items) for p in plans)
    progress(n_done, len(items), f"extract: {n_done}/{len(items)} examples already stored")
    return plans, n_done


def run_extraction(store, run_id: str, model, sae, site: str, items: Sequence[EncodedItem],
                   cfg: ExtractConfig, pad_id: int, progress: ProgressFn | None = None,
                   max_shards: int | None = None) -> ExtractResult:
    """Extract every item not yet stored for ``run_id``, shard by shard.

    Each shard is computed, written as Parquet files (atomically) under
    ``runs/<run_id>/shards/`` next to the store and then ingested in one transaction. A rerun after a crash or
    kill skips ingested examples, ingests finished-but-uningested shard files, and recomputes only
    the rest, so rows are never duplicated or missing. The run row must exist (``store.start_run``).
    :func:`igds.executor.extract.run_extraction_ray` does the same with the shards computed by Ray actors.

    Args:
        max_shards: stop after this many new shards (used by tests to simulate an interruption).
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    plans, n_before = start_shards(store, run_id, items, cfg, progress)
    n_done = n_before
    total = len(items)
    n_rows = n_shards = tokens = 0
    for plan in plans:
        if max_shards is not None and n_shards >= max_shards:
            break
        shard = plan.items
        if plan.written:
            acts, stats = plan.read()
        else:
            counter = {"n": n_done}

            def on_batch(batch, counter=counter):
                counter["n"] += len(batch)
                progress(counter["n"], total, f"extract: {counter['n']}/{total} examples")

            acts, stats = extract_shard(model, sae, site, shard, cfg, pad_id, on_batch)
            plan.write(acts, stats)
        store.ingest_shard(run_id, plan.key, acts, stats, str(plan.acts_path))
        n_done += len(shard)
        n_rows += acts.num_rows
        n_shards += 1
        tokens += sum(len(it.input_ids) for it in shard)
        store.update_run(run_id, n_done=n_done, message=f"{n_done}/{total} examples")
        progress(n_done, total, f"extract: {n_done}/{total} examples")
    finished = n_done >= total
    store.update_run(run_id, status="done" if finished else "partial", n_done=n_done)
    return ExtractResult(run_id=run_id, n_examples=total, n_new=n_done - n_before,
                         n_rows=n_rows, n_shards=n_shards, seconds=time.perf_counter() - t0, tokens=tokens)
