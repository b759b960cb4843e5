"""The pre-registered primary contrast (``docs/preregistration.md``): per task, IGDS − Random in reference NLL on
every test item, task-only pool, ρ = 0.5, seeds 0–9 per arm; a t-interval over seed means
(:func:`igds.experiment.contrast.seed_contrast`), Holm across the tasks' primaries; and the power planner that the
measured variance components feed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from igds.experiment.cells import experiment_cells
from igds.experiment.contrast import SeedContrast, detectable_difference, holm, seed_contrast, seeds_needed

PRIMARY_POOL, PRIMARY_RATIO, PRIMARY_ARMS = "task-only", 0.5, ("igds", "random")
PRIMARY_TASKS = ("summarization", "translation")
PRIMARY_SEEDS = tuple(range(10))
LEVEL = 0.95
PRIMARY_COLUMNS = ["task", "n_seeds_igds", "n_seeds_random", "n_items", "estimate", "lo", "hi", "p", "p_holm",
                   "seed_sd_igds", "seed_sd_random", "item_sd", "detectable", "verdict"]


def arm_matrix(store, cells: pd.DataFrame, task: str, method: str, column: str = "nll") -> np.ndarray | None:
    """Seeds × test items of one arm's finished primary cells (items in the base order of the first eval; NaN where
    an eval lacks an item), or None when the arm has no finished cell."""
    g = cells[(cells.task == task) & (cells.pool_setting == PRIMARY_POOL) & (cells.method == method)
              & (cells.ratio == PRIMARY_RATIO) & (cells.status == "done")].sort_values("seed")
    if g.empty:
        return None
    outs = [store.eval_outputs(e).set_index("example_id")[column].astype(float) for e in g.eval_id]
    order = sorted(set().union(*(o.index for o in outs)))
    return np.vstack([o.reindex(order).to_numpy() for o in outs])


def primary_contrasts(store, exp_id: str, tasks=PRIMARY_TASKS) -> pd.DataFrame:
    """The primary contrast of every task with its arms run: one row per task (:data:`PRIMARY_COLUMNS`); Holm over
    the tasks that have one. A task whose arms have fewer than 2 seeds each says so in ``verdict``."""
    cells = experiment_cells(store, exp_id)
    rows = []
    for task in tasks:
        a, b = (arm_matrix(store, cells, task, m) for m in PRIMARY_ARMS)
        if a is None or b is None or min(len(a), len(b)) < 2:
            rows.append({"task": task, "n_seeds_igds": 0 if a is None else len(a),
                         "n_seeds_random": 0 if b is None else len(b), "verdict": "not yet run"})
            continue
        c = seed_contrast(a, b, LEVEL)
        rows.append(_row(task, c))
    out = pd.DataFrame(rows, columns=PRIMARY_COLUMNS)
    out["p_holm"] = holm(out.p.to_numpy(float))
    ok = out.verdict.isna()
    out.loc[ok, "verdict"] = [_verdict(r) for r in out[ok].itertuples()]
    return out


def _row(task: str, c: SeedContrast) -> dict:
    return {"task": task, "n_seeds_igds": c.n_seeds[0], "n_seeds_random": c.n_seeds[1], "n_items": c.n_items,
            "estimate": c.estimate, "lo": c.lo, "hi": c.hi, "p": c.p, "seed_sd_igds": c.seed_sd[0],
            "seed_sd_random": c.seed_sd[1], "item_sd": c.item_sd, "detectable": c.detectable, "verdict": None}


def _verdict(r) -> str:
    """Lower NLL is better: IGDS better when Holm's p is under 0.05 and the estimate is negative."""
    if r.p_holm < 1 - LEVEL:
        return "IGDS better" if r.estimate < 0 else "IGDS worse"
    return f"no difference detected (detectable {r.detectable:.3f} nats)"


def power_plan(seed_sd: float, targets=(0.01, 0.02, 0.03, 0.05), n_seeds: int | None = None) -> pd.DataFrame:
    """Seeds per arm a target difference needs at the measured seed-mean spread (80% power, two-sided 0.05), and
    with ``n_seeds`` the difference those seeds detect.

    Returns:
        target, seeds_needed (None: more than 200), and a last row ``target`` = the detectable difference at
        ``n_seeds`` when given.
    """
    rows = [{"target": t, "seeds_needed": seeds_needed(seed_sd, t, LEVEL)} for t in targets]
    if n_seeds:
        rows.append({"target": detectable_difference(seed_sd * np.sqrt(2 / n_seeds), 2 * n_seeds - 2, LEVEL),
                     "seeds_needed": n_seeds})
    return pd.DataFrame(rows, columns=["target", "seeds_needed"])
