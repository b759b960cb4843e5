"""Exact interventions: cached-suffix fast path vs. a naive full-forward-per-feature loop, and the
attribution screen of all features vs. one forward pass, on the same dev examples in one run.

Usage: python bench/intervene.py [--features 4] [--task summarization] [--dtype auto]

Needs the bootstrapped default workspace (model + SAE + recall for the task).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from igds.data.corpus import dev_set
from igds.method.intervene import InterventionConfig, Job, attribution_estimates, feature_acts_at, prepare_dev, run_jobs
from igds.method.recall import load_recall
from igds.modeling.batching import pad_batch
from igds.modeling.config import ModelSpec
from igds.modeling.encoding import encode_examples
from igds.modeling.hooks import patch
from igds.modeling.sae import decoder_directions
from igds.workflow.stages import latest_run, mean_activation_vector
from igds.workflow.workspace import default_workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", type=int, default=4)
    ap.add_argument("--task", default="summarization")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--autocast", action="store_true",
                    help="naive path and forward with bf16 autocast (the fast path decides on its own)")
    args = ap.parse_args()
    ws = default_workspace(model=ModelSpec(dtype=args.dtype))
    run = latest_run(ws.store, "recall", args.task)
    if run is None:
        raise SystemExit("run 'python -m igds recall --task ...' first")
    recall = load_recall(ws.store, run["run_id"])
    feats = recall.candidates[: args.features]
    mean_act = mean_activation_vector(recall, int(ws.sae.cfg.d_sae))
    # the naive path below adds ā·W_dec at every edited position: compare with the fast path's add mode
    cfg = InterventionConfig(precision="auto" if args.autocast else "fp32", edit_mode="add")
    items = encode_examples(ws.tokenizer, dev_set(args.task), cfg.max_length)
    model, pad = ws.model, ws.tokenizer.pad_token_id
    print(f"model dtype {next(model.parameters()).dtype}, autocast {args.autocast}, {len(items)} dev examples, "
          f"{sum(len(i.input_ids) for i in items)} tokens, {len(feats)} features (amplify α=1)")

    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast)
    with torch.no_grad():
        t0 = time.perf_counter()
        cache = prepare_dev(model, ws.site, items, pad, cfg)
        t_prep = time.perf_counter() - t0
        dirs = dict(zip(feats, decoder_directions(ws.sae, feats), strict=True))
        acts_t = feature_acts_at(ws.sae, cache, feats)
        acts = {f: acts_t[:, :, i] for i, f in enumerate(feats)}
        t0 = time.perf_counter()
        fast = run_jobs(model, cache, [Job(f, "amplify", 1.0) for f in feats], dirs,
                        {f: float(mean_act[f]) for f in feats}, acts, cfg)
        t_fast = (time.perf_counter() - t0) / len(feats)

        ids, attn = pad_batch(items, pad, next(model.parameters()).device)
        edit = cache.edit_mask.unsqueeze(-1)
        naive, t0 = {}, time.perf_counter()
        for f in feats:
            v = (float(mean_act[f]) * dirs[f]).to(model.dtype)
            with autocast, patch(model, ws.site, lambda h, v=v: h + edit.to(h.dtype) * v):
                out = model.model(input_ids=ids, attention_mask=attn, use_cache=False).last_hidden_state
            # last_hidden_state is already normed: unembed it directly on response positions
            logits = model.get_output_embeddings()(out[cache.nll_mask]).float()
            tok = torch.nn.functional.cross_entropy(logits, cache.targets[cache.nll_mask], reduction="none")
            rows = cache.nll_mask.nonzero(as_tuple=True)[0]
            naive[f] = (torch.zeros(len(items)).index_add_(0, rows, tok) / cache.nll_mask.sum(1)).numpy()
        t_naive = (time.perf_counter() - t0) / len(feats)
        t0 = time.perf_counter()
        with autocast:
            model(input_ids=ids, attention_mask=attn, use_cache=False)
        t_forward = time.perf_counter() - t0
    t0 = time.perf_counter()
    attribution_estimates(model, ws.sae, cache, mean_act)
    t_attr = time.perf_counter() - t0
    gaps = np.concatenate([np.abs(fast[Job(f, "amplify", 1.0)] - naive[f]) for f in feats])
    effect = np.concatenate([np.abs(cache.nll_base.numpy() - naive[f]) for f in feats])
    print(f"dev-set prefix pass (once)   : {t_prep:6.2f} s")
    print(f"naive full forward / feature : {t_naive:6.2f} s")
    print(f"fast cached suffix / feature : {t_fast:6.2f} s   speed-up {t_naive / t_fast:.2f}x")
    print(f"|NLL fast − NLL naive|       : max {np.nanmax(gaps):.2e}, mean {np.nanmean(gaps):.2e} "
          f"(mean |effect| per example {np.nanmean(effect):.2e})")
    print(f"one full forward of dev set  : {t_forward:6.2f} s")
    print(f"attribution, all {int(ws.sae.cfg.d_sae)} features: {t_attr:6.2f} s = {t_attr / t_forward:.1f} forwards")


if __name__ == "__main__":
    main()
