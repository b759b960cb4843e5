"""Selections that control a comparison for what could explain it trivially (issue 28, item 6).

- **Equal token budget** (:func:`token_budget`): IGDS and Random each keep their ranking's head while its content
  tokens fit ``ratio`` of the pool's tokens, so a gain cannot come from training on more tokens (the number of
  examples, and so of optimizer steps, then differs: report it).
- **Length-stratified quartiles** (:func:`stratified_quartile`): the pool cut into four length strata, each
  stratum's FRS ranking cut into quarters, and the q-th quarters of all strata together: the four blocks have the
  same length mix, so an FRS-quartile gradient cannot be a length gradient.
- **Task first** (:func:`task_first`): in the mixed pool, the task's own items in a seeded random order before any
  other, the ratio's head of that: what knowing the task alone (a string match) selects.

Pure functions on ranked frames (``example_id``, ``score``, ``n_tokens``; ``task`` for :func:`task_first`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

N_STRATA = 4


def token_budget(pool: pd.DataFrame, ratio: float) -> int:
    """The budget of an equal-token comparison: ``⌈ratio · the pool's content tokens⌉``."""
    return int(math.ceil(ratio * float(pool.n_tokens.astype(float).sum())))


def length_strata(pool: pd.DataFrame, n: int = N_STRATA) -> pd.Series:
    """Each pool row's length stratum 0..n-1: equal-count bins of content tokens (ties broken by example id, so a
    row's stratum does not depend on the frame's order and every stratum holds ⌊|pool|/n⌋ or one more)."""
    order = np.lexsort((pool.example_id.to_numpy(str), pool.n_tokens.to_numpy(float)))
    strata = np.empty(len(pool), dtype=int)
    strata[order] = np.arange(len(pool)) * n // max(len(pool), 1)
    return pd.Series(strata, index=pool.index, name="stratum")


def stratified_quartile(ranked: pd.DataFrame, quartile: int, n_strata: int = N_STRATA) -> pd.DataFrame:
    """The ``quartile``-th (1 = top) quarter of the FRS ranking within every length stratum, together, in the
    ranking's order, with a 1-based ``rank``.

    Args:
        ranked: the pool's FRS ranking, best first (``example_id``, ``score``, ``n_tokens``).
    """
    if not 1 <= quartile <= 4:
        raise ValueError(f"quartile must be 1..4, not {quartile}")
    strata = length_strata(ranked, n_strata)
    keep = pd.Series(False, index=ranked.index)
    for s in range(n_strata):
        idx = ranked.index[strata == s]  # in ranking order
        size = len(idx) // 4  # equal blocks; a remainder (< 4 items per stratum) is left out of every block
        keep[idx[(quartile - 1) * size : quartile * size]] = True
    out = ranked[keep].reset_index(drop=True)
    return out.assign(rank=np.arange(1, len(out) + 1))


def task_first(pool: pd.DataFrame, task: str, ratio: float, seed: int = 0) -> pd.DataFrame:
    """The ratio's head of the pool with the task's items first, each part in a seeded random order (ranks 1..n)."""
    rng = np.random.default_rng(seed)
    shuffled = pool.iloc[rng.permutation(len(pool))]
    ordered = pd.concat([shuffled[shuffled.task == task], shuffled[shuffled.task != task]])
    n = math.ceil(ratio * len(pool))
    out = ordered.head(n).reset_index(drop=True)
    return out.assign(score=(out.task == task).astype(float), rank=np.arange(1, len(out) + 1))
