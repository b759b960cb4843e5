import math

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igds.method.selection import Overrides, SelectionConfig, select_from_ranking, selection_hash
from igds.ranking import rank_key


def ranking(scores):
    df = pd.DataFrame({"example_id": [f"e{i:03d}" for i in range(len(scores))], "score": scores,
                       "n_tokens": [10 + i % 7 for i in range(len(scores))]})
    return df.sort_values(["score", "example_id"], ascending=[False, True]).reset_index(drop=True)


scores_st = st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=60)


@settings(max_examples=60, deadline=None)
@given(scores=scores_st, ratio=st.floats(0.01, 1.0), data=st.data())
def test_ratio_gives_exact_count_and_overrides_are_respected(scores, ratio, data):
    r = ranking(scores)
    ids = list(r.example_id)
    pinned = set(data.draw(st.lists(st.sampled_from(ids), max_size=5)))
    rejected = set(data.draw(st.lists(st.sampled_from(ids), max_size=5))) - pinned
    out = select_from_ranking(r, SelectionConfig(ratio=ratio), Overrides(frozenset(pinned), frozenset(rejected)),
                              n_pool=len(ids))
    chosen = set(out.example_id)
    assert pinned <= chosen and not (rejected & chosen)
    target = math.ceil(ratio * len(ids))
    available = len(ids) - len(rejected)
    assert len(out) == max(len(pinned), min(target, available))
    assert len(chosen) == len(out)  # no duplicates
    # apart from pins, the kept examples are a prefix of the ranking
    rest = [i for i in ids if i not in pinned and i not in rejected]
    kept_rest = [i for i in out.example_id if i not in pinned]
    assert kept_rest == rest[: len(kept_rest)]


@settings(max_examples=40, deadline=None)
@given(scores=scores_st, tau=st.floats(0, 100))
def test_threshold_keeps_exactly_scores_above(scores, tau):
    out = select_from_ranking(ranking(scores), SelectionConfig(threshold=tau))
    # at the ranking's resolution (7 significant digits): a score a hair under tau is tau
    assert sorted(out.score) == sorted(s for s in scores if rank_key(s)[0] >= tau)


@settings(max_examples=40, deadline=None)
@given(scores=scores_st, budget=st.integers(0, 400))
def test_budget_never_exceeded_and_greedy_prefix(scores, budget):
    r = ranking(scores)
    out = select_from_ranking(r, SelectionConfig(token_budget=budget))
    assert out.n_tokens.sum() <= budget
    assert list(out.example_id) == list(r.example_id[: len(out)])
    if len(out) < len(r):
        assert out.n_tokens.sum() + r.n_tokens.iloc[len(out)] > budget


def test_feature_overrides_veto_and_pin():
    ov = Overrides(vetoed_features=frozenset({2}), pinned_features=frozenset({9, 2}))
    assert ov.apply_to_features([5, 2, 7]) == [5, 7, 9]


def test_selection_hash_depends_on_members_order_and_lineage():
    a = selection_hash(["x", "y"], {"m": 1})
    assert a == selection_hash(["x", "y"], {"m": 1})
    assert a != selection_hash(["y", "x"], {"m": 1}) and a != selection_hash(["x", "y"], {"m": 2})


def test_config_validation():
    with pytest.raises(ValueError):
        SelectionConfig(ratio=0)
    with pytest.raises(ValueError):
        SelectionConfig(pool_setting="everything")
