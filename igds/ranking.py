"""The one order every ranking in IGDS uses: score at a stated resolution, then the id.

Scores computed on two CPUs differ in their last bits (vector kernels sum in different orders), so a
ranking that sorts raw floats can put two near-tied examples in a different order on another machine,
and then a selection, its cut, a vetting queue or a quartile block differ too. Every ranking therefore
sorts by the score rounded to :data:`SIGNIFICANT_DIGITS` significant decimal digits and breaks ties by
the example (or feature) id, never by input order, float noise or process state. Standard library and
numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SIGNIFICANT_DIGITS = 7  # scores equal to 7 significant digits are ties, ordered by id


def rank_key(scores, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Scores rounded to ``digits`` significant decimal digits (float64; NaN, ±inf and 0 kept as they are).

    The rounding is computed from the score alone with correctly rounded operations, so the same score
    gives the same key on every machine, and two scores within a relative 1e-12 of each other get the same
    key unless they straddle a rounding boundary (a chance of about 1e-5 per pair).
    """
    x = np.atleast_1d(np.asarray(scores, dtype=np.float64))
    out = x.copy()
    ok = np.isfinite(x) & (x != 0)
    if not ok.any():
        return out
    v = x[ok]
    exp = np.floor(np.log10(np.abs(v)))
    # log10 may be off by one ulp at an exact power of ten on some kernels: fix the decade exactly
    mag = np.abs(v)
    exp = np.where(mag >= 10.0 ** (exp + 1), exp + 1, exp)
    exp = np.where(mag < 10.0 ** exp, exp - 1, exp)
    shift = (digits - 1 - exp).astype(np.int64)
    # scale by a power of ten in two exact-exponent steps so tiny or huge scores never overflow
    lo, hi = np.minimum(shift, 300), shift - np.minimum(shift, 300)
    scaled = v * 10.0 ** lo * 10.0 ** hi
    out[ok] = np.round(scaled) / 10.0 ** lo / 10.0 ** hi
    return out


def rank_order(scores, ids: Sequence, *, descending: bool = True, digits: int = SIGNIFICANT_DIGITS) -> np.ndarray:
    """Positions of ``scores`` in rank order: by the rounded score (highest first when ``descending``), ties by
    ascending id; NaN scores last (by id).

    Args:
        scores: one number per item.
        ids: one id per item (strings or integers; compared as values, never by position).
        descending: whether a higher score ranks first.
        digits: the resolution, in significant decimal digits.

    Returns:
        an integer array ``order`` such that ``[ids[i] for i in order]`` is the ranking.
    """
    key = rank_key(scores, digits)
    ids = np.asarray(list(ids))
    if len(ids) != len(key):
        raise ValueError(f"{len(key)} scores but {len(ids)} ids")
    nan = np.isnan(key)
    primary = np.where(nan, 0.0, -key if descending else key)
    return np.lexsort((ids, primary, nan))


def ranked_ids(scores, ids: Sequence, *, descending: bool = True, digits: int = SIGNIFICANT_DIGITS) -> list:
    """``ids`` in rank order (see :func:`rank_order`)."""
    ids = list(ids)
    return [ids[i] for i in rank_order(scores, ids, descending=descending, digits=digits)]
