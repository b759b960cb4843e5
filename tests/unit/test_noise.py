"""The noisy pool on the shipped corpus: its share, its kinds, what each corruption does, and that nothing on a pool
item says it is corrupted."""

from collections import Counter

import pytest

from igds.data.corpus import load_corpus
from igds.data.noise import (
    CORRUPTIONS,
    CUT_ANSWER,
    CUT_SYNOPSIS,
    NOISY_SPLIT,
    SWAPPED,
    UNTRANSLATED,
    NoiseSpec,
    build_noisy_pool,
    cut_answer,
    cut_synopsis,
)
from igds.method.pool import ensure_noisy_pool, pool_frame
from igds.scope import PoolSpec
from igds.store import ActivationStore


@pytest.fixture(scope="module")
def train():
    return {t: load_corpus([t], ["train"]) for t in CORRUPTIONS}


@pytest.mark.parametrize("task", sorted(CORRUPTIONS))
def test_a_noisy_pool_keeps_its_size_corrupts_its_share_and_uses_every_kind(train, task):
    items = train[task]
    pool = build_noisy_pool(task, items)
    assert len(pool.members) == len(items) and len({e.id for e in pool.members}) == len(items)
    share = len(pool.labels) / len(items)
    assert 0.28 <= share <= 0.30 + 1e-9, share
    kinds = Counter(c.kind for c in pool.labels)
    assert set(kinds) == set(CORRUPTIONS[task]) and min(kinds.values()) >= 0.3 * len(pool.labels) / len(kinds)
    by_id = {e.id: e for e in items}
    responses = {e.response for e in items}
    for c, e in zip(pool.labels, pool.corrupted, strict=True):
        src = by_id[c.source_id]
        assert e.id == c.example_id and e.id not in by_id and c.source_id not in {m.id for m in pool.members}
        # a corrupted item looks like any pool item: the original's source and meta, the original's content
        assert (e.prompt, e.source, e.meta, e.task, e.split) == (src.prompt, src.source, src.meta, task, NOISY_SPLIT)
        if c.kind == SWAPPED:
            assert e.response in responses and e.response != src.response
        elif c.kind == CUT_ANSWER:
            assert "####" in src.response and "####" not in e.response and src.response.startswith(e.response)
        elif c.kind == UNTRANSLATED:
            assert e.response == src.prompt
        elif c.kind == CUT_SYNOPSIS:
            assert src.response.startswith(e.response) and len(e.response.split()) < len(src.response.split())


def test_the_pool_depends_on_the_items_and_seed_only(train):
    items = train["math"]
    a = build_noisy_pool("math", items)
    b = build_noisy_pool("math", list(reversed(items)))
    assert a == b
    c = build_noisy_pool("math", items, NoiseSpec(seed=1))
    assert {x.source_id for x in c.labels} != {x.source_id for x in a.labels}


def test_corruptions_refuse_what_they_cannot_do():
    assert cut_answer("no final line") is None and cut_answer("#### 4") is None
    assert cut_answer("2+2=4\n#### 4") == "2+2=4"
    assert cut_synopsis("three word synopsis") is None
    assert cut_synopsis("a tool to parse JSON files fast") == "a tool to"
    with pytest.raises(ValueError, match="share"):
        NoiseSpec(share=1.0)


def test_the_store_holds_the_pool_and_keeps_the_labels_apart(tmp_path, train):
    store = ActivationStore(tmp_path / "igds.duckdb")
    items = train["translation"][:200]
    store.add_examples(items, dataset="t")
    built = ensure_noisy_pool(store, "translation")
    assert built is not None and ensure_noisy_pool(store, "translation") is None  # stored: not built again
    frame = pool_frame(store, "translation", PoolSpec("noisy"))
    assert len(frame) == 200 and set(frame.example_id) == {e.id for e in built.members}
    assert "kind" not in frame.columns and "source_id" not in frame.columns
    labels = store.corruption_labels("translation")
    assert sorted(labels.example_id) == sorted(c.example_id for c in built.labels)
    # a changed train set rebuilds the pool
    store.add_examples(train["translation"][200:210], dataset="t")
    assert ensure_noisy_pool(store, "translation") is not None
    assert len(pool_frame(store, "translation", PoolSpec("noisy"))) == 210
