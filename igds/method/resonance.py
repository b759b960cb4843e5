"""Stage 2a — the feature-resonant score (FRS) of a pool, from one in-memory matrix.

``FRS(s) = Σ_{j∈F*} w_j · (a_j(s) − c_j) / n_j`` with ``a_j`` the token aggregation over the
example's kept tokens (mean = sum/n_tokens, sum, or max), ``n_j`` a per-feature scale and ``c_j`` a
per-feature centre over the pool being selected from (``c_j = 0`` except for the z-score) and ``w_j``
a weight. The direction says which end of the ranking is selected: ``resonant`` (top FRS, the paper)
or ``hard`` (bottom FRS). :func:`load_resonance_matrix` reads the pool's activations of a candidate
feature set once; scoring, re-scoring for another feature subset, aggregation, scale, weighting or
direction (the dashboard's controls), saving a selection and "why selected" are then all array
arithmetic over that one matrix. :func:`length_confound` says how much a score is a length proxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from igds.config import ConfigBase
from igds.ranking import rank_order

AGGREGATIONS = ("mean", "sum", "max")
SCALES = ("p99", "zscore", "none")
WEIGHTS = ("uniform", "effect")
DIRECTIONS = ("resonant", "hard")


@dataclass(frozen=True, kw_only=True)
class ResonanceConfig(ConfigBase):
    """How the feature-resonant score combines validated features.

    Args:
        aggregation: token aggregation ``a_j(s)`` over the example's kept tokens (the extraction's
            scope: by default the example's own prompt content and response): ``mean`` (sum / kept
            tokens), ``sum`` (paper literal; favours long examples) or ``max``.
        scale: ``p99`` divides each feature by the 99th percentile of ``a_j`` over pool examples where
            it fires (features on one scale); ``zscore`` standardises each feature over the whole pool,
            ``(a_j − mean_j) / std_j`` with "did not fire" counted as 0 (population std; a feature that
            is constant over the pool contributes 0); ``none`` keeps raw activations (paper literal).
        weights: ``uniform`` (w=1) or ``effect`` (w = the feature's amplification effect).
        direction: ``resonant`` selects the top of the FRS ranking (the paper); ``hard`` the bottom
            (low-activation, "mechanistically hard" examples). The score itself is the same.
    """

    aggregation: str = field(default="mean", metadata={"help": "token aggregation: mean | sum | max"})
    scale: str = field(default="p99", metadata={"help": "per-feature scale: p99 | zscore | none"})
    weights: str = field(default="uniform", metadata={"help": "feature weights: uniform | effect"})
    direction: str = field(default="resonant", metadata={
        "help": "which end of the FRS ranking to select: resonant (top, the paper) | hard (bottom)"})

    def __post_init__(self):
        for name, allowed in (("aggregation", AGGREGATIONS), ("scale", SCALES), ("weights", WEIGHTS),
                              ("direction", DIRECTIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {' | '.join(allowed)}, not {getattr(self, name)!r}")

    @property
    def higher_first(self) -> bool:
        """Whether the ranking puts high FRS first (``resonant``) or low FRS first (``hard``)."""
        return self.direction == "resonant"


PAPER_RESONANCE = ResonanceConfig(aggregation="sum", scale="none", weights="uniform", direction="resonant")


def feature_weights(features: Sequence[int], effects: Mapping[int, float] | None, cfg: ResonanceConfig) -> pd.DataFrame:
    """``w_j`` per validated feature."""
    w = [float(effects[f]) if cfg.weights == "effect" and effects else 1.0 for f in features]
    return pd.DataFrame({"feature": [int(f) for f in features], "w": w})


@dataclass(frozen=True)
class ResonanceMatrix:
    """A pool's activations of a fixed candidate feature set.

    Args:
        pool: the pool in its canonical order (see :func:`igds.method.pool.pool_frame`): example_id,
            shown_key (the canonical key that breaks ranking ties), n_tokens (kept tokens of the
            extraction's scope), n_positions, task, source.
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
        """``n_j`` and ``c_j`` over this matrix's pool (the pool being selected from).

        - ``p99``: ``n_j`` = the 99th percentile of ``a_j`` over the examples where the feature fires
          (1.0 when it never fires), ``c_j = 0``;
        - ``zscore``: ``c_j`` = the mean and ``n_j`` the population standard deviation of ``a_j`` over
          every pool example, "did not fire" counted as 0 (a feature constant over the pool gets
          ``n_j = 1`` and ``c_j`` = that constant, so it contributes exactly 0);
        - ``none``: ``n_j = 1``, ``c_j = 0``.

        Returns:
            feature, n, center.
        """
        n, center = np.ones(len(features)), np.zeros(len(features))
        if cfg.scale != "none" and len(features) and len(self.pool):
            t = self.terms(features, cfg)
            for j in range(t.shape[1]):
                if cfg.scale == "p99":
                    col = t[:, j][~np.isnan(t[:, j])]
                    if col.size and (q := float(np.quantile(col, 0.99))) > 0:
                        n[j] = q
                    continue
                col = np.nan_to_num(t[:, j], nan=0.0)
                if np.ptp(col) == 0:
                    center[j] = col[0]
                else:
                    center[j], n[j] = float(col.mean()), float(col.std())
        return pd.DataFrame({"feature": [int(f) for f in features], "n": n, "center": center})

    def _coefficients(self, features: Sequence[int], cfg: ResonanceConfig, effects: Mapping[int, float] | None,
                      scales: pd.DataFrame | None) -> pd.DataFrame:
        scales = self.scales(features, cfg) if scales is None else scales
        if "center" not in scales:
            scales = scales.assign(center=0.0)
        fw = feature_weights(features, effects, cfg).merge(scales[["feature", "n", "center"]], on="feature")
        return fw.assign(coef=fw.w / fw.n)

    def score(self, features: Sequence[int], cfg: ResonanceConfig, effects: Mapping[int, float] | None = None,
              scales: pd.DataFrame | None = None) -> pd.DataFrame:
        """FRS of every pool example, ranked in the config's direction.

        A feature that did not fire on an example counts ``a_j = 0`` (so an example where no feature
        fires scores 0, except under ``zscore`` where it scores ``−Σ w_j c_j / n_j``).

        Args:
            scales: ``n_j`` (and ``c_j``) from :meth:`scales`; computed over this pool when not given.

        Returns:
            example_id, frs, n_tokens, n_positions, task, source — by frs desc (``resonant``) or asc
            (``hard``) at :data:`~igds.ranking.SIGNIFICANT_DIGITS` significant digits, ties by the pool's
            canonical key ``shown_key`` (:func:`~igds.ranking.rank_order`): the same order on every machine.
        """
        fw = self._coefficients(features, cfg, effects, scales)
        frs = np.zeros(len(self.pool))
        if len(fw):
            terms = np.nan_to_num(self.terms(list(fw.feature), cfg), nan=0.0) - fw.center.to_numpy(dtype=float)
            frs = terms @ fw.coef.to_numpy(dtype=float)
        order = rank_order(frs, self.pool.shown_key, descending=cfg.higher_first)
        return self.pool.iloc[order].assign(frs=frs[order])[
            ["example_id", "frs", "n_tokens", "n_positions", "task", "source"]].reset_index(drop=True)

    def explain(self, example_id: str, features: Sequence[int], cfg: ResonanceConfig,
                effects: Mapping[int, float] | None = None, scales: pd.DataFrame | None = None) -> pd.DataFrame:
        """Exact decomposition of one example's FRS into per-feature terms ``w_j · (a_j(s) − c_j) / n_j``
        ("why selected"): the ``term`` column sums to the example's FRS from :meth:`score` (in either
        direction: the direction orders the ranking, not the score).

        Returns:
            feature, w, n, center, coef, a, term — sorted by term desc.
        """
        row = np.flatnonzero(self.pool.example_id.to_numpy() == example_id)
        if not row.size:
            raise ValueError(f"example {example_id!r} is not in this pool")
        fw = self._coefficients(features, cfg, effects, scales)
        a = np.nan_to_num(self.terms(list(fw.feature), cfg)[row[0]], nan=0.0)
        out = fw.assign(a=a, term=fw.coef.to_numpy(dtype=float) * (a - fw.center.to_numpy(dtype=float)))
        out = out[["feature", "w", "n", "center", "coef", "a", "term"]]
        return out.sort_values("term", ascending=False, kind="stable").reset_index(drop=True)


def spearman(x, y) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than two pairs or a constant side."""
    x, y = pd.Series(np.asarray(x, dtype=float)), pd.Series(np.asarray(y, dtype=float))
    if len(x) < 2 or x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(x.rank().to_numpy(), y.rank().to_numpy())[0, 1])


@dataclass(frozen=True)
class LengthConfound:
    """How much a score follows example length, over a pool and its selection.

    Length is ``n_tokens``: the tokens the extraction kept (by default the example's own prompt
    content and response; template, system prompt and instruction never count).

    Attributes:
        spearman: Spearman(FRS, content length) over the pool (NaN when undefined).
        spearman_selected: the same within the selection.
        n_pool, n_selected: sizes.
        mean_tokens_pool, mean_tokens_selected: mean content length (NaN for an empty set).
    """

    spearman: float
    spearman_selected: float
    n_pool: int
    n_selected: int
    mean_tokens_pool: float
    mean_tokens_selected: float

    @property
    def length_ratio(self) -> float:
        """Mean content length of the selection over that of the pool (1: no length bias)."""
        if not self.mean_tokens_pool or np.isnan(self.mean_tokens_selected):
            return float("nan")
        return self.mean_tokens_selected / self.mean_tokens_pool


def length_confound(scores: pd.DataFrame, selected: Iterable[str] | None = None) -> LengthConfound:
    """Spearman(FRS, content length) of a scored pool, and the selection's content length against the pool's.

    Args:
        scores: :meth:`ResonanceMatrix.score` output (example_id, frs, n_tokens); any ``score`` column
            name of a ranking works too.
        selected: example ids of the selection (pinned ones included); None: the selection statistics
            are NaN.
    """
    col = "frs" if "frs" in scores else "score"
    tokens = scores.n_tokens.astype(float)
    sel = scores[scores.example_id.isin(set(selected))] if selected is not None else scores.iloc[:0]
    return LengthConfound(
        spearman=spearman(scores[col], tokens), spearman_selected=spearman(sel[col], sel.n_tokens),
        n_pool=len(scores), n_selected=len(sel),
        mean_tokens_pool=float(tokens.mean()) if len(scores) else float("nan"),
        mean_tokens_selected=float(sel.n_tokens.astype(float).mean()) if len(sel) else float("nan"))


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
