"""Re-selection latency of the feature-resonant score over synthetic activation stores.

Usage: python bench/frs.py [--rows 1000000 10000000] [--repeats 30]

For each size, builds a store with that many (example, feature) rows (examples × features per
example, as extraction produces), loads the pool's activations of 64 candidate features into a
``ResonanceMatrix`` (the one scoring path: slider, saving, CLI, experiment and "why selected"), then
re-selects the whole pool repeatedly with a new random feature subset / aggregation each time (the
dashboard's slider case: subset, p99 scales over the pool, scores, ratio cut) and prints the load
time and the p50/p95 re-selection latency, against a bare ``count(*)`` scan of the same table
measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from igds.data.records import Example
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, select_from_ranking
from igds.scope import PoolSpec
from igds.store import ActivationStore
from igds.workflow.stages import pool_matrix


def build(store: ActivationStore, n_rows: int, per_example: int = 200, d_sae: int = 4096, seed: int = 0) -> int:
    """Synthetic examples (a third general) and their activations, written through the store's own API."""
    rng = np.random.default_rng(seed)
    n_ex = n_rows // per_example
    ids = np.array([f"{i:016x}" for i in range(n_ex)])
    store.add_examples([Example(i, "general" if k % 3 == 0 else "summarization", "synthetic", "train", f"p{k}", "r")
                        for k, i in enumerate(ids)], dataset="bench")
    stats = pa.table({"example_id": ids, "n_tokens": rng.integers(20, 200, n_ex).astype("int32"),
                      "n_positions": np.full(n_ex, 200, "int32"), "n_sinks": np.zeros(n_ex, "int32")})
    chunk = 2_000_000
    for start in range(0, n_rows, chunk):
        n = min(chunk, n_rows - start)
        rows = np.arange(start, start + n)
        acts = pa.table({"example_id": ids[rows // per_example],
                         "feature": rng.zipf(1.3, n).clip(max=d_sae - 1).astype("int32"),
                         "max_act": rng.gamma(2.0, 2.0, n).astype("float32"),
                         "sum_act": rng.gamma(2.0, 10.0, n).astype("float32"),
                         "n_active": rng.integers(1, 20, n).astype("int32")})
        store.ingest_shard("bench", f"s{start}", acts, stats if start == 0 else stats.slice(0, 0))
    return n_ex


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    for n_rows in args.rows:
        with tempfile.TemporaryDirectory() as d:
            store = ActivationStore(Path(d) / "bench.duckdb")
            t0 = time.perf_counter()
            n_ex = build(store, n_rows)
            t_build = time.perf_counter() - t0
            scan = []
            for _ in range(5):
                t0 = time.perf_counter()
                store.scalar("SELECT count(*) FROM feature_acts WHERE run_id = ? AND max_act > 1", ["bench"])
                scan.append(time.perf_counter() - t0)
            candidates = sorted(rng.choice(200, size=64, replace=False).tolist())  # the most frequent features
            t0 = time.perf_counter()
            matrix = pool_matrix(store, "bench", "summarization", PoolSpec("mixed"), tuple(candidates))
            t_load = time.perf_counter() - t0
            memory = []
            for i in range(args.repeats):
                feats = sorted(rng.choice(candidates, size=rng.integers(5, 40), replace=False).tolist())
                cfg = ResonanceConfig(aggregation=["mean", "sum", "max"][i % 3])
                t0 = time.perf_counter()
                ranked = matrix.score(feats, cfg).rename(columns={"frs": "score"})
                chosen = select_from_ranking(ranked, SelectionConfig(ratio=0.5))
                memory.append(time.perf_counter() - t0)
            assert len(chosen) == (n_ex + 1) // 2
            p = lambda xs, q: 1000 * float(np.percentile(xs, q))  # noqa: E731
            print(f"{n_rows:>10,} rows, {n_ex:,} pool examples (built in {t_build:.1f} s)")
            print(f"  bare filtered count(*) scan : p50 {p(scan, 50):7.1f} ms")
            print(f"  in memory (64 candidates loaded once in {1000 * t_load:.0f} ms = "
                  f"{1000 * t_load / p(scan, 50):.1f}x the scan), re-selection incl. p99 scales and the cut: "
                  f"p50 {p(memory, 50):7.1f} ms  p95 {p(memory, 95):7.1f} ms "
                  f"({p(memory, 50) / p(scan, 50):.2f}x the scan)")


if __name__ == "__main__":
    main()
