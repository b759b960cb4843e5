"""LoRA fine-tune + evaluation of the default model with the CPU profile, on a small summarization slice.

Usage: python bench/finetune_cpu.py [--n-train 300] [--n-test 60] [--out DIR] [--threads N]

Loads SmolLM2-135M-Instruct (``ModelSpec()``, dtype auto: bf16 on CPUs with bf16 instructions),
evaluates the base model on the first ``--n-test`` summarization test examples (ROUGE-L F1 and
reference NLL), trains ``FinetuneConfig.cpu_profile()`` for one epoch on ``--n-train`` pool examples,
evaluates the adapter, reloads it from disk with peft and checks that it reproduces its metric.
Prints s/step, tokens/s and the extrapolated time for a 50% selection of the pool.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time

import torch

from igds.data.corpus import task_pool, test_sample
from igds.data.tasks import get_task
from igds.modeling.load import ModelSpec, load_model
from igds.training.batches import encode_for_training
from igds.training.correlate import paired_bootstrap_diff
from igds.training.evaluate import EvalConfig, evaluate_model, load_adapter
from igds.training.finetune import FinetuneConfig, train_lora


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-train", type=int, default=300)
    ap.add_argument("--n-test", type=int, default=60)
    ap.add_argument("--out", default="")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default); on a busy 2-core machine 1 avoids oversubscription")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    task = get_task("summarization")
    pool = sorted(task_pool("summarization", "task-only"), key=lambda e: e.id)
    train = random.Random(0).sample(pool, min(args.n_train, len(pool)))
    test = test_sample("summarization", args.n_test)
    cfg = FinetuneConfig.cpu_profile()
    ecfg = EvalConfig()

    t0 = time.perf_counter()
    model, tok = load_model(ModelSpec())
    dtype = next(model.parameters()).dtype
    print(f"model loaded in {time.perf_counter() - t0:.1f}s, dtype {dtype}, threads {torch.get_num_threads()}")
    pool_rows, pool_dropped = encode_for_training(tok, pool, cfg.max_length)
    pool_tokens = sum(len(r["input_ids"]) for r in pool_rows)
    print(f"pool: {len(pool)} examples, {pool_tokens / max(len(pool_rows), 1):.1f} tokens/example kept "
          f"(max_length {cfg.max_length}: {pool_dropped} longer ones dropped)")

    base = evaluate_model(model, tok, task, test, ecfg)
    print(f"base: ROUGE-L {base['score']:.4f}  ref NLL {base['nll']:.4f}  ({base['seconds']:.1f}s for {base['n']})")

    out = args.out or tempfile.mkdtemp(prefix="igds-ft-bench-")
    res = train_lora(model, tok, train, cfg, out, resume=False,
                     progress=lambda d, t, m: print(m, flush=True) if "loss" in m and d % 5 == 0 else None)
    print(f"train: {res.n_train} examples, {res.global_step} steps, {res.train_seconds:.1f}s, "
          f"{res.seconds_per_step:.2f} s/step, {res.tokens_per_second:.0f} tokens/s, precision {res.precision}, "
          f"final loss {res.final_loss:.4f}")
    half = len(pool) // 2
    est = half / res.n_train * res.train_seconds
    print(f"extrapolated 1 epoch on a 50% selection ({half} examples): {est / 60:.1f} min")

    tuned = evaluate_model(res.model, tok, task, test, ecfg)
    diff = paired_bootstrap_diff(tuned["per_example"], base["per_example"])
    print(f"tuned: ROUGE-L {tuned['score']:.4f}  ref NLL {tuned['nll']:.4f}  ({tuned['seconds']:.1f}s); "
          f"gain {diff['mean_diff']:+.4f} [{diff['lo']:+.4f}, {diff['hi']:+.4f}]")

    fresh, _ = load_model(ModelSpec())
    reloaded = evaluate_model(load_adapter(fresh, res.adapter_dir), tok, task, test, ecfg)
    same = reloaded["predictions"] == tuned["predictions"]
    print(f"reloaded adapter: ROUGE-L {reloaded['score']:.4f}  ref NLL {reloaded['nll']:.4f}  "
          f"identical outputs: {same}")
    print(f"total {time.perf_counter() - t0:.0f}s; adapter in {res.adapter_dir}")


if __name__ == "__main__":
    main()
