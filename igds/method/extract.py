"""Extraction: run the model to the SAE's site, encode with the SAE, aggregate per (example, feature).

The heavy part is one pure function, :func:`process_batch` (model + SAE + token ids → Arrow rows,
no I/O), so any pool's worker can call it. The one driver, :func:`igds.executor.extract.run_extraction`, adds
shards, resumability and the store.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from igds.method.config import ExtractConfig  # noqa: F401 - re-exported
from igds.modeling.batching import (
    EncodedItem,
    keep_mask,
    length_batches,
    pad_batch,
    position_mask,
)
from igds.modeling.hooks import run_until
from igds.progress import ProgressFn


@dataclass(frozen=True)
class ExtractResult:
    """What :func:`igds.executor.extract.run_extraction` did."""

    run_id: str
    n_examples: int
    n_new: int
    n_rows: int
    n_shards: int
    seconds: float
    tokens: int
    retries: int = 0  # shards recomputed after a worker died


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


def shard_batches(model, sae, site: str, items: Sequence[EncodedItem], cfg: ExtractConfig,
                  pad_id: int) -> Iterator[tuple[int, pa.Table, pa.Table]]:
    """Process the items of one shard in length-bucketed batches: ``(examples in the batch, acts, stats)`` per
    batch, as each is done."""
    for batch in length_batches(items, cfg.batch_tokens):
        yield len(batch), *process_batch(model, sae, site, batch, cfg, pad_id)


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
