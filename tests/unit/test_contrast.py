"""The pre-registered contrast's interval on a simulated crossed design (seeds × shared test items), against the
oracle interval and the old 3-seed hierarchical bootstrap; Holm on a known family."""

import numpy as np
import pytest

from igds.experiment.contrast import detectable_difference, holm, seed_contrast, seeds_needed
from igds.experiment.stats import boot_means

N_ITEMS = 150
ITEM_SD = 1.0    # an item's own difficulty, shared by every fine-tune (cancels in the difference)
NOISE_SD = 0.3   # one fine-tune's scatter on one item
SEED_SD = 0.08   # one fine-tune's overall shift (the larger part, as between real fine-tunes)
TRUE_DIFF = 0.05


def simulate(rng, seeds: int):
    """One draw of the design: arm A and arm B, ``seeds`` fine-tunes each, scored on the same items."""
    item = rng.normal(0, ITEM_SD, N_ITEMS)

    def arm(mu):
        return mu + rng.normal(0, SEED_SD, (seeds, 1)) + item + rng.normal(0, NOISE_SD, (seeds, N_ITEMS))

    return arm(TRUE_DIFF), arm(0.0)


def oracle_sd(seeds: int) -> float:
    return float(np.sqrt(2 * (SEED_SD**2 + NOISE_SD**2 / N_ITEMS) / seeds))


def test_t_interval_over_seed_means_covers_at_its_level_and_is_as_narrow_as_the_oracle():
    rng = np.random.default_rng(0)
    hits, widths = [], []
    for _ in range(2000):
        a, b = simulate(rng, 10)
        c = seed_contrast(a, b)
        hits.append(c.lo <= TRUE_DIFF <= c.hi)
        widths.append(c.hi - c.lo)
    coverage = float(np.mean(hits))
    ratio = float(np.mean(widths)) / (2 * 1.959964 * oracle_sd(10))
    assert 0.93 <= coverage <= 0.97, coverage
    assert abs(ratio - 1) <= 0.15, ratio


def test_the_old_three_seed_bootstrap_under_covers_on_the_same_design():
    rng = np.random.default_rng(1)
    hits = []
    for _ in range(1000):
        a, b = simulate(rng, 3)
        items = rng.integers(0, N_ITEMS, size=(300, N_ITEMS))
        d = boot_means(a, items, rng) - boot_means(b, items, rng)
        lo, hi = np.percentile(d, [2.5, 97.5])
        hits.append(lo <= TRUE_DIFF <= hi)
    assert np.mean(hits) < 0.90, np.mean(hits)


def test_items_missing_in_any_seed_are_left_out_and_too_few_seeds_refused():
    rng = np.random.default_rng(2)
    a, b = simulate(rng, 4)
    full = seed_contrast(a, b)
    a2 = a.copy()
    a2[0, 5] = np.nan
    part = seed_contrast(a2, b)
    assert part.n_items == N_ITEMS - 1 and full.n_items == N_ITEMS
    assert part.estimate == pytest.approx(seed_contrast(np.delete(a, 5, 1), np.delete(b, 5, 1)).estimate)
    with pytest.raises(ValueError, match="≥ 2 seeds"):
        seed_contrast(a[:1], b)


def test_detectable_difference_and_seeds_needed_agree():
    # a target equal to the detectable effect of n seeds needs n seeds (not fewer)
    sd = 0.03
    for n in (3, 5, 10):
        target = detectable_difference(sd * np.sqrt(2 / n), 2 * n - 2)
        assert seeds_needed(sd, target) == n
    assert seeds_needed(sd, 1e-6) is None


def test_holm_on_a_known_family():
    p = [0.01, 0.04, 0.03, 0.005, np.nan]
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; then the running maximum
    np.testing.assert_allclose(holm(p)[:4], [0.03, 0.06, 0.06, 0.02])
    assert np.isnan(holm(p)[4])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_the_power_plan_reads_seeds_from_the_spread():
    from igds.experiment.primary import power_plan

    plan = power_plan(0.03, targets=(0.05, 0.02, 1e-6), n_seeds=10)
    assert plan.seeds_needed.tolist()[:2] == [seeds_needed(0.03, 0.05), seeds_needed(0.03, 0.02)]
    assert plan.seeds_needed.iloc[0] < plan.seeds_needed.iloc[1] and np.isnan(plan.seeds_needed.iloc[2])
    assert np.isclose(plan.target.iloc[3], detectable_difference(0.03 * np.sqrt(0.2), 18))
