"""Time from an uploaded file to the first IGDS selection, on the real default model and the shipped SAE.

Usage: python bench/own_data.py [--rows 2000] [--store PATH]

Writes a chat-format JSONL of ``--rows`` rows (``igds.demo.write_own_data_file``: 128 probe, 32 dev and 64 test
items by a split column, the rest the candidate pool), then times each step a researcher runs: add the
dataset, define the task, extract (its probe, dev and pool items plus the shipped reference set recall
contrasts with), recall, interventions (default method preset, the null included) and the IGDS selection.
The reference is a bare full forward of the model over 256 of the same examples, measured in the same run:
each stage is also given in forward-equivalents (its seconds over the time a bare forward would take for the
tokens that stage extracted). Uses a fresh store (``--store``, default a temporary file) so nothing is cached.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--store", default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    os.environ["IGDS_STORE"] = args.store or str(tmp / "own.duckdb")

    import torch

    from igds.data.ingest import add_dataset
    from igds.data.tasks import SUMMARIZATION, TaskSpec
    from igds.demo import write_own_data_file
    from igds.method.config import ExtractConfig
    from igds.method.presets import method_preset
    from igds.method.selection import SelectionConfig
    from igds.modeling.batching import length_batches, pad_batch
    from igds.modeling.encoding import encode_examples
    from igds.store import ActivationStore
    from igds.workflow.catalog import TaskData, add_task, task_split
    from igds.workflow.stages import NoValidatedFeatures, prepare_method, select_baseline, select_igds
    from igds.workflow.workspace import default_workspace, extract_tasks

    path = write_own_data_file(tmp / "own.jsonl", args.rows)
    times: dict[str, float] = {}
    t_all = time.perf_counter()
    store = ActivationStore()
    t0 = time.perf_counter()
    res = add_dataset(store, path, "own")
    times["add dataset"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    counts = add_task(store, TaskSpec("own-summaries", SUMMARIZATION.instruction, "rouge_l", 32),
                      TaskData(eval_datasets=("own",), split_by="column", pool_datasets=("own",)))
    times["define task"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ws = default_workspace(store, tasks=("own-summaries",), pool_setting="task-only")
    times["load model + SAE"] = time.perf_counter() - t0
    preset = method_preset("default")
    ecfg = ExtractConfig()
    t0 = time.perf_counter()
    ext = extract_tasks(ws, ["own-summaries"], ecfg, "task-only")
    times["extract"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    effects = prepare_method(ws, "own-summaries", preset, ecfg)
    times["recall + interventions"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scfg = SelectionConfig(pool_setting="task-only", ratio=0.5)
    try:
        sid = select_igds(store, ext.run_id, "own-summaries", effects, scfg, preset.resonance, ws.sae_key)
        how = f"IGDS on F* = {effects.kept}"
    except NoValidatedFeatures:
        sid = select_baseline(ws, "own-summaries", SelectionConfig(method="random", pool_setting="task-only"),
                              extract_cfg=ecfg)
        how = f"the default preset validated none of {effects.summary.feature.nunique()} candidates; Random instead"
    times["select"] = time.perf_counter() - t0
    total = time.perf_counter() - t_all
    if not effects.kept:  # the paper preset (Δ > 0 on α = 1, no null) on the same activations
        paper = method_preset("paper")
        t0 = time.perf_counter()
        p_effects = prepare_method(ws, "own-summaries", paper, ecfg)
        try:
            p_sid = select_igds(store, ext.run_id, "own-summaries", p_effects, SelectionConfig(
                pool_setting="task-only", ratio=paper.ratio), paper.resonance, ws.sae_key, preset="paper")
            times["paper preset: recall + interventions + IGDS selection"] = time.perf_counter() - t0
            how += f"; paper preset: IGDS selection {p_sid} on {len(p_effects.kept)} features"
        except NoValidatedFeatures:
            how += "; the paper preset validated none either"

    # reference: a bare full forward over 256 of the pool's examples, same batching
    items = encode_examples(ws.tokenizer, task_split(store, "own-summaries", "train")[:256], ecfg.max_length)
    n_ref_tokens = sum(len(it.input_ids) for it in items)
    with torch.no_grad():
        t0 = time.perf_counter()
        for b in length_batches(items, ecfg.batch_tokens):
            ids, attn = pad_batch(b, ws.tokenizer.pad_token_id, ws.model.device)
            ws.model(input_ids=ids, attention_mask=attn, use_cache=False)
        fwd_tps = n_ref_tokens / (time.perf_counter() - t0)
    n_tokens = int(store.scalar("SELECT sum(n_positions) FROM example_stats WHERE run_id = ?", [ext.run_id]))

    print(f"{args.rows} rows -> {res.n_records} records; task items {counts}; {ext.n_examples} examples, "
          f"{n_tokens:,} tokens extracted; threads {torch.get_num_threads()}, model "
          f"{next(ws.model.parameters()).dtype}")
    print(f"bare full forward reference: {fwd_tps:,.0f} tokens/s ({n_ref_tokens:,} tokens); a forward of every "
          f"extracted token would take {n_tokens / fwd_tps:.1f} s")
    for name, s in times.items():
        print(f"{name:24s} {s:7.1f} s")
    print(f"{'upload -> first selection':24s} {total:7.1f} s = {total / (n_tokens / fwd_tps):.1f} forward-equivalents "
          f"of the extracted tokens; selection {sid} ({how})")


if __name__ == "__main__":
    main()
