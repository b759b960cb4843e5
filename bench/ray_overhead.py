"""Ray executor overhead against the local executor, on the same tokens, in one run.

Usage: python bench/ray_overhead.py [--n 64] [--shards 8] [--real]

Extracts the same examples (the summarization pool) four ways into fresh stores: the local executor (this process,
all CPUs as torch threads), then Ray with 1 actor x 2 CPUs and 2 actors x 1 CPU. Ray is timed three ways: Ray start
(``ray.init``, once), actor start + model/SAE load (per configuration), and the extraction itself (shards computed by
the actors, written and ingested by the driver). Prints seconds and ratios against the local run. The default is a
tiny random Llama + SAE saved to folders (no download); ``--real`` uses the default model and SAE of the workspace.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import torch

from igds.data.corpus import task_pool
from igds.executor.config import ExecutorConfig
from igds.executor.extract import extract_here
from igds.executor.pool import PoolRequest
from igds.executor.ray_pool import RayPool
from igds.executor.worker import WorkerSpec
from igds.method.extract import ExtractConfig, plan_shards
from igds.modeling.encoding import encode_examples
from igds.modeling.load import ModelSpec, load_model
from igds.modeling.sae import SaeSpec, load_sae
from igds.store import ActivationStore


def specs(tmp: Path, real: bool) -> tuple[ModelSpec, SaeSpec]:
    if real:
        return ModelSpec(dtype="float32", device="cpu"), SaeSpec()
    from igds.demo import save_tiny_model, save_tiny_sae

    model_dir = save_tiny_model(tmp / "model", n_layers=4, hidden=64)
    sae_dir = save_tiny_sae(tmp / "sae", d_in=64, d_sae=512, k=16, layer=2)
    return ModelSpec(name_or_path=str(model_dir), dtype="float32", device="cpu"), SaeSpec(source=str(sae_dir))


def fresh_store(tmp: Path, name: str, cfg: ExtractConfig, mspec: ModelSpec, sspec: SaeSpec, site: str):
    # its own folder: the run folder (and its shard files) sits next to the database file, and a shard file already
    # there would be ingested instead of computed
    (tmp / name).mkdir()
    store = ActivationStore(tmp / name / "igds.duckdb")
    store.start_run("bench", "extract", {"extract": cfg.to_dict(), "site": site})
    return store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64, help="examples from the summarization pool")
    ap.add_argument("--shards", type=int, default=8, help="shards the examples are cut into")
    ap.add_argument("--real", action="store_true", help="the default model and SAE instead of tiny random ones")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="igds-ray-bench-"))
    mspec, sspec = specs(tmp, args.real)
    model, tok = load_model(mspec)
    sae, info = load_sae(sspec)
    site = info.site
    cfg = ExtractConfig(shard_size=math.ceil(args.n / args.shards))
    items = encode_examples(tok, task_pool("summarization")[: args.n], cfg.max_length)
    n_tokens = sum(len(it.input_ids) for it in items)
    print(f"{len(items)} examples, {n_tokens} tokens, {args.shards} shards; model "
          f"{'default' if args.real else 'tiny random Llama (4 x 64)'}, SAE {info.name} at {site}")

    torch.set_num_threads(2)
    store = fresh_store(tmp, "local", cfg, mspec, sspec, site)
    t0 = time.perf_counter()
    local = extract_here(store, "bench", model, sae, site, items, cfg, tok.pad_token_id)
    t_local = time.perf_counter() - t0
    print(f"local executor (2 torch threads): {t_local:.2f} s, {local.n_rows} rows")

    import ray

    from igds.executor.runtime import start_local

    t0 = time.perf_counter()
    start_local(2)  # the project's local Ray: every server on 127.0.0.1
    t_start = time.perf_counter() - t0
    print(f"ray start (local on 127.0.0.1, 2 CPUs): {t_start:.2f} s")
    spec = WorkerSpec(model=mspec.to_dict(), sae=sspec.to_dict(), site=site)
    rows = []
    for actors, cpus in ((1, 2.0), (2, 1.0)):
        name = f"{actors}x{cpus:g}"
        store = fresh_store(tmp, f"ray-{name}", cfg, mspec, sspec, site)
        plans = plan_shards(store, "bench", items, cfg)
        t0 = time.perf_counter()
        pool = RayPool(ExecutorConfig(kind="ray", actors=actors, cpus_per_actor=cpus),
                       PoolRequest("extract", len(plans), spec=lambda: spec)).start()
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        n_rows = 0
        with pool:
            payloads = [(p.items, cfg.to_dict(), tok.pad_token_id, str(p.acts_path), str(p.stats_path))
                        for p in plans]
            for i, events in pool.imap("extract", payloads):
                _, acts, stats = events[-1]  # ("batch", n) events, then the shard
                store.ingest_shard("bench", plans[i].key, acts, stats, str(plans[i].acts_path))
                n_rows += acts.num_rows
        t_run = time.perf_counter() - t0
        assert n_rows == local.n_rows, f"{name}: {n_rows} rows, local {local.n_rows}"
        rows.append((name, t_load, t_run))
    print()
    print(f"{'ray actors x CPUs':<18} {'actor load s':>12} {'extract s':>10} {'excl. start':>12} "
          f"{'incl. load':>11} {'incl. load+init':>16}")
    for name, t_load, t_run in rows:
        print(f"{name:<18} {t_load:>12.2f} {t_run:>10.2f} {t_run / t_local:>11.2f}x "
              f"{(t_load + t_run) / t_local:>10.2f}x "
              f"{(t_start + t_load + t_run) / t_local:>15.2f}x")
    print("(ratios: Ray time / local executor time on the same tokens; > 1 is slower)")
    ray.shutdown()


if __name__ == "__main__":
    main()
