"""Every ranking has one defined order: the score at 7 significant digits, then a fixed id.

Scores from two CPUs differ in their last bits; these tests build exact ties and near-ties (relative
perturbations of 1e-12) and check that selection, its cut, quartile blocks, the vetting queue, baselines
and recall come out identical, and in the order the product defines.
"""

import numpy as np
import pandas as pd
import pytest

from igds.method.baselines import loss_ranking, random_ranking
from igds.method.recall import RecallConfig, compute_recall
from igds.method.resonance import ResonanceConfig, ResonanceMatrix
from igds.method.selection import SelectionConfig, select_from_ranking
from igds.method.vetting import queue_order
from igds.ranking import rank_key, rank_order, ranked_ids
from igds.workflow.stages import quartile_block

REL = 1e-12


def jitter(x, seed):
    """``x`` times (1 ± 1e-12), a sign per element: what another CPU's kernels might give."""
    sign = np.random.default_rng(seed).choice([-1.0, 1.0], size=np.shape(x))
    return np.asarray(x, dtype=np.float64) * (1 + sign * REL)


def test_rank_key_rounds_to_seven_significant_digits_and_keeps_specials():
    x = np.array([1.23456749, 1.23456751, -0.000123456789, 98765432.1, 0.0, np.nan, np.inf, 1e-310, 1e300])
    k = rank_key(x)
    assert k[0] == 1.234567 and k[1] == 1.234568
    assert k[2] == pytest.approx(-0.0001234568, rel=1e-15)
    assert k[3] == 98765430.0 and k[4] == 0.0 and np.isnan(k[5]) and k[6] == np.inf
    assert k[7] == pytest.approx(1e-310) and k[8] == pytest.approx(1e300)
    # exact powers of ten keep their decade
    assert list(rank_key([10.0, 1000.0, 0.001])) == [10.0, 1000.0, 0.001]
    # a relative 1e-12 never changes a key away from a rounding boundary
    v = np.random.default_rng(0).uniform(-5, 5, 1000)
    assert np.array_equal(rank_key(v), rank_key(jitter(v, 1)))


def test_rank_order_breaks_ties_by_id_never_by_position():
    scores = [0.5, 0.7, 0.5 * (1 + REL), 0.7, np.nan, 0.1]
    ids = ["e", "d", "a", "b", "c", "f"]
    assert ranked_ids(scores, ids) == ["b", "d", "a", "e", "f", "c"]
    assert ranked_ids(scores, ids, descending=False) == ["f", "a", "e", "b", "d", "c"]  # NaN last either way
    perm = [5, 3, 1, 0, 4, 2]
    assert ranked_ids([scores[i] for i in perm], [ids[i] for i in perm]) == ranked_ids(scores, ids)
    with pytest.raises(ValueError, match="6 scores but 5 ids"):
        rank_order(scores, ids[:5])


def _matrix(act: np.ndarray, keys: list[str]) -> ResonanceMatrix:
    n = act.shape[0]
    pool = pd.DataFrame({"example_id": [f"id-{k}" for k in keys], "shown_key": keys, "n_tokens": np.full(n, 10),
                         "n_positions": np.full(n, 10), "task": "t", "source": "s"})
    return ResonanceMatrix(pool=pool, features=(1, 2, 3), sum_act=act, max_act=act)


@pytest.fixture(scope="module")
def pools():
    """One pool (240 examples, 3 features) whose activations come from a few levels (many exact FRS ties),
    and the same pool with every activation perturbed by a relative 1e-12 and its rows shuffled."""
    rng = np.random.default_rng(7)
    levels = np.array([np.nan, 1.5, 2.75, 4.0])
    act = levels[rng.integers(0, 4, size=(240, 3))] * 10.0  # sums over 10 tokens
    keys = [f"{i:04x}{rng.integers(1 << 30):08x}" for i in range(240)]
    perm = rng.permutation(240)
    shuffled = _matrix(jitter(act, 3)[perm], [keys[i] for i in perm])
    return _matrix(act, keys), shuffled


@pytest.mark.parametrize("direction", ["resonant", "hard"])
def test_exact_ties_and_near_ties_give_the_identical_selection_cut_blocks_and_queue(pools, direction):
    cfg = ResonanceConfig(direction=direction)
    a, b = (m.score([1, 2, 3], cfg) for m in pools)
    assert a.frs.duplicated().sum() > 100  # the pool is mostly exact ties
    assert list(a.example_id) == list(b.example_id)
    # the defined order: rounded FRS in the config's direction, then the canonical key
    keys = dict(zip(pools[0].pool.example_id, pools[0].pool.shown_key, strict=True))
    k, sk = rank_key(a.frs), [keys[e] for e in a.example_id]
    pairs = list(zip(-k if cfg.higher_first else k, sk, strict=True))
    assert pairs == sorted(pairs)
    ra, rb = (s.rename(columns={"frs": "score"}) for s in (a, b))
    for sel in (SelectionConfig(ratio=0.3), SelectionConfig(ratio=0.5),
                SelectionConfig(threshold=float(k[60])), SelectionConfig(token_budget=1005)):
        ca = select_from_ranking(ra, sel, higher_first=cfg.higher_first)
        cb = select_from_ranking(rb, sel, higher_first=cfg.higher_first)
        assert list(ca.example_id) == list(cb.example_id) and len(ca) > 0
    for q in (1, 2, 3, 4):
        assert list(quartile_block(ra, q).example_id) == list(quartile_block(rb, q).example_id)
    chosen = select_from_ranking(ra, SelectionConfig(ratio=0.5), higher_first=cfg.higher_first).example_id
    for mode in ("around the cut", "by uncertainty"):
        assert queue_order(a, chosen, mode) == queue_order(b, chosen, mode)


def test_threshold_cut_is_taken_at_the_ranking_resolution():
    ranked = pd.DataFrame({"example_id": ["a", "b", "c"], "score": [0.75 * (1 + REL), 0.75 * (1 - REL), 0.5]})
    out = select_from_ranking(ranked, SelectionConfig(threshold=0.75))
    assert list(out.example_id) == ["a", "b"]  # a score a hair under the threshold is the threshold


def test_baselines_and_recall_rank_near_ties_by_id():
    ids = [f"x{i:03d}" for i in range(200)]
    nll = np.round(np.random.default_rng(1).uniform(1, 3, 200), 2)  # about 200 values: many exact ties
    a = loss_ranking(pd.DataFrame({"example_id": ids, "nll_cond": nll}))
    b = loss_ranking(pd.DataFrame({"example_id": ids[::-1], "nll_cond": jitter(nll, 2)[::-1]}))
    assert a.order == b.order
    pairs = [(-rank_key(a.scores[i])[0], i) for i in a.order]
    assert pairs == sorted(pairs)
    assert random_ranking(ids, seed=3).order == random_ranking(ids[::-1], seed=3).order

    def stats(n_examples, seed):
        rng = np.random.default_rng(seed)
        return pd.DataFrame({"feature": np.arange(60), "n_examples": n_examples, "n_active": n_examples * 4,
                             "sum_act": 1.0, "max_act": 1.0, "mean_act_firing": rng.uniform(1, 2, 60)})

    n = np.tile([40, 30, 30, 20], 15)  # exact frequency ties across features
    cfg = RecallConfig(k_recall=12)
    r1 = compute_recall(stats(n, 0), 50, 1000, stats(np.full(60, 5), 0), 50, 1000, cfg)
    r2 = compute_recall(stats(n, 0).iloc[::-1], 50, 1000 * (1 + REL), stats(np.full(60, 5), 0).iloc[::-1], 50, 1000,
                        cfg)
    c1 = list(r1[r1.is_candidate].feature)
    assert c1 == list(r2[r2.is_candidate].feature) and len(c1) == 12
    assert c1 == sorted(c1, key=lambda f: (-n[f], f))  # ties by feature id
