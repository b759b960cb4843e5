"""The filter's verdict from per-item effects, torch-free: a null fitted to the null elements' effects, each
candidate's p against it, the rank p, Benjamini–Hochberg across the tested candidates, the "untestable" class,
futility looks and the smallest detectable effect.

Every function reads the per-item α = 1 effects in the run's look order (``[elements, items]``, NaN where an
element was not measured: a candidate that stopped at a look has effects on that look's items only). A candidate
measured on its first ``n`` items is compared with the null's mean effects over the same ``n`` items, so a
candidate that stopped early meets the null of its own look.

Which parts are ours (the paper says "significant" and gives no test): the fitted null (a Student t, or a normal,
fitted to the null's mean effects), the rank p beside it, BH at ``fdr`` across the candidates that fire on at least
``min_fired`` dev items, the futility rule and the detectable effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

NULL_FITS = ("t", "normal")
POWER = 0.8  # the power of the detectable effect


def benjamini_hochberg(p) -> np.ndarray:
    """BH-adjusted p-values (q-values), monotone and capped at 1 (:func:`scipy.stats.false_discovery_control`)."""
    from scipy import stats

    p = np.asarray(p, dtype=float)
    return stats.false_discovery_control(p, method="bh") if len(p) else p


@dataclass(frozen=True)
class NullFit:
    """A distribution fitted to the null elements' mean effects over the same items.

    ``df`` is ``inf`` for a normal. ``ks_p`` is the Kolmogorov–Smirnov p of the fit (the check shown beside it; with
    parameters estimated from the same values it is optimistic)."""

    family: str
    df: float
    loc: float
    scale: float
    n_null: int
    ks_p: float
    effects: tuple[float, ...]

    def dist(self):
        from scipy import stats

        if self.family == "normal" or not math.isfinite(self.df):
            return stats.norm(self.loc, self.scale)
        return stats.t(self.df, self.loc, self.scale)

    def p(self, effect: float) -> float:
        """One-sided p of an effect at least this large under the fitted null (1 for NaN)."""
        if not math.isfinite(effect) or not self.n_null:
            return 1.0
        if self.scale <= 0:
            return 0.0 if effect > self.loc else 1.0
        return float(self.dist().sf(effect))

    def quantile(self, q: float) -> float:
        """The fitted null's ``q`` quantile (the effect a candidate must reach for p = 1 − q)."""
        if not self.n_null:
            return float("nan")
        if self.scale <= 0:
            return self.loc
        return float(self.dist().ppf(q))

    def rank_p(self, effect: float) -> float:
        """``(1 + #{null ≥ effect}) / (N + 1)``: the empirical p (too coarse for BH alone with N ≈ 100)."""
        e = np.asarray(self.effects)
        return float((1 + (e >= effect).sum()) / (len(e) + 1)) if math.isfinite(effect) else 1.0


def fit_null(effects, family: str = "t") -> NullFit:
    """Fit ``family`` to the null's mean effects (NaN dropped); a t whose fitted df exceeds 200 is a normal."""

    e = np.asarray(effects, dtype=float)
    e = e[np.isfinite(e)]
    if family not in NULL_FITS:
        raise ValueError(f"null_fit must be one of {', '.join(NULL_FITS)}, not {family!r}")
    if len(e) < 3 or float(e.std()) == 0.0:
        loc = float(e.mean()) if len(e) else float("nan")
        return NullFit("normal", math.inf, loc, float(e.std()) if len(e) else 0.0, len(e), float("nan"), tuple(e))
    return _fit_cached(tuple(np.round(e, 12)), family)


@lru_cache(maxsize=256)
def _fit_cached(e: tuple, family: str) -> NullFit:
    from scipy import stats

    x = np.asarray(e)
    if family == "t":
        df, loc, scale = stats.t.fit(x)
        if df > 200:
            family, df = "normal", math.inf
            loc, scale = float(x.mean()), float(x.std(ddof=1))
    else:
        df, loc, scale = math.inf, float(x.mean()), float(x.std(ddof=1))
    cdf = stats.t(df, loc, scale).cdf if math.isfinite(df) else stats.norm(loc, scale).cdf
    ks = float(stats.kstest(x, cdf).pvalue)
    return NullFit(family, float(df), float(loc), float(scale), len(x), ks, e)


def prefix_means(deltas: np.ndarray, n: int) -> np.ndarray:
    """Mean effect of each row over its first ``n`` items (NaN for rows not measured that far)."""
    d = np.asarray(deltas, dtype=float)[:, :n]
    return d.mean(1) if n else np.full(len(d), np.nan)  # a NaN item (not measured) makes the row's mean NaN


def measured_items(deltas: np.ndarray) -> np.ndarray:
    """Items each row was measured on: the length of its leading run of non-NaN values."""
    ok = ~np.isnan(np.asarray(deltas, dtype=float))
    return np.where(ok.all(1), ok.shape[1], np.argmin(ok, 1)).astype(int)


def null_at(null_deltas: np.ndarray, n: int, family: str) -> NullFit:
    """The fitted null over the first ``n`` items (elements measured that far)."""
    return fit_null(prefix_means(null_deltas, n), family)


def futile(deltas: np.ndarray, null: NullFit, fdr: float, futility: float) -> bool:
    """Whether a candidate, on the items seen so far, can no longer reach the threshold: the one-sided
    ``1 − futility`` upper confidence bound of its mean effect lies below the fitted null's ``1 − fdr`` quantile
    (the most lenient BH step). Ours; it stops only for failure, so false positives do not grow."""
    from scipy import stats

    d = np.asarray(deltas, dtype=float)
    d = d[np.isfinite(d)]
    if len(d) < 2 or not null.n_null:
        return False
    ucb = d.mean() + stats.t.ppf(1 - futility, len(d) - 1) * d.std(ddof=1) / math.sqrt(len(d))
    return bool(ucb < null.quantile(1 - fdr))


def detectable_effect(null_deltas: np.ndarray, n_tested: int, fdr: float, family: str) -> float:
    """The smallest α = 1 effect found with 80% power at the full dev set: the fitted null's ``1 − fdr/m`` quantile
    (BH's strictest step over ``m`` tested candidates) plus ``z_.8`` standard errors of a null feature's mean
    (their median). A planning figure, not a bound; NaN without a null."""
    from scipy import stats

    d = np.asarray(null_deltas, dtype=float)
    n = int(measured_items(d).max()) if len(d) else 0
    if not n:
        return float("nan")
    null = null_at(d, n, family)
    full = d[measured_items(d) >= n][:, :n]
    se = float(np.median(full.std(1, ddof=1) / math.sqrt(n))) if n > 1 and len(full) else 0.0
    return null.quantile(1 - fdr / max(n_tested, 1)) + stats.norm.ppf(POWER) * se


def decide(deltas: np.ndarray, null_deltas: np.ndarray, n_fired, *, fdr: float, min_fired: int,
           family: str = "t", delta: float | None = None, require_significance: bool = True) -> pd.DataFrame:
    """Each candidate's verdict.

    Args:
        deltas: ``[m, n]`` per-item α = 1 effects of the candidates in look order (NaN where not measured).
        null_deltas: ``[N, n]`` the null elements' per-item effects on the same items.
        n_fired: dev items each candidate's edit changes (all dev items, not only those measured).
        min_fired: below this a candidate is "untestable" (no p, not in BH, not rejected).
        delta: an explicit minimum effect on top of the test (None: the test alone).

    Returns:
        one row per candidate: n (items measured), effect, p (fitted null), rank_p, q_value, null_loc, null_scale,
        null_df, null_ks_p, untestable, kept, reason.
    """
    deltas = np.asarray(deltas, dtype=float)
    deltas = deltas.reshape(len(n_fired), -1) if len(n_fired) else np.zeros((0, deltas.shape[-1] if deltas.ndim else 0))
    null_deltas = np.asarray(null_deltas, dtype=float)
    n_fired = np.asarray(n_fired, dtype=int)
    n_items = measured_items(deltas) if deltas.size else np.zeros(len(n_fired), int)
    untestable = n_fired < min_fired
    rows = []
    for j, n in enumerate(n_items):
        eff = float(prefix_means(deltas[j : j + 1], n)[0]) if n else float("nan")
        null = null_at(null_deltas, n, family) if n and len(null_deltas) else fit_null([], family)
        tested = bool(n) and not untestable[j]
        rows.append({"n": int(n), "effect": eff, "p": null.p(eff) if tested else np.nan,
                     "rank_p": null.rank_p(eff) if tested else np.nan, "null_loc": null.loc,
                     "null_scale": null.scale, "null_df": null.df, "null_ks_p": null.ks_p, "n_null": null.n_null})
    out = pd.DataFrame(rows, columns=["n", "effect", "p", "rank_p", "null_loc", "null_scale", "null_df", "null_ks_p",
                                      "n_null"])
    out["n_fired"] = n_fired
    out["untestable"] = untestable
    tested = out.p.notna().to_numpy()
    q = np.full(len(out), np.nan)
    if tested.any():
        q[tested] = benjamini_hochberg(out.p[tested].to_numpy())
    out["q_value"] = q
    significant = (out.q_value < fdr).to_numpy() if require_significance else tested
    above = (out.effect > delta).to_numpy() if delta is not None else np.ones(len(out), bool)
    out["stopped"] = tested & (n_items < deltas.shape[1])
    out["kept"] = tested & significant & above
    reason = np.where(untestable, f"untestable (fires on < {min_fired} dev items)",
             np.where(n_items == 0, "not measured",
             np.where(~significant, np.where(out.stopped, "stopped for futility", f"q >= {fdr:g}"),
             np.where(~above, f"effect <= delta ({delta if delta is not None else 0:g})", "kept"))))
    out["reason"] = reason
    return out


def sequential_verdict(deltas: np.ndarray, null_deltas: np.ndarray, n_fired, bounds, cfg,
                       placed_on=None) -> pd.DataFrame:
    """The verdict of the looks run in order on effects measured on every item: at each look (every bound but the
    last) a running candidate that is :func:`futile` stops, its later items masked; then :func:`decide`. Futility
    reads only the items up to its look, so this equals what the interventions driver decides measuring look by
    look (a test checks it); it is the cheap way to replay the procedure many times.

    Args:
        cfg: the run's :class:`igds.method.config.InterventionConfig` (its fdr, futility, min_fired, null_fit, delta
            and require_significance).
        placed_on: for each null row, the index of the candidate it is placed on (-1: none); a candidate's placed
            directions stop when it does.
    """
    d = np.array(deltas, dtype=float)
    n_fired = np.asarray(n_fired, dtype=int)
    fdr, futility, family = cfg.fdr, cfg.futility, cfg.null_fit
    running = n_fired >= cfg.min_fired
    null_deltas = np.array(null_deltas, dtype=float)
    placed_on = np.full(len(null_deltas), -1) if placed_on is None else np.asarray(placed_on)
    for look in list(bounds)[:-1]:
        null = null_at(null_deltas, look, family)
        for j in np.flatnonzero(running):
            if futile(d[j, :look], null, fdr, futility):
                d[j, look:] = np.nan
                running[j] = False
                null_deltas[placed_on == j, look:] = np.nan  # its placed directions stop with it
    return decide(d, null_deltas, n_fired, fdr=fdr, min_fired=cfg.min_fired, family=family, delta=cfg.delta,
                  require_significance=cfg.require_significance)
