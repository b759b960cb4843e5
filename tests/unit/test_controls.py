"""The control selections: equal token budgets, length-stratified FRS quartiles with one length mix, task first."""

import numpy as np
import pandas as pd
import pytest

from igds.method.controls import length_strata, stratified_quartile, task_first, token_budget


def ranked_pool(n=64, seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(10, 200, n)
    score = tokens * 0.01 + rng.normal(0, 0.3, n)  # FRS rises with length: the confound the control removes
    df = pd.DataFrame({"example_id": [f"e{i}" for i in range(n)], "score": score, "n_tokens": tokens})
    return df.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)


def test_strata_are_equal_count_length_bins():
    pool = ranked_pool(66)
    s = length_strata(pool)
    assert sorted(s.value_counts().tolist()) == [16, 16, 17, 17]
    means = pool.groupby(s).n_tokens.max()
    assert means.is_monotonic_increasing


def test_stratified_quartiles_are_disjoint_equal_and_share_one_length_mix():
    pool = ranked_pool(64)
    blocks = [stratified_quartile(pool, q) for q in range(1, 5)]
    ids = [set(b.example_id) for b in blocks]
    assert all(len(b) == 16 for b in blocks) and len(set().union(*ids)) == 64
    strata = length_strata(pool).set_axis(pool.example_id)
    for b in blocks:  # every block takes 4 items of every stratum
        assert strata[b.example_id].value_counts().tolist() == [4, 4, 4, 4]
        assert b["rank"].tolist() == list(range(1, 17))
    # within a stratum, block 1 holds its top FRS quarter
    assert blocks[0].score.mean() > blocks[3].score.mean()
    # the plain FRS quartiles (no strata) differ in length; the stratified ones barely
    plain = [pool.iloc[16 * q : 16 * (q + 1)].n_tokens.mean() for q in range(4)]
    strat = [b.n_tokens.mean() for b in blocks]
    assert np.ptp(strat) < np.ptp(plain) / 2
    with pytest.raises(ValueError, match="1..4"):
        stratified_quartile(pool, 5)


def test_token_budget_and_task_first():
    pool = pd.DataFrame({"example_id": list("abcdef"), "n_tokens": [10, 20, 30, 40, 50, 50],
                         "task": ["math", "general", "math", "general", "math", "general"]})
    assert token_budget(pool, 0.5) == 100
    sel = task_first(pool, "math", 0.5, seed=3)
    assert set(sel.example_id) == {"a", "c", "e"} and sel["rank"].tolist() == [1, 2, 3]
    more = task_first(pool, "math", 0.7, seed=3)
    assert len(more) == 5 and set(more.example_id[:3]) == {"a", "c", "e"}
    assert task_first(pool, "math", 0.7, seed=3).equals(more)  # seeded
