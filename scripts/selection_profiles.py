"""What each method selects, before any fine-tune (issue 28, item 3): per task and pool, every method's selection at
ρ = 0.5 (seed 0) profiled by :mod:`igds.experiment.profile` (source and task shares, FRS = 0 share, tokens,
Spearman(FRS, tokens), and on the noisy pool the corrupted share by kind). Writes one CSV per task and pool under
``results/profiles/`` (committed: they survive a new machine) and prints the tables as Markdown.

    python scripts/selection_profiles.py [--tasks summarization translation] [--pools task-only mixed noisy]

Needs the task's filter run (F*) in the workspace (``bench/validity.py`` or a result of record). The ``filter-only``
arm measures a filter run of its own (hours on a CPU) and is left out unless ``--with-filter-only``; ``wrong-task``
needs another task's F*.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from igds.experiment.profile import PROFILE_COLUMNS, pool_with_frs, profile_frame  # noqa: E402
from igds.method.arms import FILTER_ONLY, RANDOM_FEATURES, RECALL_ONLY, WRONG_TASK, ArmError  # noqa: E402
from igds.method.config import ExtractConfig  # noqa: E402
from igds.method.resonance import ResonanceConfig  # noqa: E402
from igds.method.selection import SelectionConfig, load_selection  # noqa: E402
from igds.progress import tqdm_progress  # noqa: E402
from igds.workflow.arms import select_arm  # noqa: E402
from igds.workflow.stages import latest_effects, select_baseline, select_igds  # noqa: E402
from igds.workflow.workspace import default_workspace, extract_tasks  # noqa: E402

BASELINES = ("random", "loss", "ifd", "zip", "longest", "shortest")
OUT = ROOT / "results" / "profiles"


def selections(ws, task: str, pool: str, extract_cfg: ExtractConfig, arms: list[str], progress) -> dict:
    """Every method's selection of the pool (stored in the workspace), as ``{method: example ids}``."""
    sel = SelectionConfig(ratio=0.5, pool_setting=pool, pool_limit=0, seed=0)
    run_id = ws.extraction_run_id(extract_cfg)
    ids = {"igds": select_igds(ws.store, run_id, task, latest_effects(ws.store, task), sel, ResonanceConfig(),
                               sae_key=ws.sae_key)}
    for m in BASELINES:
        ids[m] = select_baseline(ws, task, dataclasses.replace(sel, method=m), progress=progress,
                                 extract_cfg=extract_cfg)
    for arm in arms:
        try:
            ids[arm] = select_arm(ws, task, arm, sel, ResonanceConfig(), extract_cfg=extract_cfg, progress=progress)
        except ArmError as e:
            print(f"{task}/{pool}: {arm} left out: {e}")
    return {m: list(load_selection(ws.store, sid)[1].id) for m, sid in ids.items()}


def markdown(task: str, pool: str, df) -> str:
    cols = [c for c in PROFILE_COLUMNS if c != "method"] + sorted(c for c in df.columns if c.startswith("corrupted_")
                                                                  and c != "corrupted_share")
    lines = [f"### {task}, {pool} pool", "", "| method | " + " | ".join(cols) + " |",
             "|---" * (len(cols) + 1) + "|"]
    for r in df.itertuples():
        cells = [f"{getattr(r, c):.3g}" if isinstance(getattr(r, c), float) else str(getattr(r, c)) for c in cols]
        lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["summarization", "translation"])
    ap.add_argument("--pools", nargs="+", default=["task-only", "mixed", "noisy"])
    ap.add_argument("--with-filter-only", action="store_true")
    args = ap.parse_args(argv)
    ws = default_workspace()
    extract_cfg = ExtractConfig()
    progress = tqdm_progress()
    arms = [RECALL_ONLY, RANDOM_FEATURES, WRONG_TASK] + ([FILTER_ONLY] if args.with_filter_only else [])
    OUT.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        effects = latest_effects(ws.store, task)
        for pool in args.pools:
            extract_tasks(ws, [task], extract_cfg, pool, progress)
            frame = pool_with_frs(ws, task, pool, extract_cfg, effects)
            labels = ws.store.corruption_labels(task) if pool == "noisy" else None
            df = profile_frame(frame, selections(ws, task, pool, extract_cfg, arms, progress), task, labels)
            df.drop(columns=["sources"]).to_csv(OUT / f"{task}.{pool}.csv", index=False, float_format="%.6g")
            print(markdown(task, pool, df), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
