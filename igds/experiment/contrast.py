"""The pre-registered contrast: two arms' fine-tunes, several seeds each, scored on the same test items.

A seed is the unit: each seed's score is its mean over the test items (items nested in seeds), and the interval is a
Welch t-interval over the two arms' seed means. Every seed of both arms is scored on the same items, so an item's
own difficulty is in every seed mean alike and cancels in the difference; what the interval must cover is how much
the seed means scatter, which includes the item-level noise of each fine-tune. With 3 seeds resampled by a bootstrap
(10 distinct resamples) the seed part of an interval comes out far too narrow; a t-interval over 10 seeds does not.

:func:`seed_contrast` gives the estimate, its interval, p, the variance components and the detectable effect (a
planning figure for the next run, never a bound on this one); :func:`holm` adjusts a family of p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

PLANNING_POWER = 0.8


@dataclass(frozen=True)
class SeedContrast:
    """Arm A − arm B over seed means, with a Welch t-interval.

    Attributes:
        estimate: mean of A's seed means − mean of B's.
        lo, hi: the interval at ``level``; se: its standard error; df: Welch–Satterthwaite degrees of freedom.
        p: two-sided p of "no difference".
        n_seeds: (A, B) seeds; n_items: test items every seed was scored on.
        seed_sd: (A, B) standard deviation of the seed means (each holds its seed's item noise).
        item_sd: the pooled within-seed standard deviation over items (how much one item's score scatters).
        detectable: the |difference| this design finds with 80% power at ``level`` (two-sided): a planning figure.
    """

    estimate: float
    lo: float
    hi: float
    se: float
    df: float
    p: float
    n_seeds: tuple[int, int]
    n_items: int
    seed_sd: tuple[float, float]
    item_sd: float
    detectable: float
    level: float = 0.95

    def as_dict(self) -> dict:
        return {"estimate": self.estimate, "lo": self.lo, "hi": self.hi, "se": self.se, "df": self.df, "p": self.p,
                "n_seeds_a": self.n_seeds[0], "n_seeds_b": self.n_seeds[1], "n_items": self.n_items,
                "seed_sd_a": self.seed_sd[0], "seed_sd_b": self.seed_sd[1], "item_sd": self.item_sd,
                "detectable": self.detectable, "level": self.level}


def shared_items(*mats: np.ndarray) -> np.ndarray:
    """Columns (items) with a value in every row of every ``seeds × items`` matrix."""
    ok = np.ones(mats[0].shape[1], dtype=bool)
    for m in mats:
        ok &= ~np.isnan(m).any(axis=0)
    return ok


def seed_contrast(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> SeedContrast:
    """Arm ``a`` − arm ``b``, each a ``seeds × items`` matrix over the same item columns (NaN: not scored; only
    items every seed of both arms scored are used).

    Raises:
        ValueError: fewer than 2 seeds in an arm, or no item shared by every seed.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"two seeds × items matrices over the same items needed, got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError(f"a t-interval over seeds needs ≥ 2 seeds per arm, got {len(a)} and {len(b)}")
    keep = shared_items(a, b)
    if not keep.any():
        raise ValueError("no test item was scored by every seed of both arms")
    a, b = a[:, keep], b[:, keep]
    ma, mb = a.mean(axis=1), b.mean(axis=1)
    va, vb = ma.var(ddof=1) / len(ma), mb.var(ddof=1) / len(mb)
    se = math.sqrt(va + vb)
    df = _welch_df(va, vb, len(ma), len(mb))
    est = float(ma.mean() - mb.mean())
    half = stats.t.ppf(0.5 + level / 2, df) * se
    p = float(2 * stats.t.sf(abs(est) / se, df)) if se > 0 else float(est == 0)
    resid = np.concatenate([a - ma[:, None], b - mb[:, None]])
    item_sd = float(np.sqrt((resid**2).sum() / max(resid.size - len(resid), 1)))
    return SeedContrast(estimate=est, lo=est - half, hi=est + half, se=se, df=df, p=p,
                        n_seeds=(len(ma), len(mb)), n_items=int(keep.sum()),
                        seed_sd=(float(ma.std(ddof=1)), float(mb.std(ddof=1))), item_sd=item_sd,
                        detectable=detectable_difference(se, df, level), level=level)


def _welch_df(va: float, vb: float, na: int, nb: int) -> float:
    den = va**2 / (na - 1) + vb**2 / (nb - 1)
    return float((va + vb) ** 2 / den) if den > 0 else float(na + nb - 2)


def detectable_difference(se: float, df: float, level: float = 0.95, power: float = PLANNING_POWER) -> float:
    """The true difference a two-sided test at ``level`` finds with ``power``, given the standard error."""
    return float((stats.t.ppf(0.5 + level / 2, df) + stats.t.ppf(power, df)) * se)


def seeds_needed(seed_sd: float, target: float, level: float = 0.95, power: float = PLANNING_POWER,
                 most: int = 200) -> int | None:
    """Seeds per arm (equal arms, seed-mean standard deviation ``seed_sd`` in each) for ``target`` to be
    detectable; None when more than ``most`` would be needed."""
    for n in range(2, most + 1):
        se = seed_sd * math.sqrt(2 / n)
        if detectable_difference(se, 2 * n - 2, level, power) <= target:
            return n
    return None


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error), in the input's order; NaN stays NaN."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    ok = ~np.isnan(p)
    q = p[ok]
    m = len(q)
    if m == 0:
        return out
    order = np.argsort(q, kind="stable")
    adj = np.maximum.accumulate((m - np.arange(m)) * q[order])
    res = np.empty(m)
    res[order] = np.minimum(adj, 1.0)
    out[ok] = res
    return out
