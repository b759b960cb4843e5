"""Does feature amplification track the gain? The mechanism tested where it would show (issue 28, item 7).

- :func:`item_interaction`: per test item, IGDS − Random ΔNLL (seed means) against F*'s activation on that item
  under the base model. If selecting on F* helps where F* fires, the difference falls as the activation rises: the
  slope (the arm × activation interaction) with a t-interval over items, and Spearman's ρ beside it.
- :func:`amplification_percentile`: F*'s amplification after a fine-tune as a percentile among density-matched
  features' amplifications measured on the same evaluation (≥ 50 for a statement).
- :func:`grouped_correlation`: amplification against gain inside each (pool, ratio) group, where the training-set
  size is fixed, with an interval from resampling selections (cells sharing one selection move together); a group
  needs at least :data:`MIN_POINTS` cells.

Pure statistics on frames; what feeds them is read from the grid's cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MIN_POINTS = 8
MIN_CONTROLS = 50


def item_interaction(delta: pd.Series, activation: pd.Series, level: float = 0.95) -> dict:
    """Least-squares slope of ``delta`` (IGDS − Random NLL per item) on ``activation`` (F*'s, per item), aligned
    by index (items missing on either side are dropped).

    Returns:
        ``n``, ``slope``, ``slope_lo``, ``slope_hi``, ``p`` (two-sided, slope = 0), ``spearman``,
        ``mean_delta``; NaN where fewer than 3 items or no spread in the activation.
    """
    df = pd.concat({"d": delta, "a": activation}, axis=1).dropna()
    out = {"n": len(df), "slope": np.nan, "slope_lo": np.nan, "slope_hi": np.nan, "p": np.nan,
           "spearman": np.nan, "mean_delta": float(df.d.mean()) if len(df) else np.nan}
    if len(df) < 3 or df.a.std() == 0:
        return out
    fit = stats.linregress(df.a, df.d)
    half = stats.t.ppf(0.5 + level / 2, len(df) - 2) * fit.stderr
    out.update(slope=float(fit.slope), slope_lo=float(fit.slope - half), slope_hi=float(fit.slope + half),
               p=float(fit.pvalue), spearman=float(stats.spearmanr(df.a, df.d).statistic))
    return out


def amplification_percentile(fstar: float, controls) -> dict:
    """Where F*'s amplification falls among the control features' (the share of controls below it, ties half).

    Returns:
        ``n_controls``, ``percentile`` (0–100), ``enough`` (at least :data:`MIN_CONTROLS` controls).
    """
    c = np.asarray([v for v in controls if np.isfinite(v)], dtype=float)
    if not len(c) or not np.isfinite(fstar):
        return {"n_controls": len(c), "percentile": np.nan, "enough": False}
    pct = 100.0 * (np.sum(c < fstar) + 0.5 * np.sum(c == fstar)) / len(c)
    return {"n_controls": len(c), "percentile": float(pct), "enough": len(c) >= MIN_CONTROLS}


def grouped_correlation(cells: pd.DataFrame, x: str, y: str, n_boot: int = 2000, seed: int = 0,
                        level: float = 0.95) -> pd.DataFrame:
    """Spearman's ρ of ``x`` against ``y`` inside each (pool_setting, ratio) group of cells with at least
    :data:`MIN_POINTS` points, its interval from resampling *selections* (``selection_id``; the cells of one
    selection, e.g. IGDS's seeds, enter or leave together).

    Returns:
        one row per group: pool_setting, ratio, n, n_selections, spearman, lo, hi (NaN interval below 3
        selections).
    """
    rng = np.random.default_rng(seed)
    rows = []
    for (pool, ratio), g in cells.dropna(subset=[x, y]).groupby(["pool_setting", "ratio"], sort=True):
        if len(g) < MIN_POINTS:
            continue
        rho = stats.spearmanr(g[x], g[y]).statistic
        sels = g.selection_id.unique()
        boots = []
        if len(sels) >= 3:
            by = {s: g[g.selection_id == s] for s in sels}
            for _ in range(n_boot):
                pick = pd.concat([by[s] for s in rng.choice(sels, len(sels))])
                if pick[x].nunique() > 1 and pick[y].nunique() > 1:
                    boots.append(stats.spearmanr(pick[x], pick[y]).statistic)
        lo, hi = (np.percentile(boots, [50 * (1 - level), 50 * (1 + level)]) if boots else (np.nan, np.nan))
        rows.append({"pool_setting": pool, "ratio": ratio, "n": len(g), "n_selections": len(sels),
                     "spearman": float(rho), "lo": float(lo), "hi": float(hi)})
    return pd.DataFrame(rows, columns=["pool_setting", "ratio", "n", "n_selections", "spearman", "lo", "hi"])
