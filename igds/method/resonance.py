"""Stage 2a — the feature-resonant score (FRS), computed inside DuckDB over the stored aggregates.

``FRS(s) = Σ_{j∈F*} w_j · a_j(s) / n_j`` with ``a_j`` the token aggregation (mean = sum/n_tokens,
sum, or max), ``n_j`` a per-feature scale and ``w_j`` a weight. Re-scoring the pool for another
feature set, aggregation or weighting is one query, fast enough for live sliders.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from igds.config import ConfigBase
from igds.store import ActivationStore

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

_AGG_SQL = {  # fixed fragments chosen by a validated enum, never user text
    "mean": "fa.sum_act / es.n_tokens",
    "sum": "fa.sum_act",
    "max": "fa.max_act",
}

# The pool: train-split examples of the task (plus the general set when mixed) that the extraction run
# covers. Parameters: run_id, task, mixed.
POOL_SQL = ("SELECT e.id AS example_id FROM examples e JOIN example_stats ps "
            "ON ps.example_id = e.id AND ps.run_id = ? WHERE e.split = 'train' "
            "AND (e.task = ? OR (? AND e.task = 'general'))")


def feature_weights(features: Sequence[int], effects: Mapping[int, float] | None, cfg: ResonanceConfig) -> pd.DataFrame:
    """``w_j`` per validated feature."""
    w = [float(effects[f]) if cfg.weights == "effect" and effects else 1.0 for f in features]
    return pd.DataFrame({"feature": [int(f) for f in features], "w": w})


def _term_sql(cfg: ResonanceConfig) -> str:
    return _AGG_SQL[cfg.aggregation]


def feature_scales(store: ActivationStore, run_id: str, task: str, pool_setting: str, features: Sequence[int],
                   cfg: ResonanceConfig) -> pd.DataFrame:
    """``n_j`` per feature (1.0 when ``scale='none'`` or the feature never fires in the pool)."""
    if cfg.scale == "none" or not features:
        return pd.DataFrame({"feature": [int(f) for f in features], "n": [1.0] * len(features)})
    feats = pa.table({"feature": pa.array([int(f) for f in features], pa.int32())})
    sql = (f"WITH pool AS ({POOL_SQL}) "
           f"SELECT fa.feature, quantile_cont({_term_sql(cfg)}, 0.99) AS n FROM feature_acts fa "
           "JOIN scale_feats USING (feature) JOIN pool USING (example_id) "
           "JOIN example_stats es ON es.run_id = fa.run_id AND es.example_id = fa.example_id "
           "WHERE fa.run_id = ? AND es.n_tokens > 0 GROUP BY fa.feature")
    with store.connect() as con:
        con.register("scale_feats", feats)
        df = con.execute(sql, [run_id, task, pool_setting == "mixed", run_id]).fetch_df()
    df = pd.DataFrame({"feature": [int(f) for f in features]}).merge(df, on="feature", how="left")
    df["n"] = df["n"].where(df["n"] > 0, 1.0).fillna(1.0)
    return df


def score_resonance(store: ActivationStore, run_id: str, task: str, pool_setting: str, features: Sequence[int],
                    cfg: ResonanceConfig, effects: Mapping[int, float] | None = None,
                    scales: pd.DataFrame | None = None) -> pd.DataFrame:
    """FRS of every pool example (0 where no validated feature fires).

    Returns:
        frame with example_id, frs, n_tokens, n_positions, task, source — sorted by frs desc, id asc.
    """
    if scales is None:
        scales = feature_scales(store, run_id, task, pool_setting, features, cfg)
    fw = feature_weights(features, effects, cfg).merge(scales, on="feature")
    fw = pa.table({"feature": pa.array(fw.feature, pa.int32()), "coef": pa.array(fw.w / fw.n, pa.float64())})
    sql = (f"WITH pool AS ({POOL_SQL}), "
           "terms AS (SELECT fa.example_id, sum(fw.coef * " + _term_sql(cfg) + ") AS frs FROM feature_acts fa "
           "JOIN frs_feats fw USING (feature) "
           "JOIN example_stats es ON es.run_id = fa.run_id AND es.example_id = fa.example_id "
           "WHERE fa.run_id = ? AND es.n_tokens > 0 GROUP BY fa.example_id) "
           "SELECT p.example_id, coalesce(t.frs, 0.0) AS frs, es.n_tokens, es.n_positions, e.task, e.source "
           "FROM pool p JOIN examples e ON e.id = p.example_id "
           "LEFT JOIN terms t USING (example_id) "
           "LEFT JOIN example_stats es ON es.run_id = ? AND es.example_id = p.example_id "
           "ORDER BY frs DESC, p.example_id")
    with store.connect() as con:
        con.register("frs_feats", fw)
        return con.execute(sql, [run_id, task, pool_setting == "mixed", run_id, run_id]).fetch_df()


def explain_score(store: ActivationStore, run_id: str, example_id: str, features: Sequence[int],
                  cfg: ResonanceConfig, scales: pd.DataFrame,
                  effects: Mapping[int, float] | None = None) -> pd.DataFrame:
    """Exact decomposition of one example's FRS into per-feature terms ``w_j · a_j(s) / n_j``.

    The terms sum to the example's FRS ("why selected").
    """
    fw = feature_weights(features, effects, cfg).merge(scales, on="feature")
    sql = ("SELECT fa.feature, " + _term_sql(cfg) + " AS a FROM feature_acts fa "
           "JOIN example_stats es ON es.run_id = fa.run_id AND es.example_id = fa.example_id "
           "WHERE fa.run_id = ? AND fa.example_id = ? AND list_contains(?, fa.feature)")
    acts = store.query_df(sql, [run_id, example_id, [int(f) for f in features]])
    out = fw.merge(acts, on="feature", how="left").fillna({"a": 0.0})
    out["term"] = out.w * out.a / out.n
    return out.sort_values("term", ascending=False).reset_index(drop=True)


@dataclass(frozen=True)
class ResonanceMatrix:
    """The pool's activations of a fixed candidate feature set, loaded from the store once.

    Re-selecting with any subset of the candidates, another aggregation, weighting or scale is then
    array arithmetic instead of a query over the activation table (the dashboard's slider path).
    :meth:`scales` and :meth:`score` return what :func:`feature_scales` and :func:`score_resonance` do.
    """

    pool: pd.DataFrame              # example_id (ascending), n_tokens, n_positions, task, source
    features: tuple[int, ...]
    sum_act: np.ndarray             # [n_pool, n_features]; NaN where the feature never fired
    max_act: np.ndarray

    def covers(self, features: Sequence[int]) -> bool:
        return set(int(f) for f in features) <= set(self.features)

    def _terms(self, features: Sequence[int], cfg: ResonanceConfig) -> np.ndarray:
        cols = [self.features.index(int(f)) for f in features]
        if cfg.aggregation == "max":
            a = self.max_act[:, cols]
        else:
            a = self.sum_act[:, cols]
            if cfg.aggregation == "mean":
                a = a / self.pool.n_tokens.to_numpy(dtype=float)[:, None]
        valid = (self.pool.n_tokens.to_numpy() > 0)[:, None]
        return np.where(valid, a, np.nan)

    def scales(self, features: Sequence[int], cfg: ResonanceConfig) -> pd.DataFrame:
        n = np.ones(len(features))
        if cfg.scale == "p99" and len(features):
            t = self._terms(features, cfg)
            for j in range(t.shape[1]):
                col = t[:, j][~np.isnan(t[:, j])]
                if col.size and (q := float(np.quantile(col, 0.99))) > 0:
                    n[j] = q
        return pd.DataFrame({"feature": [int(f) for f in features], "n": n})

    def score(self, features: Sequence[int], cfg: ResonanceConfig, effects: Mapping[int, float] | None = None,
              scales: pd.DataFrame | None = None) -> pd.DataFrame:
        scales = self.scales(features, cfg) if scales is None else scales
        fw = feature_weights(features, effects, cfg).merge(scales, on="feature")
        coef = (fw.w / fw.n).to_numpy(dtype=float)
        terms = np.nan_to_num(self._terms(list(fw.feature), cfg), nan=0.0)
        frs = terms @ coef if len(coef) else np.zeros(len(self.pool))
        order = np.argsort(-frs, kind="stable")  # ties keep the ascending id order of the pool
        return self.pool.iloc[order].assign(frs=frs[order])[
            ["example_id", "frs", "n_tokens", "n_positions", "task", "source"]].reset_index(drop=True)


def load_resonance_matrix(store: ActivationStore, run_id: str, task: str, pool_setting: str,
                          features: Sequence[int]) -> ResonanceMatrix:
    """One query for the pool and its activations of ``features`` (the candidates a user may pick from)."""
    feats = sorted({int(f) for f in features})
    pool_sql = (f"WITH pool AS ({POOL_SQL}) SELECT p.example_id, es.n_tokens, es.n_positions, e.task, e.source "
                "FROM pool p JOIN examples e ON e.id = p.example_id "
                "LEFT JOIN example_stats es ON es.run_id = ? AND es.example_id = p.example_id ORDER BY p.example_id")
    acts_sql = (f"WITH pool AS ({POOL_SQL}) SELECT fa.example_id, fa.feature, fa.sum_act, fa.max_act "
                "FROM feature_acts fa JOIN matrix_feats USING (feature) JOIN pool USING (example_id) "
                "WHERE fa.run_id = ?")
    params = [run_id, task, pool_setting == "mixed"]
    with store.connect() as con:
        pool = con.execute(pool_sql, [*params, run_id]).fetch_df()
        con.register("matrix_feats", pa.table({"feature": pa.array(feats, pa.int32())}))
        acts = con.execute(acts_sql, [*params, run_id]).fetchnumpy()
    rows = np.searchsorted(pool.example_id.to_numpy(dtype=str), np.asarray(acts["example_id"], dtype=str))
    cols = np.searchsorted(np.array(feats), np.asarray(acts["feature"]))
    mats = []
    for name in ("sum_act", "max_act"):
        m = np.full((len(pool), len(feats)), np.nan)
        m[rows, cols] = np.asarray(acts[name], dtype=float)
        mats.append(m)
    return ResonanceMatrix(pool=pool, features=tuple(feats), sum_act=mats[0], max_act=mats[1])
