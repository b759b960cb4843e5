"""The ablation arms' feature sets (pure): seeded density-matched draws disjoint from the candidates, within the
neighbour band of their targets; recall-only keeps every candidate; filter-only hides the recalled set from its
null; wrong-task refuses an empty source F* by name."""

import numpy as np
import pytest

from igds.data.tasks import BUILTIN_TASKS
from igds.method.arms import (
    FILTER_ONLY,
    ArmError,
    arm_effects,
    default_source_task,
    filter_only_arm,
    filter_only_features,
    random_features,
    recall_only_features,
    require_arm,
    wrong_task_features,
)
from igds.method.intervene import NULL_NEIGHBOURS

D_SAE = 2000


@pytest.fixture(scope="module")
def world():
    """A log-uniform token density over ``D_SAE`` features (a tenth never fired), 40 candidates, an F* of 10."""
    rng = np.random.default_rng(7)
    density = 10 ** rng.uniform(-5, -1, D_SAE)
    density[rng.choice(D_SAE, D_SAE // 10, replace=False)] = 0.0
    fired = np.flatnonzero(density > 0)
    candidates = [int(f) for f in rng.choice(fired, 40, replace=False)]
    return density, candidates, candidates[:10]


def within_band(targets, drawn, density, excluded) -> list[bool]:
    """Per pair, whether the drawn feature is among the ``NULL_NEIGHBOURS + i`` features nearest its target in log
    density among those eligible (fired, not excluded): the ``i`` earlier draws may have taken nearer ones."""
    eligible = np.flatnonzero(density > 0)
    eligible = eligible[~np.isin(eligible, list(excluded))]
    ok = []
    for i, (t, f) in enumerate(zip(targets, drawn, strict=True)):
        dist = np.sort(np.abs(np.log(density[eligible]) - np.log(density[t])))
        ok.append(abs(np.log(density[f]) - np.log(density[t])) <= dist[NULL_NEIGHBOURS - 1 + i] + 1e-12)
    return ok


def test_random_features_are_seeded_density_matched_non_candidates(world):
    density, candidates, fstar = world
    drawn = random_features(fstar, candidates, density, seed=3)
    assert len(drawn) == len(fstar) == len(set(drawn))
    assert not set(drawn) & set(candidates)
    assert all(density[f] > 0 for f in drawn)
    assert random_features(fstar, candidates, density, seed=3) == drawn  # same seed, same set
    others = [random_features(fstar, candidates, density, seed=s) for s in range(4, 9)]
    assert sum(o != drawn for o in others) >= 4  # another seed: usually another set
    assert all(within_band(fstar, drawn, density, set(candidates)))


def test_band_check_can_fail():
    """The band check rejects a feature far from its target in density (so the test above can fail)."""
    density = np.concatenate([np.full(20, 1e-2), np.full(20, 1e-5)])
    assert within_band([0], [39], density, {0}) == [False]
    assert within_band([0], [5], density, {0}) == [True]


def test_random_features_refuses_an_empty_fstar_or_a_short_draw(world):
    density, candidates, _ = world
    with pytest.raises(ArmError, match="F\\* is empty"):
        random_features([], candidates, density, seed=0)
    tiny = np.zeros(D_SAE)
    tiny[:12] = 1e-3  # 12 features fired, 10 of them candidates: 2 left for 5 draws
    with pytest.raises(ArmError, match="needs 5 density-matched"):
        random_features(list(range(5)), list(range(10)), tiny, seed=0)


def test_recall_only_uses_every_candidate_in_order(world):
    _, candidates, _ = world
    assert recall_only_features(candidates) == candidates
    assert recall_only_features([5, 3, 5]) == [5, 3]
    with pytest.raises(ArmError, match="no candidates"):
        recall_only_features([])


def test_filter_only_draws_one_non_candidate_per_candidate_and_hides_the_recalled_set(world):
    density, candidates, _ = world
    arm = filter_only_arm(candidates, density, seed=1)
    assert len(arm.features) == len(candidates) and not set(arm.features) & set(candidates)
    assert all(within_band(candidates, arm.features, density, set(candidates)))
    assert filter_only_arm(candidates, density, seed=1) == arm
    other = filter_only_arm(candidates, density, seed=2)
    assert other.features != arm.features and other.key != arm.key  # another draw is another run
    assert arm.key.startswith(f"{FILTER_ONLY}-s1-")
    null = arm.null_density(density)
    assert (null[candidates] == 0).all()  # the null never draws a recalled feature
    assert (null[list(arm.features)] == density[list(arm.features)]).all()
    assert density[candidates].min() > 0  # the input is untouched
    assert arm.to_dict()["candidates"] == list(arm.features) and arm.to_dict()["n_recalled"] == len(candidates)


def test_filter_only_refuses_when_the_filter_keeps_none(world):
    density, candidates, _ = world
    arm = filter_only_arm(candidates, density, seed=1)
    assert filter_only_features(arm, arm.features[:3]) == list(arm.features[:3])
    with pytest.raises(ArmError, match="kept none of the 40 random density-matched features \\(intervention run x1\\)"):
        filter_only_features(arm, [], "x1", "why")
    with pytest.raises(ArmError, match="not among the random ones"):
        filter_only_features(arm, [candidates[0]])


def test_wrong_task_refuses_an_empty_source_fstar_naming_the_source():
    assert wrong_task_features("math", "translation", [4, 2, 4]) == [4, 2]
    with pytest.raises(ArmError, match="source task 'translation' has an empty F\\*"):
        wrong_task_features("math", "translation", [])
    with pytest.raises(ArmError, match="another task's F\\*"):
        wrong_task_features("math", "math", [1])


def test_default_source_task_is_the_next_shipped_task():
    shipped = list(BUILTIN_TASKS)
    for i, t in enumerate(shipped):
        assert default_source_task(t, shipped) == shipped[(i + 1) % len(shipped)]
    assert default_source_task("my-own-task", shipped) == shipped[0]


def test_effect_weights_need_measured_effects():
    assert arm_effects("random-features", [1, 2], None, "uniform") is None
    assert arm_effects("recall-only", [1, 2], {1: 0.5, 2: 0.0, 3: 9.0}, "effect") == {1: 0.5, 2: 0.0}
    with pytest.raises(ArmError, match="no measured effect for features \\[1, 2\\]"):
        arm_effects("random-features", [1, 2], None, "effect")


def test_unknown_arm():
    assert require_arm("wrong-task") == "wrong-task"
    with pytest.raises(ArmError, match="known: recall-only, filter-only"):
        require_arm("recall-twice")
