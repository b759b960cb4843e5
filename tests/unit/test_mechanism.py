"""The mechanism statistics on simulated items and cells: a planted interaction is found, none is not; percentiles
and grouped correlations count what they say."""

import numpy as np
import pandas as pd

from igds.experiment.mechanism import (
    MIN_POINTS,
    amplification_percentile,
    grouped_correlation,
    item_interaction,
)


def test_a_planted_interaction_is_found_and_a_null_one_is_not():
    rng = np.random.default_rng(0)
    act = pd.Series(rng.gamma(2.0, 1.0, 300))
    planted = item_interaction(-0.05 * act + rng.normal(0, 0.1, 300), act)
    assert planted["slope_hi"] < 0 and planted["p"] < 1e-6 and planted["spearman"] < 0
    assert planted["slope_lo"] < -0.05 < planted["slope_hi"]
    misses = 0
    for s in range(200):  # no interaction: the interval holds 0 about 95% of the time
        r = np.random.default_rng(s + 1)
        res = item_interaction(pd.Series(r.normal(0, 0.1, 100)), pd.Series(r.gamma(2.0, 1.0, 100)))
        misses += not (res["slope_lo"] <= 0 <= res["slope_hi"])
    assert misses <= 20
    assert np.isnan(item_interaction(pd.Series([1.0, 2.0]), pd.Series([1.0, 2.0]))["slope"])


def test_items_align_by_index():
    d = pd.Series([0.1, 0.2, 0.3, np.nan], index=list("abcd"))
    a = pd.Series([3.0, 2.0, 1.0, 5.0], index=list("cbae"))
    res = item_interaction(d, a)
    assert res["n"] == 3 and np.isclose(res["slope"], 0.1)  # a: 1, 2, 3 for a, b, c


def test_amplification_percentile():
    assert amplification_percentile(0.5, [0.1, 0.2, 0.5, 0.9]) == {"n_controls": 4, "percentile": 62.5,
                                                                    "enough": False}
    assert amplification_percentile(2.0, np.linspace(0, 1, 60))["enough"]
    assert np.isnan(amplification_percentile(np.nan, [1.0])["percentile"])


def test_grouped_correlation_needs_enough_points_and_resamples_selections():
    rng = np.random.default_rng(3)
    n = 12
    cells = pd.DataFrame({"pool_setting": "task-only", "ratio": 0.5, "selection_id": [f"s{i // 2}" for i in range(n)],
                          "amplification": np.arange(n, dtype=float)})
    cells["gain"] = cells.amplification * 0.1 + rng.normal(0, 0.05, n)
    small = cells.iloc[: MIN_POINTS - 1].assign(ratio=0.25)
    out = grouped_correlation(pd.concat([cells, small]), "amplification", "gain", n_boot=300)
    assert len(out) == 1 and out.n.iloc[0] == n and out.n_selections.iloc[0] == n // 2
    row = out.iloc[0]
    assert row.spearman > 0.8 and row.lo <= row.spearman <= row.hi and row.lo > 0
