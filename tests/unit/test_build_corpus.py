"""The corpus builder on the small in-repo fixture: deterministic bytes, valid records, no leaks."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

from igds.data.corpus import Example, example_id, read_records
from igds.data.tasks import get_task

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "corpus" / "raw_small.json"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_demo_corpus", REPO / "scripts" / "build_demo_corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_demo_corpus"] = module
    spec.loader.exec_module(module)
    return module


def build(builder: ModuleType, out: Path, seed: int = 0) -> dict[str, bytes]:
    files = builder.build_all(builder.load_raw(FIXTURE), seed, small=True)
    builder.write_corpus(files, out)
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.jsonl.gz"))}


def test_builder_is_byte_identical(builder: ModuleType, tmp_path: Path) -> None:
    first = build(builder, tmp_path / "a")
    second = build(builder, tmp_path / "b")
    assert set(first) == {
        "math.jsonl.gz", "summarization.jsonl.gz", "translation.jsonl.gz", "translation-ding.jsonl.gz",
        "general.jsonl.gz",
    }  # fmt: skip
    assert first == second
    other_seed = build(builder, tmp_path / "c", seed=1)
    assert other_seed != first


def test_cli_small_mode(builder: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert builder.main(["--small", "--out", str(tmp_path)]) == 0
    assert "math.jsonl.gz: 16 records" in capsys.readouterr().out
    assert (tmp_path / "math.jsonl.gz").read_bytes() == build(builder, tmp_path / "again")["math.jsonl.gz"]


def test_small_build_records(builder: ModuleType, tmp_path: Path) -> None:
    build(builder, tmp_path)
    sizes = builder.SMALL_SIZES
    math = read_records(tmp_path / "math.jsonl.gz")
    assert Counter(ex.split for ex in math) == Counter(sizes)
    test_tpls = {ex.meta["template"] for ex in math if ex.split == "test"}
    assert test_tpls and not test_tpls & {ex.meta["template"] for ex in math if ex.split != "test"}
    summ = read_records(tmp_path / "summarization.jsonl.gz")
    assert Counter(ex.split for ex in summ) == Counter(sizes)
    # content only: the package description itself; the task adds its instruction when rendering
    assert not any(ex.prompt.startswith("Summarize") for ex in summ)
    assert all(len(get_task("summarization").format_prompt(ex.prompt)) + len(ex.response) <= builder.MAX_CHARS
               for ex in summ)  # the length limit applies to the rendered user message
    translation = read_records(tmp_path / "translation.jsonl.gz") + read_records(tmp_path / "translation-ding.jsonl.gz")
    split_counts = Counter(ex.split for ex in translation)
    assert split_counts == Counter(sizes)
    assert {ex.source for ex in translation} == {"ding", "debian-ddtp"}
    general = read_records(tmp_path / "general.jsonl.gz")
    assert Counter(ex.split for ex in general)["reference"] == builder.SMALL_REFERENCE_SIZE
    assert len({ex.source.split(":")[0] for ex in general}) == 5
    for ex in [*math, *summ, *translation, *general]:
        assert ex.id == example_id(ex.prompt, ex.response)
        assert ex.task == "general" or not ex.prompt.startswith(get_task(ex.task).instruction)


def test_resplit_of_the_first_cut_gives_the_build(
    builder: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build(builder, tmp_path / "built")
    # files as written before dev grew: the first cut (dev of SMALL_FIRST_DEV), re-split offline in place
    with monkeypatch.context() as m:
        m.setattr(builder, "resplit", lambda files, seed, small: {n: builder.sort_records(r) for n, r in files.items()})
        first = build(builder, tmp_path / "first")
    assert first["math.jsonl.gz"] != built["math.jsonl.gz"] and first["general.jsonl.gz"] == built["general.jsonl.gz"]
    first_math = read_records(tmp_path / "first" / "math.jsonl.gz")
    assert Counter(ex.split for ex in first_math)["dev"] == builder.SMALL_FIRST_DEV
    assert builder.main(["--resplit", "--small", "--out", str(tmp_path / "first")]) == 0
    resplit = {p.name: p.read_bytes() for p in sorted((tmp_path / "first").glob("*.jsonl.gz"))}
    assert resplit == built  # the general file is not rewritten and was already the same
    assert builder.main(["--resplit", "--small", "--out", str(tmp_path / "first")]) == 0
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "first").glob("*.jsonl.gz"))} == built
    after = {ex.id: ex.split for ex in read_records(tmp_path / "first" / "math.jsonl.gz")}
    for ex in first_math:  # only train records move, and only into dev
        assert after[ex.id] == ex.split or (ex.split, after[ex.id]) == ("train", "dev")


def test_grow_dev(builder: ModuleType) -> None:
    recs = [Example(f"id{i:02d}", "summarization", "src", "train" if i >= 2 else "dev", f"p{i}", "r")
            for i in range(20)]
    grown = builder.grow_dev(recs, 6, seed=0)
    assert Counter(ex.split for ex in grown) == {"dev": 6, "train": 14}
    assert [ex.split for ex in grown[:6]] == ["dev"] * 6 and {"id00", "id01"} <= {ex.id for ex in grown[:6]}
    assert builder.grow_dev(list(reversed(recs)), 6, seed=0) == grown  # the file order does not matter
    assert builder.grow_dev(grown, 6, seed=0) == grown  # dev already full: unchanged
    assert builder.grow_dev(recs, 6, seed=1) != grown
    with pytest.raises(ValueError, match="cannot grow dev"):
        builder.grow_dev(grown, 4, seed=0)


def test_cleaning_helpers(builder: ModuleType) -> None:
    assert builder.strip_calculator("2 * 5 = <<2*5=10>>10 apples  \n#### 10\n") == "2 * 5 = 10 apples\n#### 10"
    assert not builder.ok_text("a perfectly fine sentence", "but this is shit")
    assert not builder.ok_text("x" * 900)
    assert builder.ok_text("Define the word 'cat'.", "feline mammal usually having thick soft fur")
    assert builder.BOILERPLATE.search("library for X - development files")
    assert builder.interleave([[1, 2, 3], [4], [5, 6]]) == [1, 4, 5, 2, 6, 3]


def test_summarization_dedupes_siblings(builder: ModuleType) -> None:
    para = ["Foo is a tool that frobnicates widgets quickly and reliably for everyone. " * 3]
    raw = [
        {"package": "libfoo-dev", "source": "foo", "synopsis": "widget frobnicator library", "paras": para},
        {"package": "foo", "source": "foo", "synopsis": "widget frobnicator", "paras": para},
        {"package": "bar", "source": "bar", "synopsis": "another frobnicator", "paras": para},  # same text
    ]
    out = builder.build_summarization(raw, 0, {"test": 5, "probe": 0, "dev": 0, "train": 0})
    assert [(ex.meta["package"], ex.response) for ex in out] == [("bar", "another frobnicator")]
