"""Shards read in place against the single-file store, at 10 M activation rows.

Usage: python bench/shard_store.py [--examples 100000] [--per-example 116] [--shard-size 256] [--repeats 3]

Builds, in the same run and from the same synthetic rows, (a) the single-file store (``feature_acts`` and
``example_stats`` as DuckDB tables inside the database file, as before issue 17; built here directly with SQL
and Arrow) and (b) the store of today (each shard a Parquet pair read in place through views; built through
``ActivationStore.ingest_shard``, one call per shard as extraction does). Rows: ~100k examples (a fifth of
them the task's pool, the rest general) x ~100 distinct fired features each (116 draws: about 10 M rows),
feature frequencies zipf-like over 4,096 SAE features, float32 values, shards of 256 examples.

Then, each in a fresh process (cold: a new DuckDB instance, nothing cached in the process; the OS page cache
is warm, as on a workstation), it times the Selection page's score-matrix load
(``igds.workflow.stages.pool_matrix`` over the mixed pool, 20 mid-frequency features) and recall's query
(``store.feature_stats`` over a task's 256-example probe subset, and over a 2,000-example reference subset),
and prints the medians, the ratio shards / single-file and the size of each database file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TASK = "summarization"
RUN = "bench-run"
D_SAE = 4096


def synth_shard(rng, ids: np.ndarray, per_example: int, p: np.ndarray):
    """Activations of one shard: each example fires ~per_example distinct features drawn by ``p``."""
    import pyarrow as pa

    n_ex = len(ids)
    draws = rng.choice(D_SAE, size=(n_ex, int(per_example * 1.6)), p=p)
    keys = np.unique((np.arange(n_ex)[:, None] * D_SAE + draws).ravel())  # distinct (example, feature), sorted
    want = rng.poisson(per_example, n_ex).clip(10, D_SAE)
    row, feat = keys // D_SAE, keys % D_SAE
    rank = np.arange(len(keys)) - np.searchsorted(row, row)  # position of a feature within its example
    keep = rank < want[row]
    row, feat = row[keep], feat[keep]
    n = len(row)
    n_active = rng.geometric(0.3, n).astype("int32")
    max_act = rng.gamma(2.0, 1.5, n).astype("float32")
    acts = pa.table({"example_id": pa.array(ids[row], pa.string()), "feature": feat.astype("int32"),
                     "max_act": max_act, "sum_act": (max_act * n_active * rng.uniform(0.4, 1.0, n)).astype("float32"),
                     "n_active": n_active})
    n_tokens = rng.integers(40, 400, n_ex).astype("int32")
    stats = pa.table({"example_id": pa.array(ids, pa.string()), "n_tokens": n_tokens,
                      "n_positions": (n_tokens + 20).astype("int32"), "n_sinks": np.zeros(n_ex, "int32")})
    return acts, stats


SINGLE_DDL = """
DROP VIEW feature_acts;
DROP VIEW example_stats;
CREATE TABLE example_stats (run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, n_tokens INTEGER NOT NULL,
    n_positions INTEGER NOT NULL, n_sinks INTEGER NOT NULL, shard_key VARCHAR NOT NULL,
    PRIMARY KEY (run_id, example_id));
CREATE TABLE feature_acts (run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, feature INTEGER NOT NULL,
    max_act REAL NOT NULL, sum_act REAL NOT NULL, n_active INTEGER NOT NULL);
"""


def build(work: Path, n_examples: int, per_example: int, shard_size: int) -> dict:
    import duckdb

    from igds.data.records import Example
    from igds.store import ActivationStore

    rng = np.random.default_rng(0)
    ids = np.array([f"{i:016x}" for i in range(n_examples)])
    n_task = n_examples // 5
    examples = [Example(i, TASK if k < n_task else "general", "synthetic", "train", f"document {k} " * 8, f"r{k}")
                for k, i in enumerate(ids)]
    p = 1.0 / np.arange(1, D_SAE + 1) ** 1.1  # zipf-like feature frequencies ...
    p = rng.permutation(p / p.sum())          # ... over a random order of feature ids
    stores = {}
    for name in ("single", "shards"):
        store = ActivationStore(work / name / "igds.duckdb")
        store.add_examples(examples, dataset="bench")
        store.start_run(RUN, "extract", {"bench": True}, n_total=n_examples)
        stores[name] = store
    with stores["single"].connect() as con:
        con.execute(SINGLE_DDL)
    single = duckdb.connect(str(stores["single"].path))
    t_single = t_shards = 0.0
    n_rows = 0
    for start in range(0, n_examples, shard_size):
        acts, stats = synth_shard(rng, ids[start:start + shard_size], per_example, p)
        key = f"{start:08d}"
        n_rows += acts.num_rows
        t0 = time.perf_counter()
        single.register("a", acts)
        single.register("s", stats)
        single.execute("INSERT INTO feature_acts SELECT ?, * FROM a", [RUN])
        single.execute("INSERT INTO example_stats SELECT ?, *, ? FROM s", [RUN, key])
        t1 = time.perf_counter()
        stores["shards"].ingest_shard(RUN, key, acts, stats)
        t_shards += time.perf_counter() - t1
        t_single += t1 - t0
        if start // shard_size % 50 == 0:
            print(f"  built {start + len(stats):,} examples, {n_rows:,} rows", flush=True)
    single.execute("CHECKPOINT")
    single.close()
    with stores["shards"].connect() as con:
        con.execute("CHECKPOINT")
    # features a task would pick: 20 of mid frequency (ranks 50-250 of the zipf order)
    order = np.argsort(-p)
    features = sorted(int(f) for f in rng.choice(order[50:250], 20, replace=False))
    probe = [str(i) for i in rng.choice(ids[:n_task], 256, replace=False)]
    reference = [str(i) for i in rng.choice(ids[n_task:], 2000, replace=False)]
    parquet = sum(f.stat().st_size for f in (work / "shards").rglob("*.parquet"))
    return {"rows": n_rows, "examples": n_examples, "shards": -(-n_examples // shard_size),
            "features": features, "probe": probe, "reference": reference,
            "ingest_s": {"single": t_single, "shards": t_shards},
            "db_bytes": {n: (work / n / "igds.duckdb").stat().st_size for n in ("single", "shards")},
            "parquet_bytes": parquet}


def measure(work: Path, variant: str, query: str) -> None:
    """One cold measurement in this (fresh) process; prints JSON seconds."""
    spec = json.loads((work / "spec.json").read_text())
    from igds.scope import PoolSpec
    from igds.store import ActivationStore
    from igds.workflow.stages import pool_matrix

    t0 = time.perf_counter()
    store = ActivationStore(work / variant / "igds.duckdb")
    t1 = time.perf_counter()
    if query == "matrix":
        m = pool_matrix(store, RUN, TASK, PoolSpec("mixed"), tuple(spec["features"]))
        check = int(np.isfinite(m.sum_act).sum())
    else:
        df = store.feature_stats(RUN, spec[query])
        check = int(df.n_examples.sum())
    t2 = time.perf_counter()
    print(json.dumps({"open": t1 - t0, "query": t2 - t1, "check": check}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--per-example", type=int, default=116)  # ~10 M rows after duplicate draws
    ap.add_argument("--shard-size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--measure", nargs=3, metavar=("WORKDIR", "VARIANT", "QUERY"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        measure(Path(args.measure[0]), args.measure[1], args.measure[2])
        return
    with tempfile.TemporaryDirectory(prefix="igds-bench-shards-") as d:
        work = Path(d)
        t0 = time.perf_counter()
        spec = build(work, args.examples, args.per_example, args.shard_size)
        (work / "spec.json").write_text(json.dumps(spec))
        print(f"built {spec['rows']:,} rows ({spec['examples']:,} examples, {spec['shards']} shards) "
              f"in {time.perf_counter() - t0:.0f} s; inserting the rows: single-file "
              f"{spec['ingest_s']['single']:.1f} s, shards (ingest_shard) {spec['ingest_s']['shards']:.1f} s")
        results = {}
        for query in ("matrix", "probe", "reference"):
            for variant in ("single", "shards"):
                runs = []
                for _ in range(args.repeats):  # alternate would be fairer on a shared machine; fresh processes
                    out = subprocess.run([sys.executable, __file__, "--measure", str(work), variant, query],
                                         capture_output=True, text=True, check=True)
                    runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
                results[(query, variant)] = runs
            checks = {v: results[(query, v)][0]["check"] for v in ("single", "shards")}
            assert checks["single"] == checks["shards"], f"{query}: different results {checks}"
        labels = {"matrix": "score matrix (pool_matrix, mixed pool, 20 features)",
                  "probe": "recall feature_stats, 256-example probe",
                  "reference": "recall feature_stats, 2,000-example reference"}
        print(f"\ncold, fresh process each, median of {args.repeats} (open = ActivationStore(path)):")
        print(f"{'query':<54}{'single-file s':>14}{'shards s':>10}{'ratio':>8}")
        for query, label in labels.items():
            med = {v: statistics.median(r["query"] for r in results[(query, v)]) for v in ("single", "shards")}
            print(f"{label:<54}{med['single']:>14.3f}{med['shards']:>10.3f}{med['shards'] / med['single']:>8.2f}")
        opens = {v: statistics.median(r["open"] for q in labels for r in results[(q, v)]) for v in ("single", "shards")}
        print(f"{'open the store':<54}{opens['single']:>14.3f}{opens['shards']:>10.3f}"
              f"{opens['shards'] / opens['single']:>8.2f}")
        mb = 1024 * 1024
        print(f"\ndatabase file: single-file {spec['db_bytes']['single'] / mb:.1f} MiB, shards "
              f"{spec['db_bytes']['shards'] / mb:.1f} MiB (+ {spec['parquet_bytes'] / mb:.1f} MiB of Parquet in "
              f"{2 * spec['shards']} files)")


if __name__ == "__main__":
    main()
