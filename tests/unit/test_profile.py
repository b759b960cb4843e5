"""Selection profiles on a hand-made pool: every share is the one counted by hand."""

import numpy as np
import pandas as pd
import pytest

from igds.experiment.profile import POOL_ROW, profile_frame, selection_profile

POOL = pd.DataFrame({
    "example_id": ["a", "b", "c", "d", "e", "f"],
    "task": ["math", "math", "math", "general", "general", "math"],
    "source": ["gsm", "gsm", "mawps", "evals", "evals", "gsm"],
    "n_tokens": [10, 20, 30, 40, 50, 60],
    "frs": [0.0, 1.0, 2.0, 0.0, 3.0, 4.0],
})
LABELS = pd.DataFrame({"example_id": ["b", "c", "f"], "kind": ["swapped", "cut_answer", "swapped"]})


def test_a_profile_counts_what_it_says():
    p = selection_profile("x", ["a", "b", "d", "f"], POOL, "math", LABELS)
    assert p["n"] == 4 and p["tokens"] == 130 and p["mean_tokens"] == 32.5
    assert p["task_share"] == 0.75 and p["frs_zero_share"] == 0.5
    assert p["top_source"] == "gsm" and p["top_source_share"] == 0.75 and p["sources"]["evals"] == 0.25
    assert p["corrupted_share"] == 0.5 and p["corrupted_swapped"] == 0.5 and p["corrupted_cut_answer"] == 0.0
    # FRS rises with tokens here but for d: 0, 1, 0, 4 against 10, 20, 40, 60
    assert p["spearman_frs_tokens"] == pytest.approx(pd.Series([0, 1, 0, 4.0]).corr(pd.Series([10, 20, 40, 60.0]),
                                                                                   method="spearman"))


def test_the_pool_row_comes_first_and_a_clean_pool_has_no_corruption():
    df = profile_frame(POOL, {"igds": ["e", "f"], "random": ["a", "c"]}, "math")
    assert list(df.method) == [POOL_ROW, "igds", "random"]
    assert df.n.tolist() == [6, 2, 2] and df.corrupted_share.isna().all()
    assert np.isnan(df.spearman_frs_tokens.iloc[1])  # two items: no correlation


def test_an_id_outside_the_pool_is_refused():
    with pytest.raises(ValueError, match="not in the pool"):
        selection_profile("x", ["a", "zz"], POOL, "math")
