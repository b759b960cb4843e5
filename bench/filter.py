"""The powered filter against the naive loop, in one run on the same dev items.

The powered filter is the shipped procedure (``igds.executor.intervene.measure_effects``: the dev prefix cached once,
only the blocks after the SAE's site replayed, rows an edit leaves unchanged skipped, length buckets, futility looks,
sweep and ablation for F* only), run on a fresh store for one task and timed end to end. The naive loop is what a
script without any of that does: for every null element and candidate, a full forward of every dev item with the
edit patched in. It is timed on 8 elements (4 candidates, 4 null features) and extrapolated to the elements the
powered run measured; on those 8 the two paths must agree within 1e-4 nats per item.

Usage::

    python bench/filter.py [--task summarization] [--dev-items 256] [--null-features 128] [--null-placed 4]

Needs the bootstrapped default workspace (recall for the task). Prints the CPU class beside every figure.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extract import cpu_class  # noqa: E402  (bench/extract.py, beside this script)

from igds.executor.intervene import measure_here  # noqa: E402
from igds.method.intervene import InterventionConfig, dev_sample, feature_acts_at, prepare_dev  # noqa: E402
from igds.method.recall import load_recall  # noqa: E402
from igds.modeling.batching import pad_batch  # noqa: E402
from igds.modeling.encoding import encode_examples  # noqa: E402
from igds.modeling.hooks import patch  # noqa: E402
from igds.modeling.sae import decoder_directions  # noqa: E402
from igds.scope import UNCUT  # noqa: E402
from igds.store import ActivationStore  # noqa: E402
from igds.workflow.catalog import task_split  # noqa: E402
from igds.workflow.stages import candidates_of, latest_run  # noqa: E402
from igds.workflow.workspace import default_workspace  # noqa: E402


@torch.no_grad()
def naive_nll(model, site: str, items, edit: torch.Tensor, pad: int) -> np.ndarray:
    """Mean response NLL of each item after a full forward with ``edit`` ``[B, T, d]`` added at ``site``."""
    out = np.full(len(items), np.nan)
    for i, it in enumerate(items):
        ids, attn = pad_batch([it], pad, "cpu")
        e = edit[i : i + 1, : ids.shape[1]]
        with patch(model, site, lambda h, e=e: h + e.to(h.dtype)):
            logits = model(input_ids=ids, attention_mask=attn, use_cache=False).logits[0].float()
        t = torch.arange(it.prompt_len - 1, len(it.input_ids) - 1)
        out[i] = torch.nn.functional.cross_entropy(logits[t], ids[0, t + 1]).item()
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="summarization")
    ap.add_argument("--dev-items", type=int, default=256)
    ap.add_argument("--null-features", type=int, default=128)
    ap.add_argument("--null-placed", type=int, default=4)
    args = ap.parse_args()
    ws = default_workspace()
    run = latest_run(ws.store, "recall", args.task)
    if run is None:
        raise SystemExit("bootstrap the workspace (make run / python -m igds bootstrap) first")
    recall = load_recall(ws.store, run["run_id"])
    cands = candidates_of(recall, int(ws.sae.cfg.d_sae))
    cfg = InterventionConfig(precision="fp32", dev_items=args.dev_items, null_features=args.null_features,
                             null_placed=args.null_placed)
    items = encode_examples(ws.tokenizer, task_split(ws.store, args.task, "dev"), UNCUT)
    model, pad = ws.fp32_model(), ws.tokenizer.pad_token_id
    print(f"CPU class {cpu_class()}, {torch.get_num_threads()} threads, fp32; task {args.task}, "
          f"{len(cands.features)} candidates, dev {args.dev_items}, null {args.null_features} features + "
          f"{args.null_placed} placed per candidate")

    with tempfile.TemporaryDirectory() as tmp:
        store = ActivationStore(Path(tmp) / "bench.duckdb")
        store.start_run("bench", "intervene", cfg.to_dict())
        t0 = time.perf_counter()
        res = measure_here(store, "bench", model, ws.sae, ws.site, items, cands, cfg, pad)
        t_powered = time.perf_counter() - t0
        n_elements = len(res.null) + int((res.summary.n > 0).sum())
        null_feats = [int(f) for f in res.null[res.null.kind == "feature"].feature][:4]
        deltas = store.effect_deltas("bench")
        null_rows = store.null_deltas("bench")

    dev, _ = dev_sample(items, cfg)
    eight = [int(f) for f in res.verdict[~res.verdict.untestable].feature][:4] + null_feats
    cache = prepare_dev(model, ws.site, dev, pad, cfg)
    acts = feature_acts_at(ws.sae, cache, eight)
    dirs = decoder_directions(ws.sae, eight)
    t0 = time.perf_counter()
    gaps = []
    for i, f in enumerate(eight):
        edit = acts[:, :, i].unsqueeze(-1) * dirs[i]  # the α = 1 scale edit
        naive = naive_nll(model, ws.site, dev, edit, pad)
        got = deltas[(deltas.feature == f) & (deltas.kind == "amplify") & (deltas.alpha == 1.0)]
        if got.empty:
            nid = int(res.null[(res.null.kind == "feature") & (res.null.feature == f)].null_id.iloc[0])
            got = null_rows[null_rows.null_id == nid]
        fast = dict(zip(got.example_id, got.delta, strict=True))
        base = cache.nll_base.numpy()
        for r, it in enumerate(dev):
            if it.example_id in fast:
                gaps.append(abs((base[r] - naive[r]) - fast[it.example_id]))
    t_naive = (time.perf_counter() - t0) / len(eight)
    extrapolated = t_naive * n_elements
    print(f"powered filter, end to end          : {t_powered:8.1f} s ({n_elements} elements measured, "
          f"|F*| = {len(res.kept)}; CPU class {cpu_class()})")
    print(f"naive loop, per element (8 timed)   : {t_naive:8.1f} s × {n_elements} = {extrapolated:8.1f} s")
    print(f"speed-up                            : {extrapolated / t_powered:8.2f}x (CPU class {cpu_class()})")
    print(f"|effect powered − effect naive|, 8 elements × their measured items: max {max(gaps):.2e} nats "
          f"({'within' if max(gaps) <= 1e-4 else 'OUTSIDE'} 1e-4)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
