"""The quick look's detectable effect is what its name says (a paired test finds an effect of that size with the stated
power), and its intervention config is the full filter's edits at α = 1 with the small null."""

import numpy as np
import pytest
from scipy import stats

from igds.method.config import InterventionConfig, QuickLookConfig
from igds.method.quicklook import detectable_effect


@pytest.mark.parametrize("n", [16, 64, 256])
def test_an_effect_of_the_detectable_size_is_found_with_the_stated_power(n):
    rng = np.random.default_rng(n)
    sd = 0.03
    x = rng.normal(0.0, 1.0, n)
    d = detectable_effect(sd * (x - x.mean()) / x.std(ddof=1), level=0.05, power=0.8)  # n items of spread sd
    sims = rng.normal(d, sd, size=(4000, n))
    p = stats.ttest_1samp(sims, 0.0, axis=1).pvalue
    assert abs((p < 0.05).mean() - 0.8) < 0.03
    # half the size is found far less often: the figure is not a bound on what can be seen, but a planning size
    p_half = stats.ttest_1samp(rng.normal(d / 2, sd, size=(4000, n)), 0.0, axis=1).pvalue
    assert (p_half < 0.05).mean() < 0.4


def test_the_detectable_effect_shrinks_with_more_items_and_needs_two():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 1024)
    assert detectable_effect(x[:64]) > detectable_effect(x[:256]) > detectable_effect(x)
    assert np.isnan(detectable_effect(np.array([0.1]))) and np.isnan(detectable_effect(np.array([np.nan, 1.0])))


def test_the_quick_look_runs_the_filters_edits_at_alpha_one_with_a_small_null():
    base = InterventionConfig(positions="prompt_content", edit_mode="add", null_directions=32, null_features=16)
    cfg = QuickLookConfig(top=4, null_directions=2, null_features=1).intervention(base)
    assert (cfg.alphas, cfg.ablate, cfg.sweep_top, cfg.null_directions, cfg.null_features) == ((1.0,), False, 0, 2, 1)
    assert (cfg.positions, cfg.edit_mode, cfg.max_length) == (base.positions, base.edit_mode, base.max_length)
    with pytest.raises(ValueError):
        QuickLookConfig(top=0)
    with pytest.raises(ValueError):
        QuickLookConfig(null_directions=0, null_features=0)
