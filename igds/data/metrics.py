"""Offline task metrics: exact match of the final number, ROUGE-L F1, chrF and BLEU.

Every metric takes ``(predictions, references)`` (two equally long lists of strings) and returns
``{"metric": name, "score": corpus_score, "per_example": [float, ...]}``. ``rouge-score`` and
``sacrebleu`` are imported inside the metric functions so that ``import igds.data.metrics`` stays cheap;
only their local functions are used (never ``evaluate.load`` or sacrebleu's downloadable test sets).

Scales follow each metric's convention: exact match and ROUGE-L lie in [0, 1], chrF and BLEU in
[0, 100] (sacrebleu's scale).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

MetricFn = Callable[[Sequence[str], Sequence[str]], dict[str, Any]]

# Possessive quantifiers (``*+``, ``++``) never give back what they matched, so no attempt rescans a run: with
# the greedy ``\s*\$?\s*`` of before, a marker followed by a long run of spaces and no number was retried at
# every split of the run between the two ``\s*`` (quadratic in the run). Parsing is now linear in the text, a
# model output or reference of any length. The matches are unchanged: no run can end where the next part of
# its pattern starts (a space is not ``$``, a digit or comma is not ``.``).
_NUM = r"-?\d[\d,]*+(?:\.\d++)?"
_HASH_RE = re.compile(r"####\s*+\$?\s*+(" + _NUM + ")")
_BOXED_RE = re.compile(r"\\boxed\{\s*+\$?\s*+(" + _NUM + r")\s*+\}")
_ANY_NUM_RE = re.compile(_NUM)


def final_number(text: str) -> float | None:
    r"""Parse the final numeric answer of a math solution.

    Looks for ``#### N`` first (GSM8K style), then ``\boxed{N}``, else takes the last number in the
    text. Thousands separators are removed, so ``1,000`` parses as 1000.

    Args:
        text: Model output or reference solution.

    Returns:
        The number as a float, or None if the text holds no number.
    """
    match = _HASH_RE.search(text) or _BOXED_RE.search(text)
    raw = match.group(1) if match else None
    if raw is None:
        for found in _ANY_NUM_RE.finditer(text):  # the last number, without a list of every number in the text
            raw = found.group()
    # A match starts with a digit and holds only digits, commas and one ".digits": always a float once the
    # commas are gone (a number too large for a float reads as inf).
    return None if raw is None else float(raw.replace(",", ""))


def format_number(value: float | None) -> str:
    """Render a parsed number canonically: integers without a decimal point, "" for None.

    Args:
        value: A number from :func:`final_number`.

    Returns:
        The canonical string, e.g. ``"72"`` or ``"2.5"``.
    """
    if value is None:
        return ""
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def _check(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references")


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Exact match of the final number (prediction and reference both parsed by :func:`final_number`).

    Args:
        predictions: Model outputs.
        references: Reference solutions or bare answers.

    Returns:
        Score in [0, 1] and one 0/1 value per example.
    """
    _check(predictions, references)
    per = []
    for pred, ref in zip(predictions, references, strict=True):
        p, r = final_number(pred), final_number(ref)
        # A small tolerance absorbs float noise such as 0.1 + 0.2; answers are short decimals.
        per.append(1.0 if p is not None and r is not None and abs(p - r) < 1e-6 else 0.0)
    return {"metric": "exact_match", "score": _mean(per), "per_example": per}


@lru_cache(maxsize=1)
def _rouge_scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """ROUGE-L F1 from ``rouge-score`` with the Porter stemmer; the corpus score is the mean.

    Args:
        predictions: Model outputs.
        references: Reference summaries.

    Returns:
        Score in [0, 1] and the F1 of each example.
    """
    _check(predictions, references)
    scorer = _rouge_scorer()
    # rouge-score's argument order is (target, prediction).
    per = [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]
    return {"metric": "rouge_l", "score": _mean(per), "per_example": per}


def _sacrebleu(name: str, predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Corpus score plus per-sentence scores with sacrebleu's ``corpus_<name>``/``sentence_<name>``."""
    _check(predictions, references)
    if not predictions:
        return {"metric": name, "score": 0.0, "per_example": []}
    import sacrebleu

    hyps, refs = list(predictions), list(references)
    sentence, corpus = getattr(sacrebleu, f"sentence_{name}"), getattr(sacrebleu, f"corpus_{name}")
    per = [sentence(h, [r]).score for h, r in zip(hyps, refs, strict=True)]
    return {"metric": name, "score": corpus(hyps, [refs]).score, "per_example": per}


def chrf(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Compute chrF (sacrebleu defaults: character 6-grams, beta 2), corpus-level plus per sentence.

    Args:
        predictions: Model outputs.
        references: Reference translations.

    Returns:
        Score in [0, 100] and the sentence chrF of each example.
    """
    return _sacrebleu("chrf", predictions, references)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Compute BLEU (sacrebleu defaults, 13a tokenizer), corpus-level plus smoothed sentence BLEU.

    Args:
        predictions: Model outputs.
        references: Reference translations.

    Returns:
        Score in [0, 100] and the sentence BLEU of each example.
    """
    return _sacrebleu("bleu", predictions, references)


_METRICS: dict[str, MetricFn] = {
    "exact_match": exact_match,
    "rouge_l": rouge_l,
    "chrf": chrf,
    "bleu": bleu,
}


def register_metric(name: str, fn: MetricFn, *, overwrite: bool = False) -> None:
    """Add a metric to the registry so tasks can refer to it by name.

    Args:
        name: Registry name.
        fn: ``fn(predictions, references)`` returning ``{"metric", "score", "per_example"}``.
        overwrite: Allow replacing an existing metric.

    Raises:
        ValueError: If the name is taken and ``overwrite`` is False.
    """
    if name in _METRICS and not overwrite:
        raise ValueError(f"metric {name!r} is already registered")
    _METRICS[name] = fn


def get_metric(name: str) -> MetricFn:
    """Look a metric up by name.

    Args:
        name: Registry name, e.g. ``"rouge_l"``.

    Returns:
        The metric function.

    Raises:
        ValueError: If no metric has that name (the message lists the known ones).
    """
    try:
        return _METRICS[name]
    except KeyError:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(list_metrics())}") from None


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_METRICS)
