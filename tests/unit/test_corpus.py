"""The shipped corpus (schema, counts, disjoint splits, content-only records) and the loaders' validation."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from igds.data import corpus
from igds.data.corpus import CorpusError, Example, Membership, Record, example_id, read_records, write_records
from igds.data.metrics import final_number
from igds.data.tasks import get_task

MINIMUM = {"probe": 256, "dev": 256, "train": 1000, "test": 300}
# What scripts/build_demo_corpus.py ships per task (dev grown from 64 to 256 out of train, which kept 1,008).
SHIPPED = {"probe": 256, "dev": 256, "train": 1008, "test": 400}
TASKS = ("math", "summarization", "translation")


@pytest.fixture(scope="module")
def shipped() -> list[Example]:
    return corpus.load_corpus()


# ----------------------------------------------------------------------------- shipped corpus


def test_every_shipped_record_is_valid(shipped: list[Example]) -> None:
    assert len({(ex.task, ex.id) for ex in shipped}) == len(shipped)
    assert len({ex.id for ex in shipped}) == len(shipped)  # no content is shared by two tasks today
    for ex in shipped:
        assert ex.id == example_id(ex.prompt, ex.response)  # content hash: the task is not part of it
        assert ex.task in (*TASKS, "general") and ex.split in corpus.SPLITS
        assert ex.prompt.strip() and ex.response.strip() and ex.source
        message = ex.prompt
        if ex.task != "general":
            instruction = get_task(ex.task).instruction
            assert not ex.prompt.startswith(instruction), ex.id  # records hold the content only
            message = get_task(ex.task).format_prompt(ex.prompt)
        limit = 1100 if ex.task == "math" else 800
        assert len(message) + len(ex.response) <= limit, ex.id


def test_shipped_records_render_the_pre_content_corpus(shipped: list[Example]) -> None:
    # Until the records held content only, a record's prompt was its task's user message and its id
    # sha256(task, prompt, response)[:16]. Rendered through their tasks, today's records give exactly
    # those 9,017 ids (fingerprint of the sorted ids of the corpus before the change).
    def shown(ex: Example) -> str:
        message = ex.prompt if ex.task == "general" else get_task(ex.task).format_prompt(ex.prompt)
        return hashlib.sha256(f"{ex.task}\0{message}\0{ex.response}".encode()).hexdigest()[:16]

    assert len(shipped) == 9017
    assert corpus.corpus_fingerprint(Example(shown(ex), "", "", "", "", "") for ex in shipped) == (
        "0219039b2f022139773982b27274995b795fbd0482011c81ac7959ddadcbfbc4")


def test_counts_meet_minimums(shipped: list[Example]) -> None:
    counts = Counter((ex.task, ex.split) for ex in shipped)
    for task in TASKS:
        for split, n in MINIMUM.items():
            assert counts[task, split] >= n, (task, split)
        assert {split: counts[task, split] for split in SHIPPED} == SHIPPED, task
    assert counts["general", "train"] >= 2500 and counts["general", "reference"] == 512
    assert {ex.split for ex in shipped if ex.task == "general"} == {"train", "reference"}


def test_splits_are_disjoint_by_content(shipped: list[Example]) -> None:
    for task in TASKS:
        by_prompt: dict[str, set[str]] = defaultdict(set)
        for ex in shipped:
            if ex.task == task:
                by_prompt[ex.prompt].add(ex.split)
        assert all(len(splits) == 1 for splits in by_prompt.values()), task


def test_math_split_by_template(shipped: list[Example]) -> None:
    math = [ex for ex in shipped if ex.task == "math"]
    test_tpls = {ex.meta["template"] for ex in math if ex.split == "test"}
    other_tpls = {ex.meta["template"] for ex in math if ex.split != "test"}
    assert test_tpls and other_tpls and not test_tpls & other_tpls
    for ex in math:
        assert isinstance(ex.meta["n_steps"], int)
        assert final_number(ex.response) == float(ex.meta["answer"])
        assert "<<" not in ex.response and ex.response.rstrip().splitlines()[-1].startswith("####")
    easy = [ex for ex in math if ex.split == "test" and ex.meta["n_steps"] <= 2]
    assert len(easy) >= 50  # the slice a 135M model can realistically solve


def test_siblings_and_sources_do_not_straddle_splits(shipped: list[Example]) -> None:
    splits_of: dict[str, set[str]] = defaultdict(set)
    for ex in shipped:
        if ex.task == "summarization":
            splits_of[ex.meta["source_package"]].add(ex.split)
    assert all(len(s) == 1 for s in splits_of.values())
    translation = [ex for ex in shipped if ex.task == "translation"]
    assert {ex.meta["src_lang"] for ex in translation} == {"de", "fr"}
    summary_refs = {ex.response for ex in shipped if ex.task == "summarization"}
    assert not summary_refs & {ex.response for ex in translation if ex.source == "debian-ddtp"}


def test_general_sources(shipped: list[Example]) -> None:
    sources = Counter(ex.source.split(":")[0] for ex in shipped if ex.task == "general")
    assert set(sources) == {"wordnet", "pydoc", "fortunes", "evals", "freshqa"}
    banned = ("nlp-corpus", "abstract2title", "text_compression", "steganography", "ballots")
    assert not any(b in ex.source for ex in shipped for b in banned)


def test_summary_and_format(shipped: list[Example]) -> None:
    rows = corpus.corpus_summary()
    assert sum(r["n"] for r in rows) == len(shipped)
    row = next(r for r in rows if (r["task"], r["split"]) == ("translation", "test"))
    assert set(row["sources"]) == {"ding", "debian-ddtp"} and sum(row["sources"].values()) == row["n"]
    text = corpus.format_summary(rows)
    assert text.splitlines()[0].split() == ["task", "split", "n", "sources"]
    assert f"total {len(shipped)}" in " ".join(text.split())
    assert "evals:* (" in text  # evals tasks collapse into one entry


def test_pools_and_reference(shipped: list[Example]) -> None:
    train = corpus.task_pool("math", "task-only")
    mixed = corpus.task_pool("math")
    general = [ex for ex in shipped if ex.task == "general"]
    assert {ex.split for ex in train} == {"train"} and {ex.task for ex in train} == {"math"}
    assert len(mixed) == len(train) + sum(ex.split == "train" for ex in general)
    with pytest.raises(ValueError, match="unknown pool setting"):
        corpus.task_pool("math", "everything")
    with pytest.raises(CorpusError, match="unknown task"):
        corpus.probe_set("poetry")
    assert len(corpus.probe_set("summarization")) >= 256 and len(corpus.dev_set("translation")) >= 256
    assert {ex.split for ex in corpus.test_set("math")} == {"test"}
    ref = corpus.reference_set(n=512, seed=0, task="math")
    assert len(ref) == 512 and {ex.task for ex in ref} == {"general"}
    assert [ex.id for ex in ref] == [ex.id for ex in corpus.reference_set(n=512, seed=0)]
    sample = {seed: {ex.id for ex in corpus.reference_set(n=100, seed=seed)} for seed in (0, 1)}
    assert sample[0] != sample[1]
    # the contrast set is disjoint from every candidate pool, the mixed pools' general records included
    pooled = {ex.id for task in TASKS for pool in corpus.POOL_SETTINGS for ex in corpus.task_pool(task, pool)}
    assert not pooled & {ex.id for ex in ref}
    # reserved by source in proportion to its size
    sources = Counter(ex.source.split(":")[0] for ex in ref)
    assert sources["wordnet"] > sources["pydoc"] > 0


# ----------------------------------------------------------------------------- evaluation sample


def _proportional(sample: list[Example], population: list[Example], key=lambda e: e.source) -> None:
    """Every stratum holds its share of the sample within one item, and nothing outside the population."""
    have, total = Counter(key(e) for e in sample), Counter(key(e) for e in population)
    assert sum(have.values()) == len(sample) == len({e.id for e in sample})
    assert {e.id for e in sample} <= {e.id for e in population}
    for stratum, size in total.items():
        assert abs(have[stratum] - len(sample) * size / len(population)) < 1, (stratum, have, total)


def test_test_sample_holds_every_translation_source_in_proportion(shipped: list[Example]) -> None:
    population = corpus.test_set("translation")
    assert Counter(e.source for e in population[:100]) == {"debian-ddtp": 100}  # why the head will not do
    sample = corpus.test_sample("translation", 100)
    _proportional(sample, population)
    assert Counter(e.source for e in sample) == {"ding": 62, "debian-ddtp": 38}  # 62.5 / 37.5, one rounded up
    assert [e.id for e in corpus.test_sample("translation", 100)] == [e.id for e in sample]  # seeded
    assert {e.id for e in corpus.test_sample("translation", 100, seed=1)} != {e.id for e in sample}
    assert corpus.test_sample("translation", 0) == population  # 0: the whole test split
    assert corpus.test_sample("translation", 10_000) == population
    assert {corpus.source_label(e) for e in sample} == {"ding (de)", "debian-ddtp (fr)"}


def _synthetic(sizes: dict[str, int]) -> list[Example]:
    return [Example(id=f"{s}{i:03d}", task="math", source=s, split="test", prompt=f"{s} {i}", response="x")
            for s, n in sizes.items() for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 7, 10, 33, 59])
def test_stratified_sample_allocates_by_largest_remainder(n: int) -> None:
    population = _synthetic({"a": 37, "b": 19, "c": 4})  # three uneven strata
    for seed in range(4):
        sample = corpus.stratified_sample(population, n, seed)
        _proportional(sample, population)
        assert len(sample) == n
        sources = [e.source for e in sample]
        assert sources == sorted(sources)  # strata in name order
    assert Counter(e.source for e in corpus.stratified_sample(population, 10)) == {"a": 6, "b": 3, "c": 1}


def test_stratified_sample_is_seeded_and_ignores_input_order() -> None:
    population = _synthetic({"a": 37, "b": 19, "c": 4})
    ids = [e.id for e in corpus.stratified_sample(population, 20, seed=3)]
    assert [e.id for e in corpus.stratified_sample(list(reversed(population)), 20, seed=3)] == ids
    assert [e.id for e in corpus.stratified_sample(population, 20, seed=4)] != ids
    custom = corpus.stratified_sample(population, 20, key=lambda e: e.id[-1])  # any key stratifies
    _proportional(custom, population, key=lambda e: e.id[-1])
    assert corpus.stratified_sample(population, 0) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        corpus.stratified_sample(population, -1)


def test_source_label_names_the_source_language() -> None:
    ex = _synthetic({"ding": 1})[0]
    assert corpus.source_label(ex) == "ding"
    assert corpus.source_label(dataclasses.replace(ex, meta={"src_lang": "de"})) == "ding (de)"


def test_fingerprint_ignores_order(shipped: list[Example]) -> None:
    few = shipped[:5]
    assert corpus.corpus_fingerprint(few) == corpus.corpus_fingerprint(list(reversed(few)))
    assert corpus.corpus_fingerprint(few) != corpus.corpus_fingerprint(shipped[:4])


def test_load_corpus_custom_dir(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="no \\*.jsonl.gz corpus files"):
        corpus.load_corpus(corpus_dir=tmp_path)
    ex = Example(example_id("p", "#### 1"), "math", "mine", "dev", "p", "#### 1", {"answer": "1"})
    write_records(tmp_path / "a.jsonl.gz", [ex])
    assert corpus.load_corpus(corpus_dir=tmp_path) == [ex]
    # the same content in another task: one record, two memberships (the first file's source and meta)
    other = Example(ex.id, "general", "elsewhere", "train", "p", "#### 1", {})
    write_records(tmp_path / "b.jsonl.gz", [other])
    both = corpus.load_corpus(corpus_dir=tmp_path)
    assert [(e.task, e.split, e.id) for e in both] == [("general", "train", ex.id), ("math", "dev", ex.id)]
    assert {e.record for e in both} == {ex.record} and both[0].source == "mine" and both[0].meta == ex.meta
    write_records(tmp_path / "c.jsonl.gz", [ex])
    with pytest.raises(CorpusError, match="duplicates id .* in task 'math'"):
        corpus.load_corpus(corpus_dir=tmp_path)


def test_record_and_membership_make_an_example() -> None:
    rec_ = Record(example_id("Hallo Welt.", "Hello world."), "ding", "Hallo Welt.", "Hello world.", {"k": 1})
    ex = Example.of(rec_, Membership("translation", "test"))
    assert (ex.id, ex.task, ex.split, ex.content, ex.prompt) == (rec_.id, "translation", "test", rec_.prompt,
                                                                 "Hallo Welt.")
    assert ex.record == rec_ and ex.membership == Membership("translation", "test")
    assert example_id("a", "bc") != example_id("ab", "c")


# ----------------------------------------------------------------------------- loaders


def rec(**over: object) -> dict[str, object]:
    base: dict[str, object] = {"task": "summarization", "split": "train", "source": "s", "prompt": "P", "response": "R"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_read_jsonl_fills_defaults_and_ids(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [rec(task=None, split=None), rec(id="user-1", prompt="Q", meta={"k": 1})])
    a, b = read_records(path, task="translation", split="dev")
    assert (a.task, a.split, a.id) == ("translation", "dev", example_id("P", "R"))
    assert (b.id, b.task, b.meta) == ("user-1", "summarization", {"k": 1})


def test_same_content_in_two_tasks_is_one_record(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [rec(meta={"k": 1}), rec(task="general", source="t", meta={"k": 2})])
    a, b = read_records(path)
    assert a.id == b.id == example_id("P", "R") and (a.task, b.task) == ("summarization", "general")
    assert b.record == a.record and (b.source, b.meta) == ("s", {"k": 1})  # the first occurrence's record


def test_roundtrip_gzip_csv_parquet(tmp_path: Path) -> None:
    examples = read_records(write_jsonl(tmp_path / "d.jsonl", [rec(), rec(prompt="Grüße\nzwei Zeilen")]))
    write_records(tmp_path / "d.jsonl.gz", examples)
    assert read_records(tmp_path / "d.jsonl.gz") == examples
    with open(tmp_path / "d.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write('task,split,prompt,response,meta\nmath,test,"2+2, please",#### 4,"{""answer"": ""4""}"\n')
    (c,) = read_records(tmp_path / "d.csv", source="csv-demo")
    assert (c.prompt, c.source, c.meta) == ("2+2, please", "csv-demo", {"answer": "4"})
    import pyarrow as pa
    import pyarrow.parquet as pq

    # meta as JSON text: parquet cannot store an empty struct, and JSON text is the usual workaround.
    rows = [{**ex.to_dict(), "meta": json.dumps(ex.meta)} for ex in examples]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")
    assert read_records(tmp_path / "d.parquet") == examples


BAD_CASES = {
    "missing field": ([rec(), rec(response=None)], "line 2: field 'response' is missing"),
    "empty prompt": ([rec(prompt="   ")], "line 1: field 'prompt' is empty"),
    "wrong type": ([rec(prompt=42)], "line 1: field 'prompt' must be a string, got int"),
    "unknown task": ([rec(task="poetry")], "line 1: field 'task' has unknown task 'poetry'"),
    "unknown split": ([rec(split="validation")], "line 1: field 'split' has unknown split"),
    "duplicate id": ([rec(id="x"), rec(id="x", prompt="Q")], "line 2: field 'id' duplicates id 'x' (first at line 1)"),
    "same task twice": ([rec(), rec(split="test")], "line 2: field 'id' duplicates id"),
    "instruction in prompt": ([rec(task="translation", prompt="Translate to English:\n\nHallo")],
                              "line 1: field 'prompt' starts with the instruction of task 'translation'"),
    "meta not object": ([rec(meta=[1])], "line 1: field 'meta' must be an object, got list"),
    "not an object": ([[1, 2]], "line 1: expected an object"),
    "id wrong type": ([rec(id=7)], "line 1: field 'id' must be a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_records_rejected(tmp_path: Path, case: str) -> None:
    records, message = BAD_CASES[case]
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(CorpusError) as err:
        read_records(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


@pytest.mark.parametrize(
    ("name", "payload", "message"),
    [
        ("bad_json.jsonl", b'{"prompt": "P", "response": "R"}\n{"prompt": oops}\n', "line 2: invalid JSON"),
        ("latin1.jsonl", json.dumps(rec()).encode() + b"\n" + b'{"prompt": "caf\xe9"}\n', "line 2: not valid UTF-8"),
        ("empty.jsonl", b"\n  \n", "file is empty"),
        ("empty.csv", b"task,split,prompt,response\n", "file is empty"),
        ("bad.jsonl.gz", b"not gzip at all", "not a valid gzip file"),
        ("data.txt", b"hello", "unsupported file type"),
        ("latin1.csv", b"prompt,response\nP,caf\xe9\n", "line 2: not valid UTF-8"),
        ("short.csv", b"task,split,prompt,response\nmath,test,,#### 1\n", "row 1: field 'prompt' is empty"),
    ],
)
def test_bad_files_rejected(tmp_path: Path, name: str, payload: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(CorpusError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        read_records(path, task="math", split="test")
    assert str(path) in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="file not found"):
        read_records(tmp_path / "nope.jsonl")


def test_write_records_is_deterministic(tmp_path: Path) -> None:
    examples = read_records(write_jsonl(tmp_path / "d.jsonl", [rec(), rec(prompt="Q")]))
    write_records(tmp_path / "a.jsonl.gz", examples)
    write_records(tmp_path / "b.jsonl.gz", examples)
    data = (tmp_path / "a.jsonl.gz").read_bytes()
    assert data == (tmp_path / "b.jsonl.gz").read_bytes()
    assert data[4:8] == b"\0\0\0\0"  # gzip mtime
    first = json.loads(gzip.decompress(data).splitlines()[0])
    assert list(first) == sorted(first)


def test_load_hf_dataset_from_local_files(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {"question": ["What is 2+2?", "What is 3+3?", "What is 2+2?"], "answer": [4, 6, 4]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "ds"))
    got = corpus.load_hf_dataset(
        str(tmp_path / "ds"), task="math", prompt_field="question", response_field="answer", split="validation"
    )
    assert [(ex.prompt, ex.response, ex.split) for ex in got] == [
        ("What is 2+2?", "4", "dev"),
        ("What is 3+3?", "6", "dev"),
    ]  # content only (the task adds its instruction when rendering); the exact duplicate row is dropped
    assert got[0].id == example_id("What is 2+2?", "4")
    with pytest.raises(TypeError, match="instruction"):  # instructions belong to tasks
        corpus.load_hf_dataset(str(tmp_path / "ds"), task="math", prompt_field="question", response_field="answer",
                               instruction="Solve:")
    assert got[0].source.startswith("hf:")
    path = write_jsonl(tmp_path / "local.jsonl", [{"src": "Hallo Welt.", "tgt": "Hello world."}])
    (ex,) = corpus.load_hf_dataset(str(path), task="translation", prompt_field="src", response_field="tgt")
    assert (ex.prompt, ex.response, ex.split) == ("Hallo Welt.", "Hello world.", "train")
    with pytest.raises(CorpusError, match="field 'answer' is missing"):
        corpus.load_hf_dataset(str(path), task="translation", prompt_field="src", response_field="answer")
