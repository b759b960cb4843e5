"""Baselines on hand-made cases: Random, Loss, IFD, ZIP, Longest, Shortest, Full, the registry and the ranking
invariants."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igds.method.baselines import (
    BASELINE_METHODS,
    BASELINES,
    BaselineConfig,
    BaselineRanking,
    content_length,
    example_texts,
    full_ranking,
    get_baseline,
    ifd_ranking,
    ifd_scores,
    length_ranking,
    loss_ranking,
    random_ranking,
    rank_baseline,
    zip_ranking,
)

NAN = math.nan


def sentence(seed: int, n_words: int = 60) -> str:
    """Pseudo-random text from a private vocabulary, so distinct seeds share little."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    return " ".join("".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(n_words))


NLL = pd.DataFrame({
    "example_id": ["a", "b", "c", "d", "e", "f", "g"],
    "nll_cond": [1.0, 1.8, 2.0, 3.0, NAN, 1.0, 0.9],
    "nll_uncond": [2.0, 2.0, 2.0, 2.0, 2.0, 0.0, 1.8],
})


def test_ifd_formula_and_exclusion():
    scores = ifd_scores(NLL)
    assert scores["a"] == pytest.approx(0.5) and scores["b"] == pytest.approx(0.9)
    assert scores["c"] == pytest.approx(1.0) and scores["d"] == pytest.approx(1.5)
    assert math.isnan(scores["e"]) and math.isnan(scores["f"])  # missing NLL; nll_uncond = 0
    r = ifd_ranking(NLL)
    assert r.method == "ifd"
    assert r.order == ["b", "a", "g"]  # 0.9, 0.5, 0.5: ties by id
    assert r.excluded == {"c", "d", "e", "f"}  # IFD == 1 is dropped too
    assert r.top(10) == ["b", "a", "g"]


def test_loss_orders_by_conditional_nll_highest_first():
    r = loss_ranking(NLL)
    assert r.order == ["d", "c", "b", "a", "f", "g"]  # a and f tie at 1.0: id order
    assert r.excluded == {"e"}
    assert r.scores["d"] == 3.0
    assert r.top(2) == ["d", "c"]


def test_nll_table_with_duplicate_ids_is_rejected():
    with pytest.raises(ValueError, match="duplicate"):
        loss_ranking(pd.concat([NLL, NLL]))


def test_random_is_seeded_and_independent_of_input_order():
    ids = [f"ex{i:03d}" for i in range(200)]
    r1 = random_ranking(ids, seed=3)
    r2 = random_ranking(list(reversed(ids)), seed=3)
    assert r1.order == r2.order and r1.scores == r2.scores
    assert sorted(r1.order) == ids
    assert random_ranking(ids, seed=4).order != r1.order
    assert r1.order != sorted(ids)
    assert [r1.scores[i] for i in r1.order] == sorted(r1.scores.values(), reverse=True)


def test_full_ranks_everything():
    r = full_ranking(["b", "a", "c"])
    assert r.order == ["a", "b", "c"] and r.top(5) == ["a", "b", "c"] and not r.excluded


def test_ranking_rejects_inconsistent_contents():
    with pytest.raises(ValueError, match="duplicate"):
        BaselineRanking("x", ["a", "a"], {})
    with pytest.raises(ValueError, match="excluded"):
        BaselineRanking("x", ["a"], {}, frozenset({"a"}))
    with pytest.raises(ValueError, match=">= 0"):
        full_ranking(["a"]).top(-1)


def test_zip_drops_exact_duplicates_first():
    texts = {f"u{i:02d}": sentence(i) for i in range(10)}
    # exact copies of u03 and u07 under ids that sort before and after the originals
    texts.update({"a-dup": texts["u03"], "z-dup1": texts["u07"], "z-dup2": texts["u07"]})
    r = zip_ranking(texts, n_select=10, k1=13, k2=6, k3=3)
    assert sorted(r.top(10)) == sorted(["a-dup", *[f"u{i:02d}" for i in range(10) if i != 3]])
    assert r.order[-3:] == ["u03", "z-dup1", "z-dup2"]  # the smallest id of each group is the one kept
    assert r.scores["z-dup1"] > 10 * r.scores["u07"]  # a copy adds almost no information


def test_zip_avoids_near_duplicates_while_fresh_texts_remain():
    base = {f"u{i:02d}": sentence(100 + i) for i in range(8)}
    # near copies sort before their originals, so an order that ignored redundancy would pick both
    near = {f"a{i:02d}": base[f"u{i:02d}"].replace(" ", "  ", 1) + " x" for i in range(4)}  # not exact copies
    r = zip_ranking({**base, **near}, n_select=8, k1=12, k2=12, k3=1)
    picked = set(r.top(8))
    for i in range(4):
        assert not {f"u{i:02d}", f"a{i:02d}"} <= picked, "both members of a near-duplicate pair were picked"


def test_zip_prefers_dense_text_over_repetitive_text():
    texts = {"rep": "the same words " * 40, "dense": sentence(7, 40), "rep2": "abc abc abc " * 50}
    assert zip_ranking(texts, n_select=1).top(1) == ["dense"]


def test_zip_is_deterministic_and_order_independent():
    texts = {f"t{i:03d}": sentence(i % 17, 20 + i % 5) for i in range(60)}
    r1 = zip_ranking(texts, n_select=25, k1=30, k2=10, k3=4)
    r2 = zip_ranking(dict(reversed(list(texts.items()))), n_select=25, k1=30, k2=10, k3=4)
    assert r1 == r2
    assert len(set(r1.order)) == len(texts) == len(r1.order)


def test_zip_rejects_bad_stage_sizes():
    with pytest.raises(ValueError, match="k1 >= k2 >= k3"):
        zip_ranking({"a": "x"}, 1, k1=2, k2=5, k3=1)


def test_registry_and_config():
    assert tuple(BASELINES) == BASELINE_METHODS == ("random", "loss", "ifd", "zip", "longest", "shortest", "full")
    assert get_baseline("longest").needs_lengths and get_baseline("shortest").needs_lengths
    assert get_baseline("ifd").needs_nll and get_baseline("zip").needs_texts
    with pytest.raises(ValueError, match="known: random, loss"):
        get_baseline("nope")
    cfg = BaselineConfig(method="zip", zip_k1=50, zip_k2=20, zip_k3=5)
    assert BaselineConfig.from_dict(cfg.to_dict()) == cfg
    for bad in ({"method": "igds"}, {"zip_k2": 1, "zip_k3": 2}, {"max_length": 1}):
        with pytest.raises(ValueError):
            BaselineConfig(**bad)


def test_rank_baseline_dispatches_and_checks_inputs():
    ids = ["a", "b", "c", "x"]  # x has no nll row: excluded, not an error
    r = rank_baseline(BaselineConfig(method="ifd"), ids, 2, nll_df=NLL)
    assert r.order == ["b", "a"] and "x" in r.excluded and "g" not in r.scores  # restricted to the pool
    assert rank_baseline(BaselineConfig(method="random", seed=5), ids, 2).order == random_ranking(ids, 5).order
    with pytest.raises(ValueError, match="needs an nll table"):
        rank_baseline(BaselineConfig(method="loss"), ids, 2)
    with pytest.raises(ValueError, match="needs a text"):
        rank_baseline(BaselineConfig(method="zip"), ids, 2, texts={"a": "t"})
    r = rank_baseline(BaselineConfig(method="zip"), ids, 2, texts={i: sentence(ord(i)) for i in ids})
    assert len(r.top(2)) == 2


def test_length_ranking_orders_by_length_ties_by_id():
    lengths = {"d": 5, "a": 9, "c": 5, "b": 1, "e": 9}
    assert length_ranking(lengths, longest=True).order == ["a", "e", "c", "d", "b"]
    assert length_ranking(lengths, longest=False).order == ["b", "c", "d", "a", "e"]  # ties by id both ways
    r = length_ranking(dict(reversed(list(lengths.items()))), longest=True)
    assert r.method == "longest" and r.order == ["a", "e", "c", "d", "b"] and r.scores["a"] == 9.0
    assert not r.excluded


def test_longest_and_shortest_count_content_and_response_only():
    from igds.data.records import Example

    exs = [Example("t1", "summarization", "s", "train", "one two", "three"),  # instruction left out
           Example("g1", "general", "s", "train", "onetwothreefour", "x"),  # no instruction at all
           Example("g2", "general", "s", "train", "a b\n c", "d  e"),  # whitespace does not count
           Example("t2", "translation", "s", "train", "eins", "one")]
    texts = example_texts(exs)
    assert [content_length(texts[e.id]) for e in exs] == [11, 16, 5, 7]
    ids = [e.id for e in exs]
    longest = rank_baseline(BaselineConfig(method="longest"), ids, 2, texts=texts)
    shortest = rank_baseline(BaselineConfig(method="shortest"), ids, 2, texts=texts)
    assert longest.order == ["g1", "t1", "t2", "g2"] and longest.top(2) == ["g1", "t1"]
    assert shortest.order == ["g2", "t2", "t1", "g1"]
    with pytest.raises(ValueError, match="needs a content length"):
        rank_baseline(BaselineConfig(method="longest"), ids, 2)
    # given content tokens (what the workflow passes: the extraction's kept tokens), those decide
    tokens = {"t1": 3, "g1": 2, "g2": 9, "t2": 1}
    assert rank_baseline(BaselineConfig(method="longest"), ids, 2, texts=texts, lengths=tokens).order == [
        "g2", "t1", "g1", "t2"]


@st.composite
def rankings(draw):
    ids = draw(st.lists(st.text("abcdef0123", min_size=1, max_size=6), min_size=0, max_size=14, unique=True))
    method = draw(st.sampled_from(BASELINE_METHODS))
    n = draw(st.integers(0, 20))
    values = st.one_of(st.just(NAN), st.floats(0.0, 5.0))
    nll = pd.DataFrame({"example_id": ids, "nll_cond": [draw(values) for _ in ids],
                        "nll_uncond": [draw(values) for _ in ids]})
    texts = {i: draw(st.sampled_from(["", "same", "aaaa bbbb", sentence(len(i), 5)])) + i[:1] for i in ids}
    cfg = BaselineConfig(method=method, seed=draw(st.integers(0, 3)), zip_k1=draw(st.integers(3, 8)), zip_k2=3,
                         zip_k3=draw(st.integers(1, 3)))
    return ids, n, rank_baseline(cfg, ids, n, texts=texts, nll_df=nll)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rankings())
def test_top_n_is_exactly_min_n_available_distinct_and_never_excluded(case):
    ids, n, r = case
    top = r.top(n)
    assert len(top) == len(set(top)) == min(n, r.available)
    assert not set(top) & r.excluded
    assert set(r.order) | r.excluded == set(ids)  # every pool id is either rankable or excluded
    assert top == r.order[: len(top)]
