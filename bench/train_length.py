"""A training length where content can matter (issue 28, item 4): reference NLL against optimizer steps for Random@50
and Full on one task's task-only pool, chosen before the pre-registration and from these two arms only.

Each (arm, steps) is its own LoRA fine-tune of the grid's CPU profile with ``max_steps`` = steps (its own schedule,
as a grid cell at that length would run), evaluated on the grid's test sample; the store keeps every run, so a rerun
only reports. Prints, per length: each arm's reference NLL, Full − Random, and the seconds per optimizer step
(float32, the precision of record) with the CPU class; writes ``results/train_length/<task>.csv``.

The rule that picks the length (stated before looking): the shortest length at which Random's NLL has come down by
at least 80% of its drop at the longest length measured (the format is learned) while Full − Random is still below
zero by more than its 95% item interval's half-width (content still matters).

    python bench/train_length.py [--task summarization] [--steps 10 20 40 80 160] [--pool-limit 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from extract import cpu_class  # noqa: E402  (bench/extract.py, beside this script)

from igds.experiment.grid import ExperimentConfig  # noqa: E402
from igds.method.config import ExtractConfig  # noqa: E402
from igds.method.selection import SelectionConfig  # noqa: E402
from igds.modeling.load import model_key_of  # noqa: E402
from igds.progress import tqdm_progress  # noqa: E402
from igds.training.results import BASE_RUN, eval_outputs, make_eval_id  # noqa: E402
from igds.workflow.stages import select_baseline  # noqa: E402
from igds.workflow.tune import Measured, finetune_selection  # noqa: E402
from igds.workflow.workspace import default_workspace  # noqa: E402

OUT = ROOT / "results" / "train_length"


def pick_length(table: pd.DataFrame) -> int | None:
    """The rule above, on the measured table (``steps``, ``random_nll``, ``d_nll``, ``d_half``)."""
    t = table.sort_values("steps")
    base = t.base_nll.iloc[0]
    drop_max = base - t.random_nll.iloc[-1]
    for r in t.itertuples():
        learned = drop_max > 0 and (base - r.random_nll) >= 0.8 * drop_max
        if learned and r.d_nll < 0 and abs(r.d_nll) > r.d_half:
            return int(r.steps)
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="summarization")
    ap.add_argument("--steps", nargs="+", type=int, default=[10, 20, 40, 80, 160])
    ap.add_argument("--pool-limit", type=int, default=0, help="task examples in the pool (0: all)")
    args = ap.parse_args(argv)
    grid = ExperimentConfig(tasks=(args.task,), pool_limit=args.pool_limit)
    ws = default_workspace()
    progress = tqdm_progress()
    extract_cfg = ExtractConfig()
    sel = SelectionConfig(ratio=0.5, pool_setting="task-only", pool_limit=args.pool_limit, seed=0)
    arms = {"random": select_baseline(ws, args.task, dataclasses.replace(sel, method="random"), progress=progress,
                                      extract_cfg=extract_cfg),
            "full": select_baseline(ws, args.task, dataclasses.replace(sel, method="full"), progress=progress,
                                    extract_cfg=extract_cfg)}
    eval_cfg = grid.evaluation(args.task)
    rows = []
    for steps in args.steps:
        row = {"steps": steps}
        per_item = {}
        for arm, sid in arms.items():
            ft = dataclasses.replace(grid.finetune(0), max_steps=steps, precision="fp32")
            t0 = time.perf_counter()
            res = finetune_selection(ws.store, sid, ft, eval_cfg, progress, measured=Measured([]))
            out = eval_outputs(ws.store, res["eval_id"]).set_index("example_id").nll.astype(float)
            per_item[arm] = out
            row[f"{arm}_nll"] = float(out.mean())
            trained = (res.get("train") or {}).get("train_seconds")
            row[f"{arm}_s_per_step"] = (trained or time.perf_counter() - t0) / steps
        base_id = make_eval_id(BASE_RUN, args.task, "test", model_key_of(ws.model), eval_cfg.to_dict())
        row["base_nll"] = float(eval_outputs(ws.store, base_id).nll.astype(float).mean())
        d = (per_item["full"] - per_item["random"]).dropna()
        row["d_nll"] = float(d.mean())
        row["d_half"] = float(1.96 * d.std(ddof=1) / np.sqrt(len(d)))
        rows.append(row)
        print(f"{args.task} {steps:4d} steps: Random {row['random_nll']:.3f}, Full {row['full_nll']:.3f}, "
              f"Full − Random {row['d_nll']:+.3f} ± {row['d_half']:.3f}; {row['random_s_per_step']:.1f} s/step "
              f"(CPU class {cpu_class()})", flush=True)
    table = pd.DataFrame(rows)
    OUT.mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / f"{args.task}.csv", index=False, float_format="%.6g")
    print(f"chosen length by the rule: {pick_length(table)} steps (CPU class {cpu_class()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
