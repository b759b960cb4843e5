"""Selection diff: any two selections of a task (stored ones or the live one the Selection page shows) side by side.

:func:`load_side` reads one side (a stored selection with its lineage, or :data:`LIVE`: the pool scored and cut now
with the task's validated features); :func:`compare_selections` lines two sides up: counts, Jaccard, every example
of either with its rank in each, its FRS and the FRS terms that put it there, composition by task and source, and
how many members each validated feature fires on. No UI code here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from igds.method.resonance import ResonanceConfig, ResonanceMatrix, load_resonance_matrix
from igds.method.selection import Overrides, SelectionConfig, load_selection
from igds.scope import PoolSpec
from igds.store import ActivationStore

LIVE = "live"
"""The key of the live selection (the Selection page's current settings) in place of a selection id."""


@dataclass(frozen=True)
class Side:
    """One selection of a comparison.

    Attributes:
        key: the selection id, or :data:`LIVE`.
        name: its name (``live`` for the live one).
        method: ``igds``, ``igds-q1``, …, or a baseline.
        pool_setting, pool_limit: the pool it was cut from.
        members: example_id, rank (1 = first), score (the selection's own ranking score), task, source.
        features: the features an IGDS selection scored with (empty for a baseline).
        resonance: an IGDS selection's scoring settings (None for a baseline).
        extract_run: the extraction run it was scored on (None when unknown).
        effect_id: the intervention run whose effects weighted it (None when unknown).
    """

    key: str
    name: str
    method: str
    pool_setting: str
    pool_limit: int
    members: pd.DataFrame
    features: list[int] = field(default_factory=list)
    resonance: ResonanceConfig | None = None
    extract_run: str | None = None
    effect_id: str | None = None

    @property
    def is_igds(self) -> bool:
        """Whether the selection ranks by FRS (so "why" is its FRS terms)."""
        return self.method.startswith("igds") and bool(self.features) and self.resonance is not None

    @property
    def ids(self) -> set[str]:
        """Member example ids."""
        return set(self.members.example_id)

    @property
    def label(self) -> str:
        """``name (method, n)`` for legends and headings."""
        return f"{self.name} ({self.method}, {len(self.members)})"


def selection_options(store: ActivationStore, task: str) -> pd.DataFrame:
    """The task's stored selections, newest first: selection_id, name, method, pool_setting, n_selected,
    created, label (``name · method · n · pool · id``)."""
    df = store.query_df("SELECT selection_id, name, method, pool_setting, n_selected, created FROM selections "
                        "WHERE task = ? ORDER BY created DESC, name", [task])
    df["label"] = [f"{r.name} · {r.method} · {r.n_selected} · {r.pool_setting} · {r.selection_id[:8]}"
                   for r in df.itertuples()]
    return df


def _members(df: pd.DataFrame) -> pd.DataFrame:
    """example_id, rank, score, task, source, one row per example (its first, best-ranked row)."""
    df = df.rename(columns={"id": "example_id"})
    cols = ["example_id", "rank", "score", "task", "source"]
    out = df.sort_values("rank", kind="stable").drop_duplicates("example_id")
    return out.reindex(columns=cols).reset_index(drop=True)


def load_side(store: ActivationStore, task: str, key: str, sel_cfg: SelectionConfig | None = None,
              res_cfg: ResonanceConfig | None = None, matrix: ResonanceMatrix | None = None) -> Side:
    """One side of a comparison: a stored selection (by id or name) of ``task``, or :data:`LIVE`.

    Args:
        key: a selection id or name, or :data:`LIVE`.
        sel_cfg, res_cfg: the live selection's settings (default: the Selection page's defaults).
        matrix: the live pool's resonance matrix, when the caller has it cached.

    Raises:
        ValueError: an unknown selection, one of another task, or a live selection without validated features.
    """
    if key == LIVE:
        from igds.workflow.explore import task_state
        from igds.workflow.stages import latest_effects, live_selection

        state = task_state(store, task)
        if not state.ready_for_selection:
            raise ValueError(f"no live selection of {task!r}: the task has no validated features yet")
        sel_cfg, res_cfg = sel_cfg or SelectionConfig(), res_cfg or ResonanceConfig()
        effects = latest_effects(store, task)
        sp, chosen = live_selection(store, state.extract_run, task, effects, sel_cfg, res_cfg, state.sae_key, matrix)
        return Side(key=LIVE, name=LIVE, method="igds", pool_setting=sel_cfg.pool_setting,
                    pool_limit=sel_cfg.pool_limit, members=_members(chosen), features=list(sp.features),
                    resonance=res_cfg, extract_run=state.extract_run, effect_id=effects.effect_id)
    from igds.method.selection import resolve_selection

    info, members = load_selection(store, resolve_selection(store, key))
    if info["task"] != task:
        raise ValueError(f"selection {key!r} belongs to task {info['task']!r}, not {task!r}")
    lin = info["lineage"]
    res = lin.get("resonance")
    return Side(key=info["selection_id"], name=info["name"], method=info["method"],
                pool_setting=info["pool_setting"] or "mixed",
                pool_limit=int((lin.get("selection") or {}).get("pool_limit") or 0), members=_members(members),
                features=[int(f) for f in lin.get("features") or []] if info["method"].startswith("igds") else [],
                resonance=ResonanceConfig.from_dict(res) if res else None, extract_run=lin.get("extract_run"),
                effect_id=lin.get("effect_id"))


# -- scoring: the FRS of any example of either side -----------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Scorer:
    """FRS of a pool under fixed features and settings, and each example's terms (the IGDS side's view)."""

    name: str
    matrix: ResonanceMatrix
    features: list[int]
    resonance: ResonanceConfig
    effects: dict[int, float]
    scales: pd.DataFrame
    frs: pd.Series  # by example_id

    def explain(self, example_id: str) -> pd.DataFrame:
        """One example's exact FRS terms (:meth:`igds.workflow.stages.ScoredPool.explain`)."""
        from igds.workflow.stages import ScoredPool

        sp = ScoredPool(scores=pd.DataFrame(), features=self.features, scales=self.scales, effects=self.effects,
                        overrides=Overrides(), matrix=self.matrix)
        return sp.explain(example_id, self.resonance)

    def top_terms(self, example_ids, n: int = 3) -> list[str]:
        """Each example's largest FRS terms by size, ``f12 +0.41 · f7 -0.20`` (empty outside the pool): the
        terms of :meth:`explain`, computed for many examples at once."""
        from igds.method.resonance import feature_weights

        fw = feature_weights(self.features, self.effects, self.resonance).merge(self.scales, on="feature")
        a = np.nan_to_num(self.matrix.terms(list(fw.feature), self.resonance), nan=0.0)
        terms = (a - fw.center.to_numpy(dtype=float)) * (fw.w / fw.n).to_numpy(dtype=float)
        row = pd.Index(self.matrix.pool.example_id)
        out = []
        for eid in example_ids:
            i = row.get_indexer([eid])[0]
            if i < 0:
                out.append("")
                continue
            order = np.argsort(-np.abs(terms[i]), kind="stable")[:n]
            out.append(" · ".join(f"f{int(fw.feature.iloc[j])} {terms[i, j]:+.2f}" for j in order if terms[i, j]))
        return out


def _effects_of(store: ActivationStore, effect_id: str | None) -> dict[int, float]:
    """The α = 1 amplification effect (clipped at 0, as IGDS weighs) of every feature of an intervention run."""
    if not effect_id:
        return {}
    from igds.method.intervene import primary_amplification

    s = store.effect_summary(effect_id)
    if s.empty:
        return {}
    amp = primary_amplification(s)
    return dict(zip(amp.feature.astype(int), amp.effect.clip(lower=0), strict=True))


def _scorer(store: ActivationStore, task: str, name: str, run_id: str, pool_spec: PoolSpec,
            features: list[int], res_cfg: ResonanceConfig, effect_id: str | None) -> Scorer:
    from igds.method.pool import pool_frame

    pool = pool_frame(store, task, pool_spec, run_id)
    matrix = load_resonance_matrix(store, run_id, pool, features)
    effects = _effects_of(store, effect_id) if res_cfg.weights == "effect" else {}
    scales = matrix.scales(features, res_cfg)
    scores = matrix.score(features, res_cfg, effects, scales)
    return Scorer(name=name, matrix=matrix, features=list(features), resonance=res_cfg, effects=effects,
                  scales=scales, frs=scores.set_index("example_id").frs)


def _side_scorer(store: ActivationStore, task: str, side: Side, run_id: str | None) -> Scorer | None:
    if not side.is_igds or not (side.extract_run or run_id):
        return None
    try:
        return _scorer(store, task, side.name, side.extract_run or run_id,
                       PoolSpec(side.pool_setting, side.pool_limit), side.features, side.resonance, side.effect_id)
    except ValueError:  # its pool is no longer extracted in full: no terms rather than no comparison
        return None


def _reference_scorer(store: ActivationStore, task: str, a: Side, b: Side, run_id: str | None) -> Scorer | None:
    """Neither side is IGDS: the task's validated features now, default settings, over both sides' pools."""
    from igds.workflow.stages import latest_effects

    if run_id is None:
        return None
    try:
        effects = latest_effects(store, task)
    except ValueError:
        return None
    if not effects.kept:
        return None
    setting = "mixed" if "mixed" in (a.pool_setting, b.pool_setting) else "task-only"
    limit = 0 if 0 in (a.pool_limit, b.pool_limit) else max(a.pool_limit, b.pool_limit)
    try:
        return _scorer(store, task, "validated features now", run_id, PoolSpec(setting, limit), list(effects.kept),
                       ResonanceConfig(), effects.effect_id)
    except ValueError:
        return None


# -- the diff ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SelectionDiff:
    """Two selections side by side (A → B: *added* are in B only, *removed* in A only).

    Attributes:
        a, b: the sides.
        examples: every example of either: example_id, task, source, n_tokens (content length), change
            (added | removed | shared), rank_a, rank_b (NaN where not a member), score_a, score_b (each
            selection's own ranking score), frs_a, frs_b (the example's FRS under each side's scoring, NaN outside
            that side's pool), frs (``frs_b`` for added examples, ``frs_a`` otherwise), why (the largest FRS terms
            behind ``frs``; empty for shared examples).
        frs_source: per side (``A``, ``B``) the scoring its FRS comes from: its own when it is IGDS, else the
            other side's, else the task's validated features now with default settings; a side without one has
            no FRS (no validated features).
        composition: selection (A/B label), task, source, n, share (of that selection).
        coverage: feature, fstar (a validated feature now), share_a, share_b, share_pool (of members the feature
            fires on), difference (share_b − share_a), promotes, label.
    """

    a: Side
    b: Side
    examples: pd.DataFrame
    frs_source: dict[str, str]
    composition: pd.DataFrame
    coverage: pd.DataFrame

    @property
    def shared(self) -> int:
        """Examples in both."""
        return len(self.a.ids & self.b.ids)

    @property
    def jaccard(self) -> float:
        """|A ∩ B| / |A ∪ B|."""
        union = self.a.ids | self.b.ids
        return self.shared / len(union) if union else float("nan")

    @property
    def added(self) -> pd.DataFrame:
        """Examples in B only, by their rank in B."""
        return self.examples[self.examples.change == "added"].sort_values("rank_b").reset_index(drop=True)

    @property
    def removed(self) -> pd.DataFrame:
        """Examples in A only, by their rank in A."""
        return self.examples[self.examples.change == "removed"].sort_values("rank_a").reset_index(drop=True)

    def distributions(self) -> pd.DataFrame:
        """One row per (selection, member): selection (A/B label), example_id, frs (under that side's scoring),
        n_tokens — for histograms."""
        rows = []
        for tag, side in (("A", self.a), ("B", self.b)):
            m = self.examples[self.examples.example_id.isin(side.ids)]
            col = f"frs_{tag.lower()}"
            rows.append(m[["example_id", col, "n_tokens"]].rename(columns={col: "frs"})
                        .assign(selection=f"{tag}: {side.name}"))
        return pd.concat(rows, ignore_index=True)


def compare_selections(store: ActivationStore, task: str, a: Side, b: Side, run_id: str | None = None,
                       why_terms: int = 3) -> SelectionDiff:
    """Line two selections of ``task`` up (see :class:`SelectionDiff`).

    Args:
        run_id: the extraction run content lengths and feature coverage are read from (default: the task's,
            as the pages show it, else a side's).
        why_terms: FRS terms listed per changed example.
    """
    from igds.workflow.explore import task_state

    state = task_state(store, task)
    run_id = run_id or state.extract_run or a.extract_run or b.extract_run
    ids = sorted(a.ids | b.ids)
    info = pd.concat([b.members, a.members]).drop_duplicates("example_id").set_index("example_id")
    ex = pd.DataFrame({"example_id": ids})
    ex["task"] = ex.example_id.map(info.task)
    ex["source"] = ex.example_id.map(info.source)
    if run_id:
        counts = store.token_counts(run_id, ids).set_index("example_id")
        ex["n_tokens"] = ex.example_id.map(counts.n_tokens).astype(float)
    else:
        ex["n_tokens"] = np.nan
    in_a, in_b = ex.example_id.isin(a.ids), ex.example_id.isin(b.ids)
    ex["change"] = np.where(in_a & in_b, "shared", np.where(in_b, "added", "removed"))
    for tag, side in (("a", a), ("b", b)):
        m = side.members.set_index("example_id")
        ex[f"rank_{tag}"] = ex.example_id.map(m["rank"]).astype(float)
        ex[f"score_{tag}"] = ex.example_id.map(m["score"]).astype(float)
    own = {"a": _side_scorer(store, task, a, run_id), "b": _side_scorer(store, task, b, run_id)}
    ref = None if own["a"] or own["b"] else _reference_scorer(store, task, a, b, run_id)
    # each side's FRS: its own scoring when it is IGDS, else the other side's, else the validated features now
    scorers = {"a": own["a"] or own["b"] or ref, "b": own["b"] or own["a"] or ref}
    sources = {}
    for tag, sc in scorers.items():
        ex[f"frs_{tag}"] = ex.example_id.map(sc.frs).astype(float) if sc is not None else np.nan
        if sc is not None:
            whose = next((t.upper() for t, o in own.items() if o is sc), None)
            sources[tag.upper()] = (f"{whose}'s scoring ({sc.name})" if whose
                                    else "the task's validated features now, default settings")
    # an example's FRS and why: from the scoring of the side that has it (B's for added, A's otherwise)
    ex["frs"] = np.where(ex.change == "added", ex.frs_b, ex.frs_a)
    ex["why"] = ""
    for change, tag in (("added", "b"), ("removed", "a")):
        rows = ex.change == change
        if scorers[tag] is not None and rows.any():
            ex.loc[rows, "why"] = scorers[tag].top_terms(ex.example_id[rows], why_terms)
    comp = []
    for tag, side in (("A", a), ("B", b)):
        g = side.members.groupby(["task", "source"], dropna=False).size().reset_index(name="n")
        comp.append(g.assign(selection=f"{tag}: {side.name}", share=g.n / max(len(side.members), 1)))
    composition = pd.concat(comp, ignore_index=True)[["selection", "task", "source", "n", "share"]]
    coverage = _coverage(store, task, a, b, run_id, state.sae_key)
    return SelectionDiff(a=a, b=b, examples=ex, frs_source=sources, composition=composition, coverage=coverage)


def _coverage(store: ActivationStore, task: str, a: Side, b: Side, run_id: str | None,
              sae_key: str | None) -> pd.DataFrame:
    """Share of each selection's members each validated feature fires on (and of both pools')."""
    from igds.method.pool import pool_frame
    from igds.workflow.stages import latest_effects

    cols = ["feature", "fstar", "share_a", "share_b", "share_pool", "difference", "promotes", "label"]
    try:
        fstar = list(latest_effects(store, task).kept)
    except ValueError:
        fstar = []
    feats = list(dict.fromkeys([*fstar, *a.features, *b.features]))
    if not feats or not run_id:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame({"feature": feats, "fstar": [f in set(fstar) for f in feats]})

    def share(ids) -> pd.Series:
        c = store.fire_counts(run_id, list(ids), feats).set_index("feature")
        return out.feature.map(c.n_fired / c.n_covered.clip(lower=1))

    out["share_a"], out["share_b"] = share(a.ids), share(b.ids)
    pool_ids: set[str] = set()
    for setting in {a.pool_setting, b.pool_setting}:
        pool_ids |= set(pool_frame(store, task, PoolSpec(setting)).example_id)
    out["share_pool"] = share(pool_ids)
    out["difference"] = out.share_b - out.share_a
    lens = store.logit_lens_table(sae_key, feats) if sae_key else pd.DataFrame(columns=["feature", "top_tokens"])
    promotes = dict(zip(lens.feature.astype(int), lens.top_tokens, strict=True))
    out["promotes"] = out.feature.map(lambda f: " ".join(json.loads(promotes[f])[:5]) if f in promotes else "")
    labels = store.feature_labels(sae_key, feats) if sae_key else pd.DataFrame(columns=["feature", "label"])
    out["label"] = out.feature.map(dict(zip(labels.feature, labels.label, strict=True))).fillna("")
    return out[cols]
