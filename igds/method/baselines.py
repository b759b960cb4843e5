"""The baselines IGDS is compared with, on the same pool and at the same ratio: Random, Loss, IFD, ZIP,
Longest, Shortest, Full.

Every method returns a :class:`BaselineRanking` (ids best first plus ids that must never be picked), so a
selection of ``n`` examples is always ``ranking.top(n)``. The ranking functions are pure (no store, no
files); only :func:`nll_table` runs a model. :func:`rank_baseline` dispatches on a :class:`BaselineConfig`
through the registry (:func:`get_baseline`), and :attr:`Baseline.needs_nll` / :attr:`Baseline.needs_texts` /
:attr:`Baseline.needs_lengths` tell the caller which inputs to prepare.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from igds.config import ConfigBase
from igds.progress import ProgressFn, null_progress
from igds.ranking import ranked_ids
from igds.scope import STAGE_LENGTH

if TYPE_CHECKING:
    import pandas as pd

    from igds.data.records import Example


@dataclass(frozen=True)
class BaselineRanking:
    """A baseline's verdict on a pool.

    Args:
        method: Registry name of the method.
        order: Selectable example ids, best first (never contains an excluded id).
        scores: The method's own number per id (see each method for its meaning and direction).
        excluded: Ids that must never be selected (e.g. ``IFD >= 1`` or a NaN loss).
    """

    method: str
    order: list[str]
    scores: dict[str, float]
    excluded: frozenset[str] = frozenset()

    def __post_init__(self):
        if len(set(self.order)) != len(self.order):
            raise ValueError(f"{self.method}: ranking order has duplicate ids")
        if self.excluded.intersection(self.order):
            raise ValueError(f"{self.method}: an excluded id appears in the ranking order")

    @property
    def available(self) -> int:
        """How many ids can be selected at most."""
        return len(self.order)

    def top(self, n: int) -> list[str]:
        """The best ``min(n, available)`` ids, best first.

        Args:
            n: Number of examples wanted (>= 0).

        Returns:
            Distinct, never-excluded example ids.
        """
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return list(self.order[:n])


def _ranked(method: str, scores: Mapping[str, float], *, descending: bool,
            excluded: Iterable[str] = ()) -> BaselineRanking:
    """Order ids by score at the ranking resolution, ties by id (:func:`igds.ranking.ranked_ids`), so the
    result depends neither on input order nor on float noise."""
    excl = frozenset(excluded)
    ids = [i for i in scores if i not in excl]
    order = ranked_ids([scores[i] for i in ids], ids, descending=descending)
    return BaselineRanking(method, order, dict(scores), excl)


def random_ranking(example_ids: Iterable[str], seed: int = 0) -> BaselineRanking:
    """Uniform random order, reproducible from ``seed`` and independent of the order of ``example_ids``.

    Args:
        example_ids: The pool.
        seed: RNG seed.

    Returns:
        Ranking whose scores are the uniform draws in [0, 1) (highest first).
    """
    ids = sorted(set(example_ids))  # sort first: the same pool in another order gives the same draw
    draws = np.random.default_rng(seed).random(len(ids))
    return _ranked("random", dict(zip(ids, draws.tolist(), strict=True)), descending=True)


def full_ranking(example_ids: Iterable[str]) -> BaselineRanking:
    """The whole pool (sorted ids, every score 1.0): at any ``n >= |pool|`` it selects everything."""
    return _ranked("full", dict.fromkeys(set(example_ids), 1.0), descending=True)


def _nll_scores(nll_df: pd.DataFrame, column: str) -> dict[str, float]:
    if nll_df["example_id"].duplicated().any():
        raise ValueError("nll table has duplicate example ids")
    return {str(i): float(v) for i, v in zip(nll_df["example_id"], nll_df[column], strict=True)}


def loss_ranking(nll_df: pd.DataFrame) -> BaselineRanking:
    """Highest base-model response NLL first; rows with a NaN NLL are excluded.

    Args:
        nll_df: Table from :func:`nll_table` (``example_id``, ``nll_cond``).

    Returns:
        Ranking with ``scores`` = ``nll_cond``.
    """
    scores = _nll_scores(nll_df, "nll_cond")
    bad = [i for i, v in scores.items() if not math.isfinite(v)]
    return _ranked("loss", scores, descending=True, excluded=bad)


def ifd_scores(nll_df: pd.DataFrame) -> dict[str, float]:
    """Instruction-following difficulty per example: ``IFD = s(A|Q) / s(A) = nll_cond / nll_uncond``.

    NaN where either NLL is missing or ``nll_uncond <= 0``.
    """
    cond, uncond = _nll_scores(nll_df, "nll_cond"), _nll_scores(nll_df, "nll_uncond")
    return {i: c / uncond[i] if math.isfinite(c) and math.isfinite(uncond[i]) and uncond[i] > 0 else math.nan
            for i, c in cond.items()}


def ifd_ranking(nll_df: pd.DataFrame) -> BaselineRanking:
    """Cherry-LLM's IFD: keep the highest ``s(A|Q)/s(A)``; ``IFD >= 1`` (the prompt does not help) is excluded.

    Args:
        nll_df: Table from :func:`nll_table` (``example_id``, ``nll_cond``, ``nll_uncond``).

    Returns:
        Ranking with ``scores`` = IFD; NaN and ``IFD >= 1`` ids are in ``excluded``.
    """
    scores = ifd_scores(nll_df)
    bad = [i for i, v in scores.items() if not math.isfinite(v) or v >= 1.0]
    return _ranked("ifd", scores, descending=True, excluded=bad)


# ---------------------------------------------------------------------------------------------------------
# ZIP (Entropy Law, arXiv 2407.06645)


class _ZlibStream:
    """The selected texts as one zlib stream; prices a candidate appended at its end.

    Each added text is followed by a sync flush, so a candidate's cost is the bytes that compressing it
    (with the stream's 32 KiB window of earlier texts as context) and finishing the stream adds. Copying
    the compressor state is far cheaper than recompressing the selected set for every candidate.
    """

    def __init__(self, level: int = 9):
        self._c = zlib.compressobj(level)
        self.raw = 0
        self.comp = len(self._c.flush(zlib.Z_SYNC_FLUSH))

    def cost(self, data: bytes) -> int:
        c = self._c.copy()
        return len(c.compress(data)) + len(c.flush(zlib.Z_FINISH))

    def add(self, data: bytes) -> None:
        self.comp += len(self._c.compress(data)) + len(self._c.flush(zlib.Z_SYNC_FLUSH))
        self.raw += len(data)


def example_texts(examples: Iterable[Example]) -> dict[str, str]:
    """The text ZIP compresses for each example: the user message its task renders, newline, response."""
    from igds.data.tasks import record_task

    return {ex.id: f"{record_task(ex.task).format_prompt(ex.prompt)}\n{ex.response}" for ex in examples}


def zip_ranking(texts: Mapping[str, str], n_select: int, *, k1: int = 10_000, k2: int = 200, k3: int = 100,
                level: int = 9, progress: ProgressFn | None = None) -> BaselineRanking:
    """ZIP: greedily grow a selection whose zlib compression ratio (raw / compressed) stays lowest.

    Each round (as in the paper): **stage 1** takes the ``k1`` unselected texts with the lowest stored
    ratio (initially each text's own ratio); **stage 2** prices each of them appended to the selected
    stream, refreshes their stored ratio and keeps the ``k2`` that give the lowest selected-set ratio;
    **stage 3** picks ``k3`` of those one at a time, re-pricing against the selection including the
    picks so far. Unlike the reference code, stage 3 prices against the whole selected stream rather
    than the round's picks alone, and candidates stage 3 passes over stay eligible. zlib only sees a
    32 KiB window, so redundancy with texts selected long before is invisible, as in the paper; exact
    duplicates are therefore removed explicitly first (the smallest id of each group is kept).

    Args:
        texts: ``{example_id: text}`` (see :func:`example_texts`).
        n_select: How many texts the greedy selection picks.
        k1: Stage-1 candidates per round.
        k2: Stage-2 survivors per round.
        k3: Texts selected per round.
        level: zlib compression level.
        progress: ``progress(done, total, message)``.

    Returns:
        Ranking: the ``n_select`` greedy picks in pick order, then the remaining unique texts by stored
        ratio, then exact duplicates. ``scores`` is each text's last computed marginal ratio (raw bytes
        over the compressed bytes it adds; lower = more new information).
    """
    if min(k1, k2, k3) < 1 or not k1 >= k2 >= k3:
        raise ValueError(f"ZIP needs k1 >= k2 >= k3 >= 1, got k1={k1}, k2={k2}, k3={k3}")
    if n_select < 0:
        raise ValueError(f"n_select must be >= 0, got {n_select}")
    progress = progress or null_progress
    ids = sorted(texts)
    # A separator keeps neighbouring texts from merging into one token run.
    data = [(texts[i] + "\n").encode("utf-8") for i in ids]
    first: dict[bytes, int] = {}
    unique, dups = [], []
    for idx, d in enumerate(data):
        (dups if d in first else unique).append(idx)
        first.setdefault(d, idx)
    raw = np.array([len(d) for d in data], dtype=np.float64)
    state = np.full(len(ids), np.inf)
    empty = _ZlibStream(level)
    for idx in unique:
        state[idx] = raw[idx] / empty.cost(data[idx])
    stream = _ZlibStream(level)
    chosen: list[int] = []
    remaining = np.zeros(len(ids), dtype=bool)
    remaining[unique] = True
    target = min(n_select, len(unique))

    def price(cands: np.ndarray) -> np.ndarray:
        """Ratio of the selected set with each candidate appended; refreshes the candidates' state."""
        costs = np.array([stream.cost(data[c]) for c in cands], dtype=np.float64)
        state[cands] = raw[cands] / costs
        return (stream.raw + raw[cands]) / (stream.comp + costs)

    while len(chosen) < target:
        pool = np.flatnonzero(remaining)
        n3 = min(k3, target - len(chosen))
        stage1 = pool[np.argsort(state[pool], kind="stable")[:k1]]  # k1 >= k2 >= k3 >= n3: enough left
        stage2 = stage1[np.argsort(price(stage1), kind="stable")[:k2]]
        for _ in range(n3):
            best = stage2[int(np.argmin(price(stage2)))]  # ties: first in stage-2 order, deterministic
            stream.add(data[best])
            chosen.append(int(best))
            remaining[best] = False
            stage2 = stage2[stage2 != best]
        progress(len(chosen), target, f"zip: selected {len(chosen)}/{target}")
    rest = np.flatnonzero(remaining)
    tail = rest[np.argsort(state[rest], kind="stable")].tolist()
    for idx in dups:  # price a duplicate against its twin: the information it adds once both are in
        twin = zlib.compressobj(level, zdict=data[first[data[idx]]])
        state[idx] = raw[idx] / (len(twin.compress(data[idx])) + len(twin.flush()))
    order = [ids[i] for i in chosen + tail + dups]
    return BaselineRanking("zip", order, {ids[i]: float(state[i]) for i in range(len(ids))})


# ---------------------------------------------------------------------------------------------------------
# Longest / Shortest: the length confound on its own


def content_text(text: str) -> str:
    """An :func:`example_texts` text without the task's instruction: the example's content, newline, response.

    The instruction is the same for every record of a task and absent from ``general`` records, so
    counting it would favour task records in a mixed pool for no reason of their own.
    """
    from igds.data.tasks import SEPARATOR, get_task, list_tasks

    instructions = sorted((i for i in (get_task(t).instruction for t in list_tasks()) if i), key=len, reverse=True)
    for instruction in instructions:  # the longest first: one instruction may begin with another
        if text.startswith(instruction + SEPARATOR):
            return text[len(instruction) + len(SEPARATOR):]
    return text


def content_length(text: str) -> int:
    """Length of a text's content and response without template or instruction, in non-whitespace
    characters: a tokenizer-free proxy of its token count that spacing and line breaks do not move.

    Args:
        text: An :func:`example_texts` text.

    Returns:
        The count.
    """
    return sum(not ch.isspace() for ch in content_text(text))


def length_ranking(lengths: Mapping[str, float], *, longest: bool) -> BaselineRanking:
    """Rank a pool by length alone: the most (``longest``) or the fewest content tokens first.

    Args:
        lengths: ``{example_id: length}`` (content tokens, or :func:`content_length` without a tokenizer).
        longest: most first (the ``longest`` baseline) or fewest first (``shortest``).

    Returns:
        Ranking with ``scores`` = the lengths; equal lengths in id order.
    """
    return _ranked("longest" if longest else "shortest", {i: float(v) for i, v in lengths.items()},
                   descending=longest)


# ---------------------------------------------------------------------------------------------------------
# Config and registry



@dataclass(frozen=True, kw_only=True)
class BaselineConfig(ConfigBase):
    """Which baseline ranks the pool, and its knobs.

    Args:
        method: a registered baseline (``random``, ``loss``, ``ifd``, ``zip``, ``longest``, ``shortest``,
            ``full``).
        seed: Seed of the ``random`` baseline.
        max_length: Token cap of the NLL encodings (``loss``, ``ifd``).
        batch_tokens: Padded tokens per forward batch for the NLL pass.
        zip_k1: ZIP stage-1 candidates per round.
        zip_k2: ZIP stage-2 survivors per round.
        zip_k3: ZIP texts selected per round.
    """

    method: str = field(default="random", metadata={
        "help": "baseline: random | loss | ifd | zip | longest | shortest | full"})
    seed: int = field(default=0, metadata={"help": "seed of the random baseline"})
    max_length: int = field(default=STAGE_LENGTH.max_length,
                            metadata={"help": "token cap of the NLL encodings (loss, ifd)"})
    batch_tokens: int = field(default=4096, metadata={"help": "padded tokens per forward batch (loss, ifd)"})
    zip_k1: int = field(default=10_000, metadata={"help": "ZIP stage 1: lowest-ratio candidates per round"})
    zip_k2: int = field(default=200, metadata={"help": "ZIP stage 2: survivors priced against the selection"})
    zip_k3: int = field(default=100, metadata={"help": "ZIP stage 3: texts picked greedily per round"})

    def __post_init__(self):
        if self.method not in BASELINES:
            raise ValueError(f"method must be one of {tuple(BASELINES)}, not {self.method!r}")
        if self.max_length < 2 or self.batch_tokens < self.max_length:
            raise ValueError("need max_length >= 2 and batch_tokens >= max_length")
        if not self.zip_k1 >= self.zip_k2 >= self.zip_k3 >= 1:
            raise ValueError("need zip_k1 >= zip_k2 >= zip_k3 >= 1")


RankFn = Callable[..., BaselineRanking]


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: its ranking function and the inputs it needs."""

    name: str
    description: str
    rank: RankFn
    needs_nll: bool = False
    needs_texts: bool = False
    needs_lengths: bool = False  # content tokens per example (the extraction's ``n_tokens``)


BASELINES: dict[str, Baseline] = {}


def register_baseline(baseline: Baseline) -> Baseline:
    """Add a baseline to the registry (names are unique)."""
    if baseline.name in BASELINES:
        raise ValueError(f"baseline {baseline.name!r} is already registered")
    BASELINES[baseline.name] = baseline
    return baseline


def get_baseline(name: str) -> Baseline:
    """Look a baseline up by name; the error lists the known ones."""
    try:
        return BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None


def _restrict(nll_df: pd.DataFrame, example_ids: Sequence[str]) -> pd.DataFrame:
    """The pool's rows; pool ids without a row get NaN (and are therefore excluded)."""
    import pandas as pd

    pool = pd.DataFrame({"example_id": sorted(set(example_ids))})
    return pool.merge(nll_df, on="example_id", how="left")


# Each entry's rank(example_ids, n_select, cfg, texts, nll_df, lengths, progress) adapts one pure function above.
for _baseline in (
    Baseline("random", "uniform sample, seeded",
             lambda ids, n, cfg, texts, nll, lengths, p: random_ranking(ids, cfg.seed)),
    Baseline("loss", "highest base-model response NLL",
             lambda ids, n, cfg, texts, nll, lengths, p: loss_ranking(_restrict(nll, ids)), needs_nll=True),
    Baseline("ifd", "highest s(A|Q)/s(A); IFD >= 1 dropped",
             lambda ids, n, cfg, texts, nll, lengths, p: ifd_ranking(_restrict(nll, ids)), needs_nll=True),
    Baseline("zip", "greedy lowest zlib ratio of the selection",
             lambda ids, n, cfg, texts, nll, lengths, p: zip_ranking({i: texts[i] for i in ids}, n, k1=cfg.zip_k1,
                                                            k2=cfg.zip_k2, k3=cfg.zip_k3, progress=p),
             needs_texts=True),
    Baseline("longest", "most content tokens first (content + response, no template or instruction)",
             lambda ids, n, cfg, texts, nll, lengths, p: length_ranking({i: lengths[i] for i in ids}, longest=True),
             needs_lengths=True),
    Baseline("shortest", "fewest content tokens first (content + response, no template or instruction)",
             lambda ids, n, cfg, texts, nll, lengths, p: length_ranking({i: lengths[i] for i in ids},
                                                                       longest=False), needs_lengths=True),
    Baseline("full", "the whole pool", lambda ids, n, cfg, texts, nll, lengths, p: full_ranking(ids)),
):
    register_baseline(_baseline)


def rank_baseline(cfg: BaselineConfig, example_ids: Sequence[str], n_select: int, *,
                  texts: Mapping[str, str] | None = None, nll_df: pd.DataFrame | None = None,
                  lengths: Mapping[str, float] | None = None, progress: ProgressFn | None = None) -> BaselineRanking:
    """Rank a pool with the baseline ``cfg.method``.

    Args:
        cfg: Method and knobs.
        example_ids: The pool.
        n_select: Intended selection size (ZIP's greedy budget; the other methods rank everything).
        texts: ``{id: text}`` for methods with ``needs_texts`` (see :func:`example_texts`).
        nll_df: :func:`nll_table` output for methods with ``needs_nll``.
        lengths: ``{id: content tokens}`` for methods with ``needs_lengths`` (Longest / Shortest); without
            it they count :func:`content_length` of ``texts``, a tokenizer-free proxy.
        progress: ``progress(done, total, message)``.

    Returns:
        The ranking; select with ``ranking.top(n_select)``.
    """
    b = get_baseline(cfg.method)
    if b.needs_nll and nll_df is None:
        raise ValueError(f"baseline {b.name!r} needs an nll table (see nll_table)")
    if b.needs_texts and (texts is None or any(i not in texts for i in example_ids)):
        raise ValueError(f"baseline {b.name!r} needs a text for every pool example (see example_texts)")
    if b.needs_lengths and lengths is None and texts is not None:
        lengths = {i: content_length(texts[i]) for i in example_ids if i in texts}
    if b.needs_lengths and (lengths is None or any(i not in lengths for i in example_ids)):
        raise ValueError(f"baseline {b.name!r} needs a content length for every pool example")
    return b.rank(list(example_ids), n_select, cfg, texts, nll_df, lengths, progress)

# the registry is the single source of the list the CLI, pages and experiment offer
BASELINE_METHODS = tuple(BASELINES)
