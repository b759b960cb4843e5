"""Extraction throughput vs. a bare full forward, on the same tokens, in one run.

Usage: python bench/extract.py [--n 256] [--dtype auto|float32|bfloat16]

Prints tokens/s of (a) a bare full forward (logits) and (b) extraction = early-exit capture hook +
sink guard + SAE encode + aggregation + store write, and the time ratio (b)/(a). Uses the default
SAE when it has been trained (``igds bootstrap``), else a random TopK SAE of the same shape.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from igds.data.corpus import task_pool
from igds.executor.extract import extract_here
from igds.method.config import ExtractConfig
from igds.modeling.batching import length_batches, pad_batch
from igds.modeling.encoding import encode_examples
from igds.modeling.load import ModelSpec, load_model
from igds.modeling.sae import SaeError, SaeSpec, load_sae
from igds.store import ActivationStore


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=256, help="examples from the summarization pool")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    model, tok = load_model(ModelSpec(dtype=args.dtype))
    try:
        sae, info = load_sae(SaeSpec())
        sae_name = info.name
    except SaeError:
        from sae_lens import TopKSAE, TopKSAEConfig

        sae = TopKSAE(TopKSAEConfig(d_in=576, d_sae=4096, k=32, dtype="float32", device="cpu")).requires_grad_(False)
        sae.cfg.metadata.hook_name = "blocks.15.hook_resid_post"
        sae_name = "random TopK 4096 (default SAE not trained yet)"
    cfg = ExtractConfig()
    items = encode_examples(tok, task_pool("summarization")[: args.n], cfg.max_length)
    n_tokens = sum(len(it.input_ids) for it in items)
    batches = length_batches(items, cfg.batch_tokens)

    with torch.no_grad():  # warm-up
        ids, attn = pad_batch(batches[0], tok.pad_token_id, model.device)
        model(input_ids=ids, attention_mask=attn, use_cache=False)
        t0 = time.perf_counter()
        for b in batches:
            ids, attn = pad_batch(b, tok.pad_token_id, model.device)
            model(input_ids=ids, attention_mask=attn, use_cache=False)
        t_forward = time.perf_counter() - t0

    with tempfile.TemporaryDirectory() as d:
        store = ActivationStore(Path(d) / "bench.duckdb")
        store.start_run("bench", "extract", cfg.to_dict())
        t0 = time.perf_counter()
        res = extract_here(store, "bench", model, sae, "blocks.15.hook_resid_post", items, cfg, tok.pad_token_id)
        t_extract = time.perf_counter() - t0

    print(f"model dtype {next(model.parameters()).dtype}, threads {torch.get_num_threads()}, SAE {sae_name}")
    print(f"{len(items)} examples, {n_tokens} tokens, {len(batches)} batches, {res.n_rows} activation rows")
    print(f"bare full forward : {t_forward:7.2f} s  {n_tokens / t_forward:8.0f} tokens/s")
    print(f"extraction        : {t_extract:7.2f} s  {n_tokens / t_extract:8.0f} tokens/s "
          "(early exit + SAE encode + aggregation + store write)")
    print(f"time ratio extraction / forward = {t_extract / t_forward:.2f}  (target <= 0.6)")


if __name__ == "__main__":
    main()
