"""Hardened row readers: BOMs, deep nesting, lone surrogates, oversized fields, upload limits, gzip bombs."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igds.data.records import MAX_DEPTH, MAX_FIELD_CHARS, CorpusError, check_value, iter_rows, read_records

BOM = b"\xef\xbb\xbf"


def rec(**kw) -> dict:
    return {"task": "math", "split": "test", "prompt": "What is 1+1?", "response": "#### 2", **kw}


def jsonl_bytes(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def raises(call, *parts: str) -> str:
    """Run ``call``, expect a CorpusError whose message contains every part; return the message."""
    with pytest.raises(CorpusError) as err:
        call()
    message = str(err.value)
    for part in parts:
        assert part in message, message
    return message


def test_bom_jsonl_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(BOM + jsonl_bytes([rec(), rec(prompt="What is 2+2?", response="#### 4")]))
    assert [ex.prompt for ex in read_records(path)] == ["What is 1+1?", "What is 2+2?"]
    assert [where for where, _ in iter_rows(path)] == [f"{path} line 1", f"{path} line 2"]


def test_bom_jsonl_gz_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl.gz"
    path.write_bytes(gzip.compress(BOM + jsonl_bytes([rec()])))
    (ex,) = read_records(path)
    assert (ex.prompt, ex.response) == ("What is 1+1?", "#### 2")


def test_bom_csv_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(BOM + b"task,split,prompt,response\nmath,test,What is 1+1?,#### 2\n")
    (ex,) = read_records(path)
    assert (ex.task, ex.prompt) == ("math", "What is 1+1?")
    assert list(iter_rows(path, "up.csv")) == [
        ("up.csv row 1", {"task": "math", "split": "test", "prompt": "What is 1+1?", "response": "#### 2"})
    ]


def test_deep_nesting_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    deep = "[" * 10_000 + "]" * 10_000
    path.write_bytes(jsonl_bytes([rec()]) + f'{{"prompt": "P", "meta": {{"x": {deep}}}}}\n'.encode())
    message = raises(lambda: read_records(path), f"{path} line 2: field 'meta' is nested deeper than 64 levels")
    assert "Recursion" not in message
    # A top-level array is "the record".
    path.write_bytes(("[" * 10_000 + "]" * 10_000 + "\n").encode())
    raises(lambda: list(iter_rows(path, "d.jsonl")), "d.jsonl line 1: the record is nested deeper than 64 levels")


def test_moderate_nesting_over_the_limit(tmp_path: Path) -> None:
    # Parses without a RecursionError, refused by the depth check; exactly MAX_DEPTH levels is fine.
    path = tmp_path / "d.jsonl"
    ok = {"meta": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))}
    path.write_bytes(jsonl_bytes([rec(meta={"x": ok["meta"]})]))
    assert len(list(iter_rows(path))) == 1
    too_deep = json.loads("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    path.write_bytes(jsonl_bytes([rec(), rec(response=too_deep)]))
    raises(lambda: list(iter_rows(path, "d.jsonl")), "d.jsonl line 2: field 'response' is nested deeper than 64")


def test_lone_surrogate_names_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_bytes(jsonl_bytes([rec()]) + b'{"prompt": "bad \\ud800 text", "response": "R"}\n')
    raises(lambda: read_records(path),
           f"{path} line 2: field 'prompt' has an invalid Unicode escape (lone surrogate \\ud800)")
    # Nested strings and keys are checked too, named by their top-level field.
    path.write_bytes(b'{"prompt": "P", "meta": {"a": ["ok", {"b": "\\udfff"}]}}\n')
    raises(lambda: list(iter_rows(path, "s.jsonl")), "s.jsonl line 1: field 'meta' has an invalid Unicode escape "
           "(lone surrogate \\udfff)")
    path.write_bytes(b'{"prompt": "P", "meta": {"\\ud83d": 1}}\n')
    raises(lambda: list(iter_rows(path, "s.jsonl")), "field 'meta' has an invalid Unicode escape")
    # A proper surrogate pair is an astral character, not an error.
    path.write_bytes(b'{"prompt": "smile \\ud83d\\ude00", "response": "R", "task": "general", "split": "train"}\n')
    assert read_records(path)[0].prompt == "smile \U0001f600"


def test_oversized_field(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    path.write_bytes(jsonl_bytes([rec(), rec(response="x" * 1_234_567)]))
    raises(lambda: read_records(path), f"{path} line 2: field 'response' is 1,234,567 characters; the limit is "
           "1,000,000")
    path.write_bytes(jsonl_bytes([rec(response="x" * MAX_FIELD_CHARS)]))
    assert len(read_records(path)[0].response) == MAX_FIELD_CHARS


def test_oversized_csv_cell(tmp_path: Path) -> None:
    # Over the csv module's own default cell limit (131,072) but within ours: accepted.
    path = tmp_path / "big.csv"
    path.write_text(f"task,split,prompt,response\nmath,test,{'y' * 200_000},#### 2\n", encoding="utf-8")
    assert len(read_records(path)[0].prompt) == 200_000
    path.write_text(f"task,split,prompt,response\nmath,test,P,#### 2\nmath,test,P2,{'y' * 1_500_000}\n",
                    encoding="utf-8")
    raises(lambda: read_records(path), f"{path} row 2: field 'response' is 1,500,000 characters; the limit is "
           "1,000,000")


def test_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "up.jsonl"
    path.write_bytes(jsonl_bytes([rec()] * 3))
    size = path.stat().st_size
    assert len(list(iter_rows(path, max_bytes=size))) == 3
    # Refused by the call itself, before any row is read.
    raises(lambda: iter_rows(path, "up.jsonl", max_bytes=size - 1), f"up.jsonl: {size} bytes is over the upload "
           f"limit of {size - 1} bytes")
    big = tmp_path / "big.csv"
    big.write_bytes(b"prompt,response\n" + b"P,R\n" * 3_100_000)  # 12.4 MB
    raises(lambda: read_records(big, max_bytes=10_000_000), f"{big}: 12.4 MB is over the upload limit of 10.0 MB")
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        iter_rows(path, max_bytes=0)


def test_gzip_bomb_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.jsonl.gz"
    path.write_bytes(gzip.compress(b" " * 5_000_000 + jsonl_bytes([rec()]), compresslevel=9))
    limit = path.stat().st_size
    raises(lambda: list(iter_rows(path, "bomb.jsonl.gz", max_bytes=limit)),
           f"bomb.jsonl.gz: decompresses to more than {20 * limit / 1000:.1f} kB (20 times the upload limit",
           "gzip bomb")
    # Without a limit the same file reads fine (whitespace lines are skipped).
    assert len(list(iter_rows(path))) == 1


def test_parquet_oversized_value(tmp_path: Path) -> None:
    path = tmp_path / "big.parquet"
    rows = [rec(), rec(prompt="What is 2+2?", response="z" * 1_100_000)]
    pq.write_table(pa.Table.from_pylist(rows), path)
    raises(lambda: read_records(path), f"{path} row 2: field 'response' is 1,100,000 characters; the limit is "
           "1,000,000")
    # Nested values in a list column are checked and named by their column.
    pq.write_table(pa.table({"prompt": ["P"], "tags": [["a", "b" * (MAX_FIELD_CHARS + 1)]]}), path)
    raises(lambda: list(iter_rows(path, "t.parquet")), "t.parquet row 1: field 'tags' is 1,000,001 characters")


def test_parquet_rows_and_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.parquet"
    pq.write_table(pa.Table.from_pylist([rec(), rec(prompt="Q")]), path)
    assert [w for w, _ in iter_rows(path, "ok.parquet")] == ["ok.parquet row 1", "ok.parquet row 2"]
    path.write_bytes(b"PAR1 not really")
    raises(lambda: list(iter_rows(path, "ok.parquet")), "ok.parquet: cannot read parquet")


def test_check_value() -> None:
    check_value("x line 1", "meta", {"a": [1, 2.0, None, True, "s"]})
    deep: list = []
    for _ in range(5_000):  # far past the recursion limit: the walk is iterative
        deep = [deep]
    raises(lambda: check_value("x line 1", "meta", deep), "x line 1: field 'meta' is nested deeper than 64 levels")
    raises(lambda: check_value("x row 2", None, "\ud800"), "x row 2: the record has an invalid Unicode escape "
           "(lone surrogate \\ud800)")
    raises(lambda: check_value("x row 3", "p", ("a" * (MAX_FIELD_CHARS + 5),)), "x row 3: field 'p' is 1,000,005 "
           "characters; the limit is 1,000,000")


def test_file_level_errors_keep_their_messages(tmp_path: Path) -> None:
    raises(lambda: iter_rows(tmp_path / "nope.jsonl"), "nope.jsonl: file not found")
    (tmp_path / "a.txt").write_text("x")
    raises(lambda: iter_rows(tmp_path / "a.txt", "a.txt"), "a.txt: unsupported file type")
    (tmp_path / "b.jsonl.gz").write_bytes(b"not gzip")
    raises(lambda: list(iter_rows(tmp_path / "b.jsonl.gz", "b.jsonl.gz", max_bytes=100)),
           "b.jsonl.gz: not a valid gzip file")
    (tmp_path / "c.ndjson").write_bytes(b'{"a": 1}\n{"a": oops}\n')
    raises(lambda: list(iter_rows(tmp_path / "c.ndjson", "c.ndjson")), "c.ndjson line 2: invalid JSON")


def test_deep_meta_json_text_in_csv(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    deep = "[" * 10_000 + "]" * 10_000
    path.write_text(f"task,split,prompt,response,meta\nmath,test,P,R,{deep}\n", encoding="utf-8")
    raises(lambda: read_records(path), f"{path} row 1: field 'meta' is nested deeper than 64 levels")
    path.write_text(f"task,split,prompt,response,meta\nmath,test,P,R,{'[' * 70 + ']' * 70}\n", encoding="utf-8")
    raises(lambda: read_records(path), f"{path} row 1: field 'meta' is nested deeper than 64 levels")
