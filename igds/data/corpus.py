"""The shipped demo corpus and the pools built from it, plus the record API re-exported.

``load_corpus`` reads ``data/corpus/*.jsonl.gz`` (written by ``scripts/build_demo_corpus.py``);
``probe_set``/``dev_set``/``test_set``/``task_pool``/``reference_set`` cut the splits the method
needs (see ``igds-method.md``); ``test_sample`` is the seeded, source-stratified evaluation sample.
The record schema, file readers (JSONL, JSONL.gz, Parquet, CSV) and the ``datasets`` loader live in
:mod:`igds.data.records` and are re-exported here.

Only the standard library is imported at module level (pyarrow and datasets on demand), so
``igds data summary`` runs in well under a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from igds import settings
from igds.data.records import (
    GENERAL,
    SPLITS,
    CorpusError,
    Example,
    Membership,
    MembershipIndex,
    Record,
    example_id,
    known_tasks,
    load_hf_dataset,
    read_records,
    validate_record,
    write_records,
)
from igds.scope import POOL_SETTINGS, check_pool_setting

__all__ = [
    "GENERAL", "POOL_SETTINGS", "REFERENCE_SPLIT", "SPLITS", "CorpusError", "Example", "Membership", "Record",
    "check_pool_setting", "corpus_fingerprint", "corpus_summary", "dev_set", "example_id", "format_summary",
    "known_tasks", "load_corpus", "load_hf_dataset", "probe_set", "read_records", "reference_set",
    "reserve_reference", "resolve_corpus_dir", "source_label", "stratified_sample", "task_pool", "test_sample",
    "test_set", "validate_record", "write_records",
]  # fmt: skip

def resolve_corpus_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the shipped corpus (``<IGDS_DATA>/corpus`` unless given)."""
    return Path(path) if path is not None else settings.data_dir() / "corpus"


@lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int, size: int) -> tuple[Example, ...]:
    # Keyed by mtime and size so an edited file is re-read; tuples keep the cache immutable.
    return tuple(read_records(path))


def _split_rank(split: str) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def load_corpus(
    tasks: Iterable[str] | None = None,
    splits: Iterable[str] | None = None,
    corpus_dir: str | os.PathLike[str] | None = None,
) -> list[Example]:
    """Load the shipped corpus (every ``*.jsonl.gz`` in the corpus folder).

    Args:
        tasks: Keep only these tasks (``general`` included); None keeps all.
        splits: Keep only these splits; None keeps all.
        corpus_dir: Folder to read instead of the default.

    Returns:
        Examples sorted by task, split (probe, dev, train, test), source and id. Content used by two
        tasks comes back once per task, sharing one record (see ``MembershipIndex``).

    Raises:
        CorpusError: If the folder has no corpus files, a file is invalid, or an id repeats with other
            content or within one task.
    """
    folder = resolve_corpus_dir(corpus_dir)
    files = sorted(folder.glob("*.jsonl.gz"))
    if not files:
        raise CorpusError(f"{folder}: no *.jsonl.gz corpus files (run scripts/build_demo_corpus.py)")
    task_set = set(tasks) if tasks is not None else None
    split_set = set(splits) if splits is not None else None
    out: list[Example] = []
    index = MembershipIndex()
    for f in files:
        st = f.stat()
        for ex in _read_cached(str(f), st.st_mtime_ns, st.st_size):
            ex = index.add(ex, str(f), f.name)
            if (task_set is None or ex.task in task_set) and (split_set is None or ex.split in split_set):
                out.append(ex)
    out.sort(key=lambda e: (e.task, _split_rank(e.split), e.source, e.id))
    return out


def _task_split(task: str, split: str, corpus_dir: str | os.PathLike[str] | None) -> list[Example]:
    if task not in known_tasks():
        raise CorpusError(f"unknown task {task!r}; known: {', '.join(known_tasks())}")
    return load_corpus([task], [split], corpus_dir)


def probe_set(task: str, corpus_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """The task's ``probe`` split (feature recall)."""
    return _task_split(task, "probe", corpus_dir)


def dev_set(task: str, corpus_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """The task's ``dev`` split (interventions)."""
    return _task_split(task, "dev", corpus_dir)


def test_set(task: str, corpus_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """The task's ``test`` split (evaluation only)."""
    return _task_split(task, "test", corpus_dir)


def _largest_remainder(sizes: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over strata in proportion to their sizes: floors first, then one more item to the
    strata with the largest remainders (ties by stratum name), so each gets its share ±1."""
    total = sum(sizes.values())
    want = {s: n * size / max(total, 1) for s, size in sizes.items()}
    quota = {s: int(w) for s, w in want.items()}
    for s in sorted(want, key=lambda s: (-(want[s] - quota[s]), s))[: n - sum(quota.values())]:
        quota[s] += 1
    return quota


def stratified_sample(
    examples: Sequence[Example],
    n: int,
    seed: int = 0,
    key: Callable[[Example], str] | None = None,
) -> list[Example]:
    """A seeded sample of ``n`` examples in which every stratum keeps its share of the whole.

    Each stratum (by default the example's ``source``) gets its proportional share of ``n`` by the
    largest-remainder rule (within one item of ``n * size / total``); inside a stratum the items are a
    seeded shuffle of its examples sorted by id, cut to the quota, so the draw depends neither on the
    input order nor on the other strata, and a larger ``n`` mostly extends a smaller one.

    Args:
        examples: The examples to sample from (ids unique).
        n: Sample size; ``n >= len(examples)`` returns every example in the given order.
        seed: Sampling seed.
        key: Stratum of an example; default its ``source``.

    Returns:
        The sample, strata in name order, each in its draw order.

    Raises:
        ValueError: If ``n`` is negative.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n >= len(examples):
        return list(examples)
    key = key or (lambda ex: ex.source)
    strata: dict[str, list[Example]] = {}
    for ex in sorted(examples, key=lambda e: e.id):
        strata.setdefault(str(key(ex)), []).append(ex)
    quota = _largest_remainder({s: len(v) for s, v in strata.items()}, n)
    out: list[Example] = []
    for name in sorted(strata):
        members = list(strata[name])
        random.Random(f"{seed}:{name}").shuffle(members)  # str seeds are hashed deterministically
        out += members[: quota[name]]
    return out


def test_sample(task: str, n: int, seed: int = 0, corpus_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """The evaluation examples of a task: a seeded sample of its test split, stratified by source.

    The test split is sorted by source, so its head is one source only (translation's first 100 items
    are all French); evaluations therefore take this sample instead.

    Args:
        task: Task name.
        n: Sample size; 0 (or at least the split's size) gives the whole test split.
        seed: Sampling seed.
        corpus_dir: Folder to read instead of the default.

    Returns:
        The examples (see :func:`stratified_sample`).
    """
    examples = test_set(task, corpus_dir)
    return stratified_sample(examples, n, seed) if n else examples


# pytest would otherwise try to collect these public helpers as tests.
test_set.__test__ = False  # type: ignore[attr-defined]
test_sample.__test__ = False  # type: ignore[attr-defined]


def source_label(example: Example) -> str:
    """A readable stratum of an example: its source, with the source language when the record has one
    (``ding (de)``, ``debian-ddtp (fr)``), for per-source tables.

    Args:
        example: A record.

    Returns:
        The label.
    """
    lang = (example.meta or {}).get("src_lang")
    return f"{example.source} ({lang})" if lang else example.source


def task_pool(task: str, setting: str = "mixed", corpus_dir: str | os.PathLike[str] | None = None) -> list[Example]:
    """Candidate training pool of a task.

    Args:
        task: Task name.
        setting: ``task-only`` (the task's train split) or ``mixed`` (plus the ``general`` train records,
            so selection has off-task data to reject; each record keeps its ``source``; the general
            ``reference`` split is never in a pool).
        corpus_dir: Folder to read instead of the default.

    Returns:
        The pool examples.

    Raises:
        ValueError: For an unknown setting.
    """
    check_pool_setting(setting)
    pool = _task_split(task, "train", corpus_dir)
    if setting == "mixed" and task != GENERAL:
        pool += load_corpus([GENERAL], ["train"], corpus_dir)
    return pool


REFERENCE_SPLIT = "reference"


def reserve_reference(general: Sequence[Example], n: int, seed: int = 0) -> list[Example]:
    """Mark ``n`` general records as the ``reference`` split, stratified by source (the corpus builder).

    Reference records are the contrast set of feature recall and never enter a candidate pool, so a
    feature's lift is not measured on the very examples a mixed pool must reject.

    Args:
        general: The general records (split ``train``).
        n: How many to reserve (shares per source proportional to its size, largest remainders first).
        seed: Sampling seed.

    Returns:
        The same records (sorted by id), ``n`` of them with split ``reference``.
    """
    by_source: dict[str, list[Example]] = {}
    for ex in sorted(general, key=lambda e: e.id):
        by_source.setdefault(ex.source, []).append(ex)
    quota = _largest_remainder({s: len(v) for s, v in by_source.items()}, n)
    rng = random.Random(seed)
    picked = {ex.id for s in sorted(by_source) for ex in rng.sample(by_source[s], min(quota[s], len(by_source[s])))}
    return [dataclasses.replace(ex, split=REFERENCE_SPLIT) if ex.id in picked else ex
            for ex in sorted(general, key=lambda e: e.id)]


def reference_set(
    n: int = 512,
    seed: int = 0,
    task: str | None = None,
    corpus_dir: str | os.PathLike[str] | None = None,
) -> list[Example]:
    """The contrast set for feature recall: general records of the ``reference`` split, which no
    candidate pool contains (a seeded sample of ``n`` when there are more).

    Args:
        n: Sample size (all reference records if fewer exist).
        seed: Sampling seed.
        task: The task the contrast is for; records of that task are never included.
        corpus_dir: Folder to read instead of the default.

    Returns:
        Up to ``n`` reference examples, sorted by id.
    """
    pool = [ex for ex in load_corpus([GENERAL], [REFERENCE_SPLIT], corpus_dir) if ex.task != task]
    pool.sort(key=lambda e: e.id)
    picked = pool if n >= len(pool) else random.Random(seed).sample(pool, n)
    return sorted(picked, key=lambda e: e.id)


def corpus_summary(corpus_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Counts of the shipped corpus per task and split.

    Args:
        corpus_dir: Folder to read instead of the default.

    Returns:
        Rows ``{"task", "split", "n", "sources": {source: count}}``.
    """
    groups: dict[tuple[str, str], Counter[str]] = {}
    for ex in load_corpus(corpus_dir=corpus_dir):
        groups.setdefault((ex.task, ex.split), Counter())[ex.source] += 1
    return [
        {"task": t, "split": s, "n": sum(c.values()), "sources": dict(sorted(c.items()))}
        for (t, s), c in sorted(groups.items(), key=lambda kv: (kv[0][0] == GENERAL, kv[0][0], _split_rank(kv[0][1])))
    ]


def _format_sources(sources: dict[str, int]) -> str:
    # Families such as "evals:<task>" collapse into one entry so a row fits on a line.
    families: dict[str, list[int]] = {}
    for name, count in sources.items():
        families.setdefault(name.split(":")[0] if ":" in name else name, []).append(count)
    parts = []
    for name, counts in families.items():
        label = f"{name}:* ({len(counts)} sets)" if len(counts) > 1 or name not in sources else name
        parts.append(f"{label} {sum(counts)}")
    return ", ".join(parts)


def format_summary(rows: list[dict[str, Any]]) -> str:
    """Render :func:`corpus_summary` rows as a plain text table with a total line."""
    header = ("task", "split", "n", "sources")
    body = [(r["task"], r["split"], str(r["n"]), _format_sources(r["sources"])) for r in rows]
    body.append(("total", "", str(sum(r["n"] for r in rows)), ""))
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(3)]
    lines = []
    for row in [header, *body]:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1]), row[2].rjust(widths[2]), row[3]]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    return "\n".join(lines)


def corpus_fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the sorted example ids: identifies a set of examples regardless of order."""
    return hashlib.sha256("\n".join(sorted(ex.id for ex in examples)).encode()).hexdigest()
