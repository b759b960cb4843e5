"""The candidate pool: which examples a selection ranks, defined once.

A task's pool for a setting is its ``train`` members (``task-only``, the paper's setting) plus every
``general`` record (``mixed``, the curation setting: off-task data to reject). Pool rows come in one
canonical order, by :func:`shown_key` (a hash of the example as its task shows it to the model); every
ranking breaks ties in that order and the random baseline draws over it. A pool limit ``n`` keeps
the ``n`` examples of each task whose key hashes smallest: the choice depends only on content, is the
same on every machine, and a smaller pool is contained in a larger one. The key equals the example
ids of releases before records became task-independent, so their pools and selections are kept.

IGDS scoring, every baseline, the ratio's ``n_pool`` and a selection's lineage fingerprint all read
the pool through :func:`pool_frame`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import fields
from types import SimpleNamespace

import pandas as pd

from igds.data.corpus import corpus_fingerprint
from igds.data.noise import NoiseSpec, NoisyPool, build_noisy_pool
from igds.data.records import Example
from igds.data.tasks import record_task
from igds.scope import PoolSpec


def shown_key(task: str, content: str, response: str) -> str:
    """The canonical order key of a pool example: a hash of the example as ``task`` shows it to the
    model (task, rendered user message, response); the example ids of earlier releases."""
    message = record_task(task).format_prompt(content)
    return hashlib.sha256(f"{task}\0{message}\0{response}".encode()).hexdigest()[:16]


def ensure_noisy_pool(store, task: str, spec: NoiseSpec = NoiseSpec()) -> NoisyPool | None:
    """Build and store the task's noisy pool (:mod:`igds.data.noise`) unless the stored one was built from the same
    train items and spec; returns the new pool, or None when the stored one stands."""
    df = store.task_examples(task, "train")
    train = [Example(r.id, r.task, r.source, r.split, r.prompt, r.response, json.loads(r.meta or "{}"))
             for r in df.itertuples()]
    key = hashlib.sha256(json.dumps([dataclasses.asdict(spec), sorted(e.id for e in train)]).encode()).hexdigest()
    if store.noisy_build_key(task) == key:
        return None
    noisy = build_noisy_pool(task, train, spec)
    labels = pd.DataFrame([dataclasses.asdict(c) for c in noisy.labels], columns=["example_id", "kind", "source_id"])
    store.write_noisy_pool(task, key, noisy.corrupted, [e.id for e in noisy.members], labels)
    return noisy


def limit_frame(pool: pd.DataFrame, n: int) -> pd.DataFrame:
    """The pool limit on a frame with ``task`` and ``shown_key``: the ``n`` examples of each task whose
    ``sha256(shown_key)`` is smallest.

    Args:
        pool: pool rows (any order).
        n: examples to keep per task; 0 keeps the pool unchanged.

    Returns:
        the kept rows in their original order.
    """
    if n <= 0 or pool.empty:
        return pool
    digest = pool.shown_key.map(lambda k: hashlib.sha256(k.encode()).hexdigest())
    return pool[digest.groupby(pool.task).rank(method="first") <= n]


def pool_frame(store, task: str, pool: PoolSpec, run_id: str | None = None) -> pd.DataFrame:
    """The pool of ``task`` for a :class:`~igds.scope.PoolSpec` (setting and limit) from the store's examples.

    Args:
        store: the activation store.
        task: task name.
        pool: its setting (``task-only`` or ``mixed``) and limit per task (0: all).
        run_id: an extraction run; adds ``n_tokens``/``n_positions`` and checks that the run covers
            every pool example (a score over a partly extracted pool would silently shrink it); examples the run
            dropped for their length (never cut) leave the pool.

    Returns:
        example_id, task, source, split, prompt, response, shown_key[, n_tokens, n_positions], in the
        canonical order (ascending ``shown_key``) that breaks every tie of a ranking.

    Raises:
        ValueError: for an unknown setting, or pool examples the run has not extracted.
    """
    setting = pool.setting
    if setting == "noisy":
        ensure_noisy_pool(store, task)
        frame = store.noisy_pool_examples(task)
    else:
        frame = store.pool_examples(task, setting == "mixed")
    frame["shown_key"] = [shown_key(t, c, r) for t, c, r in zip(frame.task, frame.prompt, frame.response, strict=True)]
    frame = limit_frame(frame, pool.limit).sort_values("shown_key").reset_index(drop=True)
    if run_id is None:
        return frame
    frame = frame[~frame.example_id.isin(store.run_dropped(run_id))].reset_index(drop=True)  # over the length cap
    stats = store.token_counts(run_id, list(frame.example_id))
    pool = frame.merge(stats, on="example_id", how="left")
    missing = int(pool.n_tokens.isna().sum())
    if missing:
        raise ValueError(f"{missing} of {len(pool)} examples of the {setting} pool of {task!r} have no activations "
                         f"in extraction run {run_id}; extract them first ('igds extract --tasks {task}')")
    return pool


def pool_fingerprint(example_ids) -> str:
    """sha256 over the sorted example ids (the corpus fingerprint of the pool's examples)."""
    return corpus_fingerprint(SimpleNamespace(id=i) for i in example_ids)


def pool_records(pool: pd.DataFrame) -> list[Example]:
    """The pool rows as :class:`Example` records (what the NLL and ZIP baselines read)."""
    names = [f.name for f in fields(Example) if f.name != "meta"]
    rows = pool.rename(columns={"example_id": "id"})
    return [Example(**{k: r[k] for k in names}) for r in rows.to_dict("records")]

