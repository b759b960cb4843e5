"""The pool limit and the canonical order: per task, nested, stable, keyed by content as the task shows it."""

import hashlib

import pandas as pd

from igds.data.corpus import load_corpus
from igds.data.tasks import get_task
from igds.method.pool import limit_frame, shown_key


def corpus_pool(task="summarization"):
    rows = [{"example_id": e.id, "task": e.task, "prompt": e.prompt, "response": e.response}
            for e in load_corpus([task, "general"]) if e.split == "train"]
    pool = pd.DataFrame(rows)
    pool["shown_key"] = [shown_key(t, c, r) for t, c, r in zip(pool.task, pool.prompt, pool.response, strict=True)]
    return pool


def test_limit_is_per_task_nested_and_independent_of_order():
    pool = corpus_pool()
    small, large = limit_frame(pool, 50), limit_frame(pool, 120)
    assert (small.task == "summarization").sum() == 50 and (small.task == "general").sum() == 50
    assert set(small.example_id) < set(large.example_id)
    shuffled = limit_frame(pool.sample(frac=1.0, random_state=3), 50)
    assert set(shuffled.example_id) == set(small.example_id)
    assert limit_frame(pool, 0) is pool


def test_shown_key_hashes_the_example_as_its_task_shows_it():
    spec = get_task("translation")
    want = hashlib.sha256(f"translation\0{spec.instruction}\n\nDer Hund.\0The dog.".encode()).hexdigest()[:16]
    assert shown_key("translation", "Der Hund.", "The dog.") == want
    # records without a registered task (the general set) are shown as they are
    assert shown_key("general", "hello", "world") == hashlib.sha256(b"general\0hello\0world").hexdigest()[:16]
    assert shown_key("summarization", "x", "y") != shown_key("translation", "x", "y")
