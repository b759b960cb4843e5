"""Selection-only analyses, before any fine-tune: what each method's selection is made of.

Per selection: its size and tokens, the share of on-task items and of each source, the share with FRS = 0 (items
the task's F* never fires on, which an FRS ranking cannot tell apart), Spearman(FRS, content tokens) inside the
selection (does the ranking just follow length?) and, on the noisy pool, the share of corrupted items, in all and by
kind. The pool itself is the first row, the reference every share is read against.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

POOL_ROW = "pool"
PROFILE_COLUMNS = ["method", "n", "tokens", "mean_tokens", "task_share", "frs_zero_share", "spearman_frs_tokens",
                   "corrupted_share", "top_source", "top_source_share"]


def selection_profile(method: str, selected, pool: pd.DataFrame, task: str,
                      labels: pd.DataFrame | None = None) -> dict:
    """One selection's profile.

    Args:
        selected: the selection's example ids (any order; each must be in ``pool``).
        pool: the pool, one row per example: ``example_id``, ``task``, ``source``, ``n_tokens``, ``frs``.
        labels: the noisy pool's corruption labels (``example_id``, ``kind``), or None for a clean pool.

    Returns:
        :data:`PROFILE_COLUMNS`, plus ``corrupted_<kind>`` per labelled kind and ``sources`` (share by source).

    Raises:
        ValueError: a selected id that is not in the pool.
    """
    rows = pool.set_index("example_id")
    ids = list(selected)
    missing = [i for i in ids if i not in rows.index]
    if missing:
        raise ValueError(f"{len(missing)} selected examples are not in the pool, e.g. {missing[0]}")
    sel = rows.loc[ids]
    n = len(sel)
    sources = sel.source.value_counts(normalize=True) if n else pd.Series(dtype=float)
    frs, tokens = sel.frs.to_numpy(float), sel.n_tokens.to_numpy(float)
    varied = n > 2 and np.nanstd(frs) > 0 and np.nanstd(tokens) > 0
    out = {"method": method, "n": n, "tokens": float(np.nansum(tokens)),
           "mean_tokens": float(np.nanmean(tokens)) if n else float("nan"),
           "task_share": float((sel.task == task).mean()) if n else float("nan"),
           "frs_zero_share": float((frs == 0).mean()) if n else float("nan"),
           "spearman_frs_tokens": float(stats.spearmanr(frs, tokens, nan_policy="omit").statistic) if varied
           else float("nan"),
           "corrupted_share": float("nan"), "top_source": sources.index[0] if n else None,
           "top_source_share": float(sources.iloc[0]) if n else float("nan"),
           "sources": {str(k): float(v) for k, v in sources.items()}}
    if labels is not None:
        kind = labels.set_index("example_id").kind
        got = pd.Series(ids).map(kind)
        out["corrupted_share"] = float(got.notna().mean()) if n else float("nan")
        for k in sorted(labels.kind.unique()):
            out[f"corrupted_{k}"] = float((got == k).mean()) if n else float("nan")
    return out


def profile_frame(pool: pd.DataFrame, selections: dict[str, list[str]], task: str,
                  labels: pd.DataFrame | None = None) -> pd.DataFrame:
    """The pool's own row, then one row per selection (``{method: example ids}``, in that order)."""
    rows = [selection_profile(POOL_ROW, pool.example_id, pool, task, labels)]
    rows += [selection_profile(m, ids, pool, task, labels) for m, ids in selections.items()]
    return pd.DataFrame(rows)


def pool_with_frs(ws, task: str, pool_setting: str, extract_cfg, effects) -> pd.DataFrame:
    """The task's pool (:func:`igds.method.pool.pool_frame`, content tokens from the extraction) with each example's
    FRS under the task's F* (``effects``, as the Selection page scores it)."""
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig
    from igds.workflow.stages import live_selection, selection_pool

    run_id = ws.extraction_run_id(extract_cfg)
    sel = SelectionConfig(pool_setting=pool_setting, pool_limit=0)
    pool = selection_pool(ws.store, task, sel, run_id)
    sp, _ = live_selection(ws.store, run_id, task, effects, sel, ResonanceConfig(), ws.sae_key)
    return pool.merge(sp.scores[["example_id", "frs"]], on="example_id", how="left")
