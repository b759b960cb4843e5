"""Stage 2a — the feature-resonant score (FRS) of a pool, from one in-memory matrix.

``FRS(s) = Σ_{j∈F*} w_j · a_j(s) / n_j`` with ``a_j`` the token aggregation (mean = sum/n_tokens,
sum, or max), ``n_j`` a per-feature scale over the pool being selected from and ``w_j`` a weight.
:func:`load_resonance_matrix` reads the pool's activations of a candidate feature set once;
scoring, re-scoring for another feature subset, aggregation or weighting (the dashboard's slider),
saving a selection and "why selected" are then all array arithmetic over that one matrix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from igds.config import ConfigBase

AGGREGATIONS = ("mean", "sum", "max")


@dataclass(frozen=True, kw_only=True)
class ResonanceConfig(ConfigBase):
    """How the feature-resonant score combines validated features.

    Args:
        aggregation: token aggregation ``a_j(s)``: mean (sum / kept tokens), sum (paper literal) or max.
        scale: ``p99`` divides each feature by the 99th percentile of ``a_j`` over pool examples where
            it fires (features on one scale); ``none`` keeps raw activations (paper literal).
        weights: ``uniform`` (w=1) or ``effect`` (w = the feature's amplification effect).
    """

    aggregation: str = field(default="mean", metadata={"help": "token aggregation: mean | sum | max"})
    scale: str = field(default="p99", metadata={"help": "per-feature scale: p99 | none"})
    weights: str = field(default="uniform", metadata={"help": "feature weights: uniform | effect"})

    def __post_init__(self):
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}")
        if self.scale not in ("p99", "none") or self.weights not in ("uniform", "effect"):
            raise ValueError("scale must be p99|none and weights uniform|effect")


PAPER_RESONANCE = ResonanceConfig(aggregation="sum", scale="none", weights="uniform")


def feature_weights(features: Sequence[int], effects: Mapping[int, float] | None, cfg: ResonanceConfig) -> pd.DataFrame:
    """``w_j`` per validated feature."""
    w = [float(effects[f]) if cfg.weights == "effect" and effects else 1.0 for f in features]
    return pd.DataFrame({"feature": [int(f) for f in features], "w": w})


@dataclass(frozen=True)
class ResonanceMatrix:
    """A pool's activations of a fixed candidate feature set.

    Args:
        pool: the pool in its canonical order (see :func:`igds.method.pool.pool_frame`): example_id,
            n_tokens, n_positions, task, source.
        features: the candidate features, ascending (columns of the matrices).
        sum_act: ``[n_pool, n_features]`` float32 sums of activations; NaN where the feature never fired.
        max_act: ``[n_pool, n_features]`` float32 maxima; NaN where it never fired.
    """

    pool: pd.DataFrame
    features: tuple[int, ...]
    sum_act: np.ndarray
    max_act: np.ndarray

    def covers(self, features: Sequence[int]) -> bool:
        """Whether every feature in ``features`` is a column of the matrix."""
        return set(int(f) for f in features) <= set(self.features)

    def terms(self, features: Sequence[int], cfg: ResonanceConfig) -> np.ndarray:
        """``a_j(s)`` as float64 ``[n_pool, len(features)]``; NaN where the feature did not fire or the
        example kept no token."""
        missing = set(int(f) for f in features) - set(self.features)
        if missing:
            raise ValueError(f"features {sorted(missing)} are not in the resonance matrix; reload it with them")
        cols = [self.features.index(int(f)) for f in features]
        source = self.max_act if cfg.aggregation == "max" else self.sum_act
        a = source[:, cols].astype(np.float64)
        n_tokens = self.pool.n_tokens.to_numpy(dtype=float)
        if cfg.aggregation == "mean":
            a = a / n_tokens[:, None]
        return np.where((n_tokens > 0)[:, None], a, np.nan)

    def scales(self, features: Sequence[int], cfg: ResonanceConfig) -> pd.DataFrame:
        """``n_j``: the 99th percentile of ``a_j`` over the pool's examples where the feature fires
        (1.0 with ``scale='none'`` or when it never fires)."""
        n = np.ones(len(features))
        if cfg.scale == "p99" and len(features):
            t = self.terms(features, cfg)
            for j in range(t.shape[1]):
                col = t[:, j][~np.isnan(t[:, j])]
                if col.size and (q := float(np.quantile(col, 0.99))) > 0:
                    n[j] = q
        return pd.DataFrame({"feature": [int(f) for f in features], "n": n})

    def _coefficients(self, features: Sequence[int], cfg: ResonanceConfig, effects: Mapping[int, float] | None,
                      scales: pd.DataFrame | None) -> pd.DataFrame:
        scales = self.scales(features, cfg) if scales is None else scales
        fw = feature_weights(features, effects, cfg).merge(scales, on="feature")
        return fw.assign(coef=fw.w / fw.n)

    def score(self, features: Sequence[int], cfg: ResonanceConfig, effects: Mapping[int, float] | None = None,
              scales: pd.DataFrame | None = None) -> pd.DataFrame:
        """FRS of every pool example (0 where no feature fires).

        Returns:
            example_id, frs, n_tokens, n_positions, task, source — by frs desc, ties in pool order.
        """
        fw = self._coefficients(features, cfg, effects, scales)
        terms = np.nan_to_num(self.terms(list(fw.feature), cfg), nan=0.0)
        frs = terms @ fw.coef.to_numpy(dtype=float) if len(fw) else np.zeros(len(self.pool))
        order = np.argsort(-frs, kind="stable")  # ties keep the pool's canonical order
        return self.pool.iloc[order].assign(frs=frs[order])[
            ["example_id", "frs", "n_tokens", "n_positions", "task", "source"]].reset_index(drop=True)

    def explain(self, example_id: str, features: Sequence[int], cfg: ResonanceConfig,
                effects: Mapping[int, float] | None = None, scales: pd.DataFrame | None = None) -> pd.DataFrame:
        """Exact decomposition of one example's FRS into per-feature terms ``w_j · a_j(s) / n_j``
        ("why selected"): the ``term`` column sums to the example's FRS from :meth:`score`.

        Returns:
            feature, w, n, coef, a, term — sorted by term desc.
        """
        row = np.flatnonzero(self.pool.example_id.to_numpy() == example_id)
        if not row.size:
            raise ValueError(f"example {example_id!r} is not in this pool")
        fw = self._coefficients(features, cfg, effects, scales)
        a = np.nan_to_num(self.terms(list(fw.feature), cfg)[row[0]], nan=0.0)
        out = fw.assign(a=a, term=fw.coef.to_numpy(dtype=float) * a)
        return out.sort_values("term", ascending=False, kind="stable").reset_index(drop=True)


def load_resonance_matrix(store, run_id: str, pool: pd.DataFrame, features: Sequence[int]) -> ResonanceMatrix:
    """Read the pool's activations of ``features`` (the candidates a user may pick from) in chunks.

    Args:
        store: the activation store.
        run_id: the extraction run.
        pool: the pool with its stats (:func:`igds.method.pool.pool_frame` with ``run_id``).
        features: candidate features.
    """
    feats = sorted({int(f) for f in features})
    pool = pool.reset_index(drop=True)
    index = pd.Index(pool.example_id)
    # float32 holds the stored REAL aggregates exactly at half the memory of float64
    mats = {name: np.full((len(pool), len(feats)), np.nan, dtype=np.float32) for name in ("sum_act", "max_act")}
    for chunk in store.iter_pool_activations(run_id, list(index), feats):
        rows = index.get_indexer(np.asarray(chunk["example_id"], dtype=object))
        cols = np.searchsorted(np.array(feats), np.asarray(chunk["feature"]))
        for name, m in mats.items():
            m[rows, cols] = chunk[name]
    return ResonanceMatrix(pool=pool, features=tuple(feats), **mats)
