"""Metrics against hand-computed values."""

from __future__ import annotations

import pytest

from igds.data import metrics
from igds.data.metrics import bleu, chrf, exact_match, final_number, format_number, get_metric, rouge_l


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so 2 + 3 = 5\n#### 1,234", 1234.0),
        ("#### 72\nthen some 5 trailing text", 72.0),  # '####' wins over later numbers
        ("The answer is \\boxed{-5}.", -5.0),
        ("\\boxed{2.5} and 9 more", 2.5),
        ("3 apples and 4 pears", 4.0),  # fallback: the last number
        ("I owe -12 dollars", -12.0),
        ("it costs $1,000.50 in total", 1000.5),
        ("no digits here", None),
        ("", None),
    ],
)
def test_final_number(text: str, expected: float | None) -> None:
    assert final_number(text) == expected


def test_format_number() -> None:
    assert format_number(18.0) == "18"
    assert format_number(-2.5) == "-2.5"
    assert format_number(None) == ""


def test_exact_match_per_example_and_mean() -> None:
    preds = ["Step one.\n#### 18", "I think it is 7", "\\boxed{3}", "no idea", "18.0"]
    refs = ["6 * 3 = 18\n#### 18", "7", "#### 4", "#### 1", "#### 18"]
    out = exact_match(preds, refs)
    assert out["metric"] == "exact_match"
    assert out["per_example"] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert out["score"] == pytest.approx(3 / 5)


def test_rouge_l_matches_hand_computed_lcs() -> None:
    # "the cat on the mat" vs "the cat sat on the mat": LCS = 5 tokens, P = 5/5, R = 5/6.
    # F1 = 2PR / (P + R) = 10/11. Second pair: LCS("mat the", "the mat") = 1, P = R = 1/2.
    out = rouge_l(["the cat on the mat", "mat the"], ["the cat sat on the mat", "the mat"])
    assert out["per_example"] == pytest.approx([10 / 11, 0.5])
    assert out["score"] == pytest.approx((10 / 11 + 0.5) / 2)


def test_rouge_l_uses_stemmer_and_target_first() -> None:
    # Stemming makes "cats running" equal "cat runs"; precision/recall differ by argument order.
    assert rouge_l(["cats running"], ["cat runs"])["score"] == pytest.approx(1.0)
    out = rouge_l(["a b c d"], ["a b"])  # prediction longer: P = 2/4, R = 2/2
    assert out["score"] == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_chrf_identical_and_disjoint() -> None:
    same = chrf(["The house is small."], ["The house is small."])
    assert same["score"] == pytest.approx(100.0)
    assert same["per_example"] == pytest.approx([100.0])
    assert chrf(["qqqq zzzz"], ["abcd efgh"])["score"] == pytest.approx(0.0)
    mixed = chrf(["The house is small.", "qqqq"], ["The house is small.", "abcd"])
    assert mixed["per_example"] == pytest.approx([100.0, 0.0])
    assert 0.0 < mixed["score"] < 100.0


def test_bleu_identical_and_disjoint() -> None:
    sentence = "the quick brown fox jumps over the lazy dog"
    assert bleu([sentence], [sentence])["score"] == pytest.approx(100.0)
    assert bleu(["alpha beta gamma delta"], [sentence])["score"] == pytest.approx(0.0)


def test_length_mismatch_and_empty() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        rouge_l(["a", "b"], ["a"])
    assert chrf([], [])["score"] == 0.0
    assert exact_match([], [])["per_example"] == []


def test_registry() -> None:
    assert get_metric("rouge_l") is rouge_l
    assert {"exact_match", "rouge_l", "chrf", "bleu"} <= set(metrics.list_metrics())
    with pytest.raises(ValueError, match="known metrics: bleu, chrf"):
        get_metric("meteor")
    with pytest.raises(ValueError, match="already registered"):
        metrics.register_metric("chrf", chrf)


# -- bounded parsing (issue 23): linear time on any reference or model output ---------------------------------
# A quadratic pattern takes minutes on these (10,000 spaces after "####" took 2.7 s, 300,000 are 900x that); the
# timeout's signal interrupts the regex engine, so a regression fails here instead of hanging the suite.
RUN = 300_000
SLOW = pytest.mark.timeout(5, method="signal", func_only=True)


@SLOW
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("#### " + " " * RUN + "x", None),  # a marker, a long run of blanks, no number
        ("\\boxed{" + " " * RUN + "x", None),
        ("#### " + " " * RUN + "42", 42.0),  # the same run before a number: still found after the marker
        ("\\boxed{" + " " * RUN + "7" + " " * RUN + "}", 7.0),
        (" " * RUN, None),
        ("1 " * (RUN // 2), 1.0),  # digits and spaces: the last number
        ("12," * (RUN // 3) + "x", float("inf")),  # one 200,000-digit number: too large for a float
    ],
)
def test_final_number_is_linear_on_long_runs(text: str, expected: float | None) -> None:
    assert final_number(text) == expected


@SLOW
def test_exact_match_on_long_whitespace_references() -> None:
    answer_far = "#### " + " " * RUN + "42"  # the answer after a long run of blanks
    no_marker_answer = "6 * 7 = 42\n#### " + " " * RUN + "x"  # the marker leads nowhere: the working's last number
    refs = [answer_far, answer_far, no_marker_answer, no_marker_answer, "#### " + " " * RUN + "x"]
    preds = ["#### 42", " " * RUN + "so it is 42", "\\boxed{42}", "#### 41", "#### 42"]
    assert exact_match(preds, refs)["per_example"] == [1.0, 1.0, 1.0, 0.0, 0.0]
