"""Correlation statistics: known values, degenerate inputs, bootstrap intervals."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from igds.training.correlate import correlate, paired_bootstrap_diff


def test_perfect_monotone_data_gives_spearman_one_with_ci_at_one():
    x = [0.1, 0.2, 0.3, 0.5, 0.9, 1.4]
    y = [np.exp(v) for v in x]  # monotone but not linear
    r = correlate(x, y, n_boot=500)
    assert r["spearman"] == pytest.approx(1.0)
    assert r["spearman_lo"] == pytest.approx(1.0) and r["spearman_hi"] == pytest.approx(1.0)
    assert 0.9 < r["pearson"] < 1.0 and r["n"] == 6


def test_known_pearson_value():
    x, y = [1, 2, 3, 4, 5], [2, 1, 4, 3, 5]
    r = correlate(x, y, n_boot=200)
    assert r["pearson"] == pytest.approx(0.8)  # cov 2.0 / (var 2.5)
    assert r["spearman"] == pytest.approx(0.8)
    assert r["pearson_lo"] <= r["pearson"] <= r["pearson_hi"]


@pytest.mark.parametrize(("x", "y"), [([], []), ([1.0], [2.0]), ([1.0, 2.0], [3.0, 1.0]),
                                      ([0.1, 0.1, 0.1, 0.1], [1.0, 2.0, 3.0, 4.0]),
                                      ([1.0, float("nan"), 3.0], [1.0, 2.0, 3.0])],
                         ids=["empty", "one", "two", "constant-x", "nan-dropped-to-two"])
def test_degenerate_inputs_give_nan(x, y):
    r = correlate(x, y)
    assert all(math.isnan(r[k]) for k in ("pearson", "pearson_lo", "spearman", "spearman_hi"))


def test_shape_mismatch_raises():
    with pytest.raises(ValueError):
        correlate([1, 2, 3], [1, 2])


def test_paired_bootstrap_diff():
    a, b = [1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.5, 3.5]
    r = paired_bootstrap_diff(a, b)
    assert r["mean_diff"] == pytest.approx(0.5) and r["lo"] == pytest.approx(0.5) and r["hi"] == pytest.approx(0.5)
    r = paired_bootstrap_diff([1.0, 0.0, 1.0, 0.0, 1.0], [0.0] * 5, seed=1)
    assert r["lo"] < 0.6 < r["hi"] and r["n"] == 5
    assert math.isnan(paired_bootstrap_diff([], [])["mean_diff"])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=3, max_size=12),
       st.permutations(range(12)))
def test_bounds_and_permutation_invariance(pairs, perm):
    x, y = map(list, zip(*pairs, strict=True))
    r = correlate(x, y, n_boot=50)
    order = [i for i in perm if i < len(x)]
    r2 = correlate([x[i] for i in order], [y[i] for i in order], n_boot=50)
    for k in ("pearson", "spearman"):
        assert math.isnan(r[k]) or -1.0 <= r[k] <= 1.0
        assert (math.isnan(r[k]) and math.isnan(r2[k])) or r[k] == pytest.approx(r2[k], abs=1e-9)


def test_partial_correlation_removes_a_shared_size_effect():
    rng = np.random.default_rng(0)
    size = np.repeat([50.0, 100.0, 200.0, 400.0], 10)
    z = np.log(size)
    # both grow with training size and nothing else: strongly correlated raw, not once size is removed
    x = z + rng.normal(0, 0.05, size.size)
    y = 2 * z + rng.normal(0, 0.05, size.size)
    raw, part = correlate(x, y, seed=1), correlate(x, y, seed=1, covariate=z)
    assert raw["pearson"] > 0.95 and raw["pearson_lo"] > 0.9
    assert abs(part["pearson"]) < 0.4 and part["pearson_lo"] < 0 < part["pearson_hi"]
    # a link beyond size survives the partialling
    shared = rng.normal(0, 1, size.size)
    part2 = correlate(z + shared, z + shared + rng.normal(0, 0.3, size.size), seed=1, covariate=z)
    assert part2["pearson"] > 0.9 and part2["spearman"] > 0.85 and part2["pearson_lo"] > 0.8
    assert correlate([1, 2, 3], [1, 2, 3], covariate=[1, 2, 4])["n"] == 3  # too few points for a partial: NaN
    assert math.isnan(correlate([1, 2, 3], [1, 2, 3], covariate=[1, 2, 4])["pearson"])
