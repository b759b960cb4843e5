"""The filter's verdict on synthetic per-item effects: the fitted null's p and rank p, BH over tested candidates
only, the untestable class, futility stopping and its replay."""

import numpy as np
import pytest

from igds.method.config import InterventionConfig
from igds.method.verdict import decide, detectable_effect, fit_null, futile, measured_items, sequential_verdict


def _null(n_null=120, n_items=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 0.002, (n_null, 1)) + rng.normal(0.0, 0.01, (n_null, n_items))


def test_rank_p_and_fitted_p_follow_their_formulas():
    null = np.linspace(-0.01, 0.01, 99)
    fit = fit_null(null, "normal")
    assert fit.rank_p(0.0) == pytest.approx((1 + (null >= 0.0).sum()) / 100)
    assert fit.rank_p(1.0) == pytest.approx(1 / 100)  # the floor: 1 / (N + 1)
    assert fit.p(0.02) < fit.p(0.01) < fit.p(0.0) < fit.p(-0.01)
    assert fit.quantile(0.95) == pytest.approx(np.mean(null) + 1.6449 * np.std(null, ddof=1), rel=1e-3)
    t = fit_null(null, "t")
    assert t.family in ("t", "normal") and 0 <= t.ks_p <= 1
    with pytest.raises(ValueError, match="null_fit"):
        fit_null(null, "cauchy")


def test_untestable_candidates_get_no_p_and_stay_out_of_bh():
    null = _null()
    rng = np.random.default_rng(1)
    cand = np.stack([rng.normal(0.02, 0.01, 256), rng.normal(0.0, 0.01, 256), rng.normal(0.05, 0.01, 256)])
    v = decide(cand, null, [200, 200, 5], fdr=0.05, min_fired=10)
    assert v.kept.tolist() == [True, False, False]
    assert bool(v.untestable[2]) and np.isnan(v.p[2]) and np.isnan(v.q_value[2]) and v.reason[2].startswith("untest")
    # BH over the two tested candidates only: q of the strongest is p × 2 / rank 1
    assert v.q_value[0] == pytest.approx(min(1.0, v.p[0] * 2), rel=1e-9)
    assert decide(cand, null, [200, 200, 200], fdr=0.05, min_fired=10).kept.tolist() == [True, False, True]


def test_futility_stops_a_null_candidate_and_keeps_a_strong_one_and_the_replay_masks_it():
    null = _null()
    fit = fit_null(null[:, :64].mean(1), "t")
    rng = np.random.default_rng(2)
    weak, strong = rng.normal(-0.005, 0.01, 256), rng.normal(0.03, 0.01, 256)
    assert futile(weak[:64], fit, 0.05, 0.01) and not futile(strong[:64], fit, 0.05, 0.01)
    cfg = InterventionConfig()
    v = sequential_verdict(np.stack([weak, strong]), null, [200, 200], [64, 128, 192, 256], cfg)
    assert v.n.tolist() == [64, 256] and v.stopped.tolist() == [True, False] and v.kept.tolist() == [False, True]
    assert v.reason[0] == "stopped for futility"
    assert measured_items(np.array([[1.0, np.nan, 2.0], [1.0, 1.0, 1.0]])).tolist() == [1, 3]


def test_the_detectable_effect_shrinks_with_items_and_grows_with_candidates():
    null = _null()
    assert detectable_effect(null, 32, 0.05, "normal") > detectable_effect(null, 1, 0.05, "normal")
    assert detectable_effect(null[:, :64], 32, 0.05, "normal") > detectable_effect(null, 32, 0.05, "normal")


def _textbook_bh(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg as written out: q_(i) = min over j ≥ i of p_(j) · m / j, capped at 1."""
    m = len(p)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def test_scipys_bh_equals_the_textbook_bh_on_random_vectors():
    from igds.method.verdict import benjamini_hochberg

    rng = np.random.default_rng(0)
    for _ in range(1000):
        m = int(rng.integers(1, 60))
        p = rng.uniform(0, 1, m) ** rng.uniform(0.5, 4)  # skewed toward small p-values, with ties now and then
        if m > 3:
            p[1] = p[0]
        np.testing.assert_allclose(benjamini_hochberg(p), _textbook_bh(p), rtol=1e-12, atol=1e-15)
