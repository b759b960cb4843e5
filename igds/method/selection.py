"""Stage 2b — selection: top share, threshold or token budget over a ranking, with human overrides,
stored as immutable, content-addressed objects with their full lineage."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from igds.config import ConfigBase
from igds.ranking import rank_key
from igds.scope import DEFAULT_POOL, PoolSpec
from igds.store import ActivationStore


@dataclass(frozen=True, kw_only=True)
class SelectionConfig(ConfigBase):
    """How many examples to keep from a ranking.

    Args:
        method: ``igds``, a baseline (random, loss, ifd, zip, longest, shortest, full) or an ablation arm
            (:mod:`igds.method.arms`: recall-only, filter-only, random-features, wrong-task).
        ratio: keep the top ``⌈ratio · |pool|⌉`` (used when no threshold or budget is set).
        threshold: keep examples scoring at least this (IGDS: FRS ≥ τ; FRS ≤ τ in the ``hard`` direction).
        token_budget: keep top examples while their tokens fit in this budget.
        pool_setting: ``mixed`` (task train + general) or ``task-only``.
        seed: seed of any randomness (random baseline, tie-breaking).
        pool_limit: use a fixed subsample of the pool: this many task examples (and as many general
            ones in the mixed setting), chosen by a hash of the example id; 0 keeps the whole pool.
    """

    method: str = field(default="igds", metadata={
        "help": "igds | a baseline: random | loss | ifd | zip | longest | shortest | full | an ablation arm: "
                "recall-only | filter-only | random-features | wrong-task"})
    ratio: float = field(default=0.5, metadata={"help": "share of the pool to keep"})
    threshold: float | None = field(default=None, metadata={
        "help": "keep examples with score >= threshold (IGDS hard direction: <=)"})
    token_budget: int | None = field(default=None, metadata={"help": "keep top examples within this many tokens"})
    pool_setting: str = field(default=DEFAULT_POOL.setting, metadata={"help": "mixed | task-only"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    pool_limit: int = field(default=DEFAULT_POOL.limit,
                            metadata={"help": "subsample the pool to N task (+N general) examples; 0: all"})

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise ValueError("ratio must be in (0, 1]")
        PoolSpec(self.pool_setting, self.pool_limit)  # validates the setting and the limit

    @property
    def pool(self) -> PoolSpec:
        """The pool this selection ranks."""
        return PoolSpec(self.pool_setting, self.pool_limit)


@dataclass(frozen=True)
class Overrides:
    """Human vetting decisions for one task."""

    pinned_examples: frozenset[str] = frozenset()
    rejected_examples: frozenset[str] = frozenset()
    vetoed_features: frozenset[int] = frozenset()
    pinned_features: frozenset[int] = frozenset()

    def to_dict(self, examples_only: bool = False) -> dict:
        """Sorted lists, for lineage; ``examples_only`` leaves out the feature decisions (a baseline's
        selection does not depend on them)."""
        return {k: sorted(v) for k, v in self.__dict__.items() if not examples_only or k.endswith("_examples")}

    def apply_to_features(self, features: Sequence[int]) -> list[int]:
        """Validated features minus vetoes plus pins, order kept (pins appended)."""
        out = [f for f in features if f not in self.vetoed_features]
        return out + sorted(f for f in self.pinned_features if f not in out and f not in self.vetoed_features)


def select_from_ranking(ranked: pd.DataFrame, cfg: SelectionConfig, overrides: Overrides | None = None,
                        n_pool: int | None = None, higher_first: bool = True) -> pd.DataFrame:
    """Apply ratio / threshold / budget and the example overrides to a ranking.

    Args:
        ranked: example_id, score, optional n_tokens; already sorted best first (by
            :func:`igds.ranking.rank_order`); a threshold compares the score at that order's resolution.
        n_pool: pool size for the ratio (defaults to ``len(ranked)``).
        higher_first: the ranking's direction: True when a higher score is better (``score >= threshold``
            is kept), False when a lower one is (IGDS's ``hard`` direction: ``score <= threshold`` is kept).
            Ratio and budget take the ranking's head either way.

    Returns:
        the selected rows in rank order with a 1-based ``rank`` column. Pinned examples are always in
        (ahead of the rest), rejected ones never; the ratio counts pinned examples.
    """
    ov = overrides or Overrides()
    ranked = ranked[~ranked.example_id.isin(ov.rejected_examples)]
    pinned = ranked[ranked.example_id.isin(ov.pinned_examples)]
    rest = ranked[~ranked.example_id.isin(ov.pinned_examples)]
    if cfg.threshold is not None:
        key = rank_key(rest.score)  # the resolution the ranking was sorted at: the cut agrees with the order
        chosen = rest[key >= cfg.threshold] if higher_first else rest[key <= cfg.threshold]
    elif cfg.token_budget is not None:
        used = pinned.get("n_tokens", pd.Series(dtype=float)).fillna(0).sum()
        tokens = rest.get("n_tokens", pd.Series(1, index=rest.index)).fillna(0)
        chosen = rest[(used + tokens.cumsum()) <= cfg.token_budget]
    else:
        n = math.ceil(cfg.ratio * (n_pool if n_pool is not None else len(ranked) + len(ov.rejected_examples)))
        chosen = rest.head(max(0, n - len(pinned)))
    out = pd.concat([pinned, chosen]).reset_index(drop=True)
    out["rank"] = range(1, len(out) + 1)
    return out


def load_overrides(store: ActivationStore, task: str, sae_key: str | None = None) -> Overrides:
    """Vetting decisions stored for a task (feature decisions are per SAE)."""
    ex = store.query_df("SELECT example_id, action FROM example_overrides WHERE task = ?", [task])
    fe = store.query_df("SELECT feature, action FROM feature_overrides WHERE task = ? AND (? IS NULL OR sae_key = ?)",
                        [task, sae_key, sae_key])
    return Overrides(
        pinned_examples=frozenset(ex.example_id[ex.action == "pin"]),
        rejected_examples=frozenset(ex.example_id[ex.action == "reject"]),
        vetoed_features=frozenset(int(f) for f in fe.feature[fe.action == "veto"]),
        pinned_features=frozenset(int(f) for f in fe.feature[fe.action == "pin"]),
    )


def set_example_override(store: ActivationStore, task: str, example_ids: Sequence[str], action: str | None) -> None:
    """Pin, reject or clear (``None``) examples, in bulk."""
    if action not in (None, "pin", "reject"):
        raise ValueError("action must be 'pin', 'reject' or None")
    with store.transaction() as con:
        for eid in example_ids:
            con.execute("DELETE FROM example_overrides WHERE task = ? AND example_id = ?", [task, eid])
            if action:
                con.execute("INSERT INTO example_overrides (task, example_id, action) VALUES (?, ?, ?)",
                            [task, eid, action])


def set_feature_override(store: ActivationStore, task: str, sae_key: str, feature: int, action: str | None,
                         note: str = "") -> None:
    """Veto, pin or clear (``None``) one feature for a task."""
    if action not in (None, "veto", "pin"):
        raise ValueError("action must be 'veto', 'pin' or None")
    with store.transaction() as con:
        con.execute("DELETE FROM feature_overrides WHERE task = ? AND sae_key = ? AND feature = ?",
                    [task, sae_key, int(feature)])
        if action:
            con.execute("INSERT INTO feature_overrides (task, sae_key, feature, action, note) VALUES (?, ?, ?, ?, ?)",
                        [task, sae_key, int(feature), action, note])


def selection_hash(example_ids: Sequence[str], lineage: dict) -> str:
    """Content hash of a selection: its members (in rank order) plus its lineage."""
    h = hashlib.sha256(json.dumps(lineage, sort_keys=True, default=str).encode())
    h.update("\n".join(example_ids).encode())
    return h.hexdigest()[:16]


def save_selection(store: ActivationStore, name: str, task: str, method: str, pool_setting: str, n_pool: int,
                   selected: pd.DataFrame, lineage: dict) -> str:
    """Store a selection (idempotent: same members + lineage → same id); returns its id."""
    ids = list(selected.example_id)
    sid = selection_hash(ids, lineage)
    members = pa.table({"selection_id": [sid] * len(ids), "example_id": ids,
                        "rank": pa.array(list(selected["rank"]), pa.int32()),
                        "score": pa.array([float(s) for s in selected.get("score", [float("nan")] * len(ids))])})
    store.insert_selection(sid, name=name, task=task, method=method, pool_setting=pool_setting, n_pool=n_pool,
                           lineage_json=json.dumps(lineage, sort_keys=True), members=members)
    return sid


def resolve_selection(store: ActivationStore, id_or_name: str) -> str:
    """Selection id from an id or a name (the newest of that name)."""
    sid = store.scalar("SELECT selection_id FROM selections WHERE selection_id = ? OR name = ? "
                       "ORDER BY created DESC LIMIT 1", [id_or_name, id_or_name])
    if sid is None:
        raise ValueError(f"no selection with id or name {id_or_name!r} (see 'igds selections')")
    return sid


def load_selection(store: ActivationStore, selection_id: str) -> tuple[dict, pd.DataFrame]:
    """A stored selection's metadata (lineage parsed) and its members joined with their examples."""
    meta = store.query_df("SELECT * FROM selections WHERE selection_id = ?", [selection_id])
    if meta.empty:
        raise ValueError(f"no selection {selection_id!r}")
    info = meta.iloc[0].to_dict()
    info["lineage"] = json.loads(info["lineage"])
    return info, store.selection_members(selection_id)


def composition(members: pd.DataFrame) -> dict:
    """Counts by task and by source of a selection's members."""
    return {"by_task": members.task.value_counts().to_dict(), "by_source": members.source.value_counts().to_dict()}
