"""Recall's ranking from per-feature subset statistics (no model): token-level lift is free of the
length confound that per-example frequency has."""

import numpy as np
import pandas as pd
import pytest

from igds.method.recall import PAPER_RECALL, RecallConfig, compute_recall


def stats(rows: dict[int, tuple[int, int]]) -> pd.DataFrame:
    """feature -> (examples it fires on, tokens it fires on) as ``ActivationStore.feature_stats`` gives."""
    return pd.DataFrame({"feature": list(rows), "n_examples": [r[0] for r in rows.values()],
                         "n_active": [r[1] for r in rows.values()], "sum_act": [float(r[1]) for r in rows.values()],
                         "max_act": 1.0, "mean_act_firing": 1.0})


def density_example(density: float, n_examples: int, length: int, rng) -> tuple[int, int]:
    """A feature firing independently on ``density`` of tokens of ``n_examples`` examples of ``length``."""
    fires = rng.random((n_examples, length)) < density
    return int(fires.any(1).sum()), int(fires.sum())


def test_token_lift_ignores_length_while_example_frequency_follows_it():
    rng = np.random.default_rng(0)
    n_probe, n_ref, long_, short = 256, 512, 132, 72
    # feature 1: the same 1% token density everywhere, probe examples are just longer
    # feature 2: a task feature, 3% of probe tokens vs 0.3% of reference tokens
    probe = stats({1: density_example(0.01, n_probe, long_, rng), 2: density_example(0.03, n_probe, long_, rng)})
    ref = stats({1: density_example(0.01, n_ref, short, rng), 2: density_example(0.003, n_ref, short, rng)})
    args = (probe, n_probe, n_probe * long_, ref, n_ref, n_ref * short)
    token = compute_recall(*args, RecallConfig(min_freq=0.0, min_tok_freq=0.0, k_recall=1)).set_index("feature")
    example = compute_recall(*args, RecallConfig(frequency="example", min_freq=0.0, k_recall=2)).set_index("feature")
    # per-example frequency: the length-only feature "fires on" most task examples and looks task-specific
    assert example.loc[1, "freq_task"] > 0.6 and example.loc[1, "lift"] > 1.3
    # token lift: the length-only feature is ~1, the task feature ~10, and only the task feature is recalled
    assert token.loc[1, "lift"] == pytest.approx(1.0, abs=0.25)
    assert token.loc[2, "lift"] > 5
    assert token.is_candidate.to_dict() == {1: False, 2: True}


def test_guards_ranking_and_paper_preset():
    probe = stats({1: (256, 30_000), 2: (200, 600), 3: (10, 50), 4: (150, 400)})
    ref = stats({1: (512, 30_000), 2: (5, 10), 4: (100, 300)})
    args = (probe, 256, 33_000, ref, 512, 36_000)
    out = compute_recall(*args, RecallConfig(min_freq=0.05, min_tok_freq=0.002)).set_index("feature")
    assert not out.loc[1, "is_candidate"]  # dense on reference text (> 50% of its tokens): always-on guard
    assert not out.loc[3, "is_candidate"]  # fires on 4% of probe examples: below min_freq
    assert out.loc[2, "rank"] == 1 and out.loc[4, "rank"] == 2  # ranked by token lift
    paper = compute_recall(*args, PAPER_RECALL).set_index("feature")
    # the literal reading: per-example frequency >= 0.2, ranked by it, no dense guard
    assert paper.loc[1, "rank"] == 1 and paper.loc[2, "rank"] == 2 and not paper.loc[3, "is_candidate"]
    with pytest.raises(ValueError, match="frequency"):
        RecallConfig(frequency="sample")
