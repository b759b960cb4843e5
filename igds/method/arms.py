"""The paper's ablation arms as feature sets: which SAE features an arm's feature-resonant score (FRS) sums over.

The paper claims both IGDS stages matter (recall *and* the causal filter); the arms take one stage away or
replace the features with ones that should not help. The concrete operationalisation is ours:

- ``recall-only``: every recall candidate ``C``, no causal filter.
- ``filter-only``: the causal filter run on ``|C|`` seeded random non-candidate features, each drawn among the
  features nearest in token density to one candidate (:func:`igds.method.intervene.density_matched_features`);
  the filter's run never sees ``C`` (neither as candidates nor as null features), and FRS sums over what passes.
- ``random-features``: ``|F*|`` seeded random non-candidate features, each density-matched to one ``F*`` feature;
  no filter.
- ``wrong-task``: another task's ``F*`` scoring this task's pool.

Everything here is pure (feature ids, densities and seeds in, feature sets out); :mod:`igds.workflow.arms` reads
the store, runs the filter and saves the selections.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from igds.method.intervene import density_matched_features

RECALL_ONLY, FILTER_ONLY, RANDOM_FEATURES, WRONG_TASK = "recall-only", "filter-only", "random-features", "wrong-task"
ARMS = (RECALL_ONLY, FILTER_ONLY, RANDOM_FEATURES, WRONG_TASK)
SEEDED_ARMS = (FILTER_ONLY, RANDOM_FEATURES)  # their features are a seeded draw
FILTER_STAGE = "intervene-arm"  # the run stage of a filter-only intervention run (never read back as a task's F*)


class ArmError(ValueError):
    """An ablation arm cannot build its feature set (nothing to score with, or too few features to draw)."""


def require_arm(arm: str) -> str:
    """``arm`` when it names an ablation arm.

    Raises:
        ArmError: listing the arms.
    """
    if arm not in ARMS:
        raise ArmError(f"unknown ablation arm {arm!r}; known: {', '.join(ARMS)}")
    return arm


def recall_only_features(candidates: Sequence[int]) -> list[int]:
    """``recall-only``: every recall candidate, in recall order.

    Raises:
        ArmError: when recall found no candidate.
    """
    feats = list(dict.fromkeys(int(f) for f in candidates))
    if not feats:
        raise ArmError("recall-only has no features to score with: the recall run found no candidates")
    return feats


def _draw(arm: str, targets: Sequence[int], density: np.ndarray, exclude: Sequence[int], seed: int) -> list[int]:
    """One density-matched non-excluded feature per target; refuses a short draw (an unequal comparison)."""
    drawn = density_matched_features(targets, density, exclude=exclude, seed=seed)
    if len(drawn) < len(targets):
        raise ArmError(f"{arm} needs {len(targets)} density-matched non-candidate features but only {len(drawn)} "
                       "features outside the candidates fired on probe")
    return drawn


def random_features(fstar: Sequence[int], candidates: Sequence[int], density: np.ndarray, seed: int) -> list[int]:
    """``random-features``: ``|F*|`` random features, the ``i``-th drawn among the features nearest in token density
    to ``F*[i]`` (:func:`igds.method.intervene.density_matched_features`), none of them a recall candidate.

    Args:
        density: token density (``tok_freq_task``) of every SAE feature ``[d_sae]`` (0 or NaN: never fired).
        seed: seed of the draws (the same seed draws the same features).

    Raises:
        ArmError: when ``F*`` is empty, or too few non-candidate features fired to draw ``|F*|`` of them.
    """
    targets = [int(f) for f in fstar]
    if not targets:
        raise ArmError("random-features draws |F*| features, but the task's F* is empty (the filter kept none)")
    return _draw(RANDOM_FEATURES, targets, density, exclude=candidates, seed=seed)


@dataclass(frozen=True)
class FilterArm:
    """What the ``filter-only`` arm's intervention run measures instead of the recall candidates.

    Attributes:
        features: the random density-matched non-candidates, one per recall candidate (the run's candidates).
        hidden: the recall candidates; the run never sees them: :meth:`null_density` removes them from its null.
        seed: seed of the draw.
    """

    features: tuple[int, ...]
    hidden: tuple[int, ...]
    seed: int

    @property
    def key(self) -> str:
        """What the run id adds to the recall run's key: the arm, the seed and a digest of the features (another
        draw is another run; the recall run's own id never ends this way)."""
        digest = hashlib.sha256(",".join(map(str, self.features)).encode()).hexdigest()[:8]
        return f"{FILTER_ONLY}-s{self.seed}-{digest}"

    def null_density(self, density: np.ndarray | None) -> np.ndarray | None:
        """``density`` with the recall candidates at 0: the run's density-matched null draws only features that
        fired on probe (density > 0), so it never draws a recalled feature and stays a null of non-candidates,
        as the recall run's null is."""
        if density is None:
            return None
        out = np.array(density, dtype=float, copy=True)
        out[[int(f) for f in self.hidden]] = 0.0
        return out

    def to_dict(self) -> dict:
        """For the run's config and the selection's lineage (the hidden set only as a count)."""
        return {"arm": FILTER_ONLY, "seed": int(self.seed), "candidates": [int(f) for f in self.features],
                "n_recalled": len(self.hidden)}


def filter_only_arm(candidates: Sequence[int], density: np.ndarray, seed: int) -> FilterArm:
    """``filter-only``'s features for the filter: ``|C|`` random non-candidates, each density-matched to one
    candidate.

    Raises:
        ArmError: when recall found no candidate, or too few non-candidates fired to draw ``|C|``.
    """
    cands = recall_only_features(candidates)  # refuses an empty C
    return FilterArm(tuple(_draw(FILTER_ONLY, cands, density, exclude=cands, seed=seed)), tuple(cands), int(seed))


def filter_only_features(arm: FilterArm, kept: Sequence[int], effect_id: str = "", why: str = "") -> list[int]:
    """``filter-only``: the random features the filter kept (its ``F*``).

    Args:
        kept: the arm run's kept features.
        effect_id, why: the run and why it kept none (:meth:`igds.method.intervene.EffectResult.why_none_kept`),
            for the message.

    Raises:
        ArmError: when the filter kept none of them (no silent empty selection).
    """
    feats = [int(f) for f in kept]
    tested = set(arm.features)
    if not set(feats) <= tested:
        raise ArmError(f"filter-only: kept features {sorted(set(feats) - tested)} were not among the random ones")
    if not feats:
        run = f" (intervention run {effect_id})" if effect_id else ""
        raise ArmError(f"filter-only: the causal filter kept none of the {len(arm.features)} random density-matched "
                       f"features{run}, so there is nothing to score with" + (f": {why}" if why else ""))
    return feats


def default_source_task(task: str, shipped: Sequence[str]) -> str:
    """``wrong-task``'s default source: the shipped task after ``task`` in ``shipped`` order (wrapping); the first
    shipped task for a task that is not shipped."""
    shipped = list(shipped)
    if task not in shipped:
        return shipped[0]
    return shipped[(shipped.index(task) + 1) % len(shipped)]


def wrong_task_features(task: str, source_task: str, source_fstar: Sequence[int]) -> list[int]:
    """``wrong-task``: ``source_task``'s ``F*``, to score ``task``'s pool.

    Raises:
        ArmError: when the source is the task itself, or its ``F*`` is empty (naming the source task).
    """
    if source_task == task:
        raise ArmError(f"wrong-task needs another task's F*, not {task!r}'s own; pick --source-task")
    feats = list(dict.fromkeys(int(f) for f in source_fstar))
    if not feats:
        raise ArmError(f"wrong-task: the source task {source_task!r} has an empty F* (its filter kept no feature); "
                       "pick another --source-task or rerun that task's interventions")
    return feats


def arm_effects(arm: str, features: Sequence[int], effects: Mapping[int, float] | None,
                weights: str) -> dict[int, float] | None:
    """The FRS weights' effects of an arm's features (``weights == "effect"``), else None (uniform weights).

    Args:
        effects: the measured α = 1 effects (clipped at 0, as IGDS's) the arm's features come with: the recall
            run's (``recall-only``), the arm's own run (``filter-only``), the source task's (``wrong-task``);
            None for ``random-features``, which measures nothing.

    Raises:
        ArmError: under effect weights, when a feature has no measured effect.
    """
    if weights != "effect":
        return None
    missing = [int(f) for f in features if effects is None or int(f) not in effects]
    if missing:
        raise ArmError(f"{arm} has no measured effect for features {missing[:10]}"
                       f"{' …' if len(missing) > 10 else ''} to weight them by; use --res-weights uniform")
    return {int(f): float(effects[int(f)]) for f in features}
