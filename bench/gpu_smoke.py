"""GPU smoke test: bf16 LoRA steps of the default model on ~64 summarization examples.

Usage: python bench/gpu_smoke.py [--n 64] [--steps 8]

Prints tokens/s of LoRA training (default attention + MLP profile, bf16) through the same
``train_lora`` entry point the pipeline uses. Exits 0 with "skipped: no CUDA" on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time


def run(n: int = 64, steps: int = 8) -> dict:
    """Train ``steps`` LoRA steps on ``n`` pool examples; return the timing figures.

    Args:
        n: number of summarization pool examples.
        steps: optimizer steps.

    Returns:
        dict with device name, steps, seconds, s/step, tokens/s, final loss, precision.
    """
    import torch

    from igds.data.corpus import task_pool
    from igds.modeling.load import ModelSpec, load_model
    from igds.training.finetune import FinetuneConfig, train_lora

    model, tok = load_model(ModelSpec(device="cuda", dtype="bfloat16"))
    examples = sorted(task_pool("summarization", "task-only"), key=lambda e: e.id)[:n]
    cfg = FinetuneConfig(max_steps=steps, precision="bf16", save_steps=10_000)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = train_lora(model, tok, examples, cfg, out, resume=False)
        wall = time.perf_counter() - t0
    return {"device": torch.cuda.get_device_name(0), "steps": res.global_step, "seconds": round(wall, 2),
            "s_per_step": round(res.seconds_per_step, 3), "tokens_per_s": round(res.tokens_per_second),
            "final_loss": round(res.final_loss, 4), "precision": res.precision,
            "peak_mem_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}


def main() -> int:
    """CLI entry point; returns the exit status."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=8)
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("skipped: no CUDA")
        return 0
    for k, v in run(args.n, args.steps).items():
        print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
