"""The noisy pool: a task's training pool with a share of its items corrupted the way real scraped data is, a
positive control with something for a selection method to find.

A seeded, content-keyed choice of ``share`` of the task's ``train`` items is replaced by a corrupted version of
each; the rest stay as they are, so the pool keeps its size and no item appears twice. The corruptions, by task:

- ``swapped`` (every task): the item's prompt with another train item's response;
- ``cut_answer`` (math): the worked answer cut before its final ``####`` line (no final answer);
- ``untranslated`` (translation): the source text copied as the "translation";
- ``cut_synopsis`` (summarization): the synopsis cut mid-sentence (its first half of the words).

Each chosen item gets the task's corruptions in turn; where one cannot apply (a one-word synopsis, an answer with no
``####`` line) the item is swapped instead. A corrupted item is a new record (its own content id) with the
original's source and meta, and nothing on it says it is corrupted: the labels (:class:`Corruption`) are kept apart,
in their own store table, which only the report reads. Pure standard library.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from igds.data.records import Example, example_id

NOISY_SPLIT = "noisy"
"""The split of a corrupted item (a member of the noisy pool only)."""
SWAPPED, CUT_ANSWER, UNTRANSLATED, CUT_SYNOPSIS = "swapped", "cut_answer", "untranslated", "cut_synopsis"
CORRUPTIONS = {"math": (SWAPPED, CUT_ANSWER), "translation": (SWAPPED, UNTRANSLATED),
               "summarization": (SWAPPED, CUT_SYNOPSIS)}
"""Each shipped task's corruption types; any other task gets ``swapped`` only."""


@dataclass(frozen=True)
class NoiseSpec:
    """How a noisy pool is made: ``share`` of the train items corrupted, chosen with ``seed``."""

    share: float = 0.3
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.share < 1:
            raise ValueError(f"share must be in (0, 1), not {self.share}")


@dataclass(frozen=True)
class Corruption:
    """The label of one corrupted pool item: what was done (``kind``) to which train item (``source_id``)."""

    example_id: str
    kind: str
    source_id: str


@dataclass(frozen=True)
class NoisyPool:
    """A task's noisy pool: ``members`` (the kept train items and the corrupted ones, in train order) and the
    ``labels`` of the corrupted ones."""

    members: list[Example]
    labels: list[Corruption]

    @property
    def corrupted(self) -> list[Example]:
        """The corrupted members, in the order of their labels."""
        by_id = {e.id: e for e in self.members}
        return [by_id[c.example_id] for c in self.labels]


def corruption_kinds(task: str) -> tuple[str, ...]:
    return CORRUPTIONS.get(task, (SWAPPED,))


def _rank(seed: int, example: Example) -> str:
    return hashlib.sha256(f"noise\0{seed}\0{example.id}".encode()).hexdigest()


def cut_answer(response: str) -> str | None:
    """The worked answer without its final ``####`` line; None when it has none or nothing precedes it."""
    lines = response.rstrip().split("\n")
    last = max((i for i, line in enumerate(lines) if line.lstrip().startswith("####")), default=None)
    if last is None:
        return None
    kept = "\n".join(lines[:last]).rstrip()
    return kept or None


def cut_synopsis(response: str) -> str | None:
    """The synopsis cut mid-sentence: its first half of the words (at least one dropped); None under 4 words."""
    words = response.split()
    if len(words) < 4:
        return None
    return " ".join(words[: len(words) // 2])


def _corrupt(kind: str, item: Example, donor: Example) -> str | None:
    if kind == SWAPPED:
        return donor.response if donor.response.strip() != item.response.strip() else None
    if kind == CUT_ANSWER:
        return cut_answer(item.response)
    if kind == UNTRANSLATED:
        return item.prompt if item.prompt.strip() != item.response.strip() else None
    if kind == CUT_SYNOPSIS:
        return cut_synopsis(item.response)
    raise ValueError(f"unknown corruption {kind!r}")


def build_noisy_pool(task: str, train: Sequence[Example], spec: NoiseSpec = NoiseSpec()) -> NoisyPool:
    """The noisy pool of ``task`` from its ``train`` items (any order; the result does not depend on it).

    Raises:
        ValueError: fewer than 2 train items (nothing to swap with).
    """
    if len(train) < 2:
        raise ValueError(f"a noisy pool of {task!r} needs at least 2 train items, got {len(train)}")
    ordered = sorted(train, key=lambda e: (_rank(spec.seed, e), e.id))
    n = round(spec.share * len(ordered))
    kinds = corruption_kinds(task)
    replaced: dict[str, Example] = {}
    labels: list[Corruption] = []
    taken = {e.id for e in train}
    for k, item in enumerate(ordered[:n]):
        donor = ordered[(k + len(ordered) // 2) % len(ordered)]  # another item: a realistic mismatched pair
        kind = kinds[k % len(kinds)]
        response = _corrupt(kind, item, donor)
        if response is None and kind != SWAPPED:
            kind, response = SWAPPED, _corrupt(SWAPPED, item, donor)
        if response is None:
            continue
        new_id = example_id(item.prompt, response)
        if new_id in taken:  # the corrupted text is already a pool item: no new member
            continue
        taken.add(new_id)
        replaced[item.id] = dataclasses.replace(item, id=new_id, split=NOISY_SPLIT, response=response)
        labels.append(Corruption(new_id, kind, item.id))
    members = [replaced.get(e.id, e) for e in sorted(train, key=lambda e: e.id)]
    return NoisyPool(members=members, labels=labels)
