"""Pure statistics for the correlation demo: Pearson/Spearman with bootstrap CIs, paired differences.

No I/O and no globals: arrays in, floats out. ``NaN`` marks anything undefined (fewer than three
points, a constant input), never an exception, so a dashboard with one or two runs still renders.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

MIN_POINTS = 3


def _clean_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if xa.shape != ya.shape or xa.ndim != 1:
        raise ValueError(f"x and y must be 1-D and equally long, got shapes {xa.shape} and {ya.shape}")
    ok = np.isfinite(xa) & np.isfinite(ya)
    return xa[ok], ya[ok]


def _rowwise_pearson(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each row pair of ``x, y [n_rows, n]``; NaN for rows with a constant side."""
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    num = (xc * yc).sum(axis=-1)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    # relative tolerance: a constant column shows up as rounding noise, not exactly zero
    scale = np.sqrt((x * x).sum(axis=-1) * (y * y).sum(axis=-1)) + 1e-300
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-12 * scale, num / np.where(den == 0, 1, den), np.nan)
    return np.clip(r, -1.0, 1.0)


def _ranks(a: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)  # ties get their average rank, as Spearman's rho requires


def _ci(samples: np.ndarray, level: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(finite, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _residualize(a: np.ndarray, z: np.ndarray | None) -> np.ndarray:
    """Row-wise residuals of ``a`` after a least-squares line on ``z`` (``a`` itself when z is None)."""
    if z is None:
        return a
    zc = z - z.mean(axis=-1, keepdims=True)
    ac = a - a.mean(axis=-1, keepdims=True)
    var = (zc * zc).sum(axis=-1, keepdims=True)
    beta = np.divide((ac * zc).sum(axis=-1, keepdims=True), var, out=np.zeros_like(var), where=var > 0)
    return ac - beta * zc


def correlate(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
              level: float = 0.95, covariate: Sequence[float] | None = None) -> dict:
    """Pearson and Spearman correlation with percentile-bootstrap confidence intervals.

    Points (pairs) are resampled with replacement; resamples where one side is constant give no
    correlation and are left out of the interval. Pairs with a non-finite value are dropped.

    Args:
        x: ``[n]`` values, e.g. amplification per run.
        y: ``[n]`` values, e.g. metric gain per run.
        n_boot: bootstrap resamples.
        seed: RNG seed of the resampling.
        level: confidence level of the intervals.
        covariate: ``[n]`` values to partial out (e.g. log training-set size): both sides are replaced by
            their residuals on it (ranks by rank residuals for Spearman), in every resample.

    Returns:
        ``{"n", "pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo", "spearman_hi"}``;
        NaN for n < 3 (4 with a covariate) or a constant input.
    """
    xa, ya = _clean_pairs(x, y)
    za = None
    if covariate is not None:
        xa, ya, za = (np.asarray(v, dtype=float) for v in (x, y, covariate))
        ok = np.isfinite(xa) & np.isfinite(ya) & np.isfinite(za)
        xa, ya, za = xa[ok], ya[ok], za[ok]
    n = int(xa.size)
    out = {"n": n, "pearson": math.nan, "pearson_lo": math.nan, "pearson_hi": math.nan,
           "spearman": math.nan, "spearman_lo": math.nan, "spearman_hi": math.nan}
    if n < MIN_POINTS + (za is not None):
        return out

    def both(bx, by, bz):
        rz = None if bz is None else _ranks(bz)
        return (_rowwise_pearson(_residualize(bx, bz), _residualize(by, bz)),
                _rowwise_pearson(_residualize(_ranks(bx), rz), _residualize(_ranks(by), rz)))

    p, sp = both(xa[None], ya[None], None if za is None else za[None])
    out["pearson"], out["spearman"] = float(p[0]), float(sp[0])
    if math.isnan(out["pearson"]) or n_boot < 1:
        return out
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    bp, bsp = both(xa[idx], ya[idx], None if za is None else za[idx])
    out["pearson_lo"], out["pearson_hi"] = _ci(bp, level)
    out["spearman_lo"], out["spearman_hi"] = _ci(bsp, level)
    return out


def paired_bootstrap_diff(a: Sequence[float], b: Sequence[float], n_boot: int = 2000, seed: int = 0,
                          level: float = 0.95) -> dict:
    """Mean of ``a - b`` over paired examples with a percentile-bootstrap CI.

    Use it for per-example metric values of two runs on the same test examples (same order).

    Args:
        a: ``[n]`` per-example values of run A (e.g. the fine-tuned model).
        b: ``[n]`` per-example values of run B (e.g. the base model).
        n_boot: bootstrap resamples.
        seed: RNG seed.
        level: confidence level.

    Returns:
        ``{"n", "mean_diff", "lo", "hi"}``; NaN where undefined (no finite pair; CI needs n >= 2).
    """
    xa, xb = _clean_pairs(a, b)
    d = xa - xb
    n = int(d.size)
    out = {"n": n, "mean_diff": float(d.mean()) if n else math.nan, "lo": math.nan, "hi": math.nan}
    if n < 2 or n_boot < 1:
        return out
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    out["lo"], out["hi"] = _ci(d[idx].mean(axis=1), level)
    return out
