"""Bounded ingest: a gzip bomb and a 400 MB line are refused without the memory they would take, and every
refusal names the file, the line or row, the field and the cap, leaving the store's dataset tables as they were."""

from __future__ import annotations

import ast
import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igds.data.ingest import ColumnMapping, add_dataset, preview_source
from igds.data.parquet import parquet_column_depths
from igds.data.readers import CorpusError, ReadLimits, iter_rows
from igds.store import ActivationStore

ROOT = Path(__file__).parents[2]
MB = 1 << 20


def member(data: bytes) -> bytes:
    """One gzip member; members written one after another are one valid gzip stream (as pigz writes them)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


def one_line_gz(path: Path, megabytes: int) -> Path:
    """A .jsonl.gz holding a single JSON line with a ``megabytes`` MB prompt (about 1 kB of gzip per MB)."""
    chunk = member(b"a" * MB)
    with open(path, "wb") as fh:
        fh.write(member(b'{"prompt": "'))
        for _ in range(megabytes):
            fh.write(chunk)
        fh.write(member(b'", "response": "x"}\n'))
    return path


def start(argv: list[str], home: Path) -> tuple[subprocess.Popen, Path]:
    """Start ``python -m igds ARGV`` in its own workspace; its output goes to a file."""
    out = home.with_suffix(".out")
    with open(out, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "igds", *argv], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, "IGDS_HOME": str(home)})
    return proc, out


def wait_rss(proc: subprocess.Popen) -> tuple[int, float]:
    """``(exit code, peak resident MB)`` of one child, from its own rusage (``wait4``), not all children's."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024  # Linux: kB


def test_a_gzip_bomb_is_refused_under_a_1_gib_address_space(tmp_path):
    line = (json.dumps({"prompt": "a" * 999_950, "response": "b"}) + "\n").encode()  # 1 MB a line
    bomb = tmp_path / "bomb.jsonl.gz"
    bomb.write_bytes(member(line) * 1_050)  # 1.1 MB of gzip, 1.05 GB inflated
    assert bomb.stat().st_size < 2 * MB
    script = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from igds.data.readers import CorpusError, iter_rows
        n = 0
        try:
            for _ in iter_rows(sys.argv[1], "bomb.jsonl.gz"):
                n += 1
        except CorpusError as exc:
            print(n, exc)
        print(sorted(m for m in sys.modules if m.startswith(("igds", "pyarrow", "numpy", "torch"))))
    """)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, str(bomb)], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)
    seconds = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    refused, modules = done.stdout.splitlines()
    assert refused == ("1000 bomb.jsonl.gz: decompresses to more than 1.0 GB (max_decompressed_bytes); reading "
                       "stopped at line 1,001"), refused
    assert "MemoryError" not in done.stderr
    assert ast.literal_eval(modules) == ["igds", "igds.config", "igds.constants", "igds.data", "igds.data.limits",
                                        "igds.data.readers"]
    print(f"gzip bomb refused in {seconds:.1f} s")


def test_data_add_memory_does_not_grow_with_the_line(tmp_path):
    small = one_line_gz(tmp_path / "line40.jsonl.gz", 40)
    big = one_line_gz(tmp_path / "line400.jsonl.gz", 400)
    assert big.stat().st_size < 500_000
    t0 = time.perf_counter()
    # three processes at once, each in its own workspace (one writer per store); rusage is per process
    runs = {"baseline": start(["data", "list"], tmp_path / "home-base"),
            "40 MB": start(["data", "add", str(small), "--name", "small"], tmp_path / "home-40"),
            "400 MB": start(["data", "add", str(big), "--name", "big"], tmp_path / "home-400")}
    result = {k: (*wait_rss(proc), out.read_text()) for k, (proc, out) in runs.items()}
    seconds = time.perf_counter() - t0
    assert result["baseline"][0] == 0, result["baseline"][2]
    for key, name in (("40 MB", "line40"), ("400 MB", "line400")):
        code, _, out = result[key]
        assert code != 0 and "nothing was stored" in out, out
        assert (f"{name}.jsonl.gz line 1: field 'prompt' makes the line longer than 16.0 MB (max_line_bytes)"
                in out), out
        assert "MemoryError" not in out and "Traceback" not in out
    base = result["baseline"][1]
    above = {k: result[k][1] - base for k in ("40 MB", "400 MB")}
    print(f"peak RSS: baseline {base:.0f} MB; above it: 40 MB line {above['40 MB']:.0f} MB, 400 MB line "
          f"{above['400 MB']:.0f} MB ({seconds:.1f} s)")
    assert abs(above["400 MB"] - above["40 MB"]) <= 50
    assert above["400 MB"] < 150  # a few line caps (16 MB), not the line


# -- every refusal names file, line/row and field; the dataset tables stay as they were ---------------------
def deep_struct_column(depth: int) -> pa.Array:
    """One chat cell ``[{"content": {"content": ... "x"}}]`` nested ``depth`` structs deep."""
    arr = pa.array(["x"])
    for _ in range(depth):
        arr = pa.StructArray.from_arrays([arr], names=["content"])
    return pa.ListArray.from_arrays(pa.array([0, 1], pa.int32()), arr)


@pytest.fixture(scope="module")
def deep_parquet(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("deep") / "deep.parquet"
    pq.write_table(pa.table({"messages": deep_struct_column(5_000), "split": ["test"]}), path)  # about 2.5 s
    return path


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = '{"prompt": "What is 2+2?", "response": "4"}\n'
HOSTILE = {  # name -> (file contents, the message's file and line/row, what it says of the field)
    "nan": ("nan.jsonl", GOOD + '{"prompt": "x", "response": NaN}\n',
            "nan.jsonl line 2: field 'response' is NaN, which is not JSON"),
    "infinity": ("inf.jsonl", '{"prompt": "x", "response": "y", "meta": {"score": Infinity}}\n',
                 "inf.jsonl line 1: field 'meta' is Infinity, which is not JSON"),
    "-infinity": ("ninf.jsonl", GOOD + GOOD.replace('"4"', "-Infinity"),
                  "ninf.jsonl line 2: field 'response' is -Infinity, which is not JSON"),
    "overflow": ("big-float.jsonl", '{"prompt": "x", "response": 1e999}\n',
                 "big-float.jsonl line 1: field 'response' is the number 1e999, which overflows a float"),
    "6000 digits": ("digits.jsonl", GOOD + '{"prompt": "x", "response": ' + "7" * 6_000 + "}\n",
                    "digits.jsonl line 2: field 'response' is an integer of 6,000 digits; the limit is 4,300 "
                    "(max_int_digits)"),
    "alpaca without output": (
        "alpaca.jsonl", '{"instruction": "Add.", "input": "2 and 2", "output": "4"}\n'
        '{"instruction": "Reverse it.", "input": "abc"}\n',
        "alpaca.jsonl line 2: field 'output' is missing (the mapping's output column)"),
    "alpaca, no row has output": (
        "alpaca1.jsonl", '{"instruction": "Reverse it.", "input": "abc"}\n',
        "alpaca1.jsonl line 1: column(s) 'output' not in the file (the mapping's output column(s))"),
    "csv empty response": ("empty.csv", "prompt,response\nWhat is 2+2?,4\nWhat is 3+3?,\n",
                           "empty.csv row 2: field 'response' is empty (the mapping's response column)"),
    "csv blank response": ("blank.csv", 'prompt,response\nWhat is 2+2?,"  "\n',
                           "blank.csv row 1: field 'response' is empty"),
    "csv deep messages": ("deep.csv", 'messages\n"' + "[" * 5_000 + "]" * 5_000 + '"\n',
                          "deep.csv row 1: field 'messages' is nested deeper than 64 levels (max_depth)"),
    "csv empty messages": ("nochat.csv", 'messages,split\n"[{""role"": ""user"", ""content"": ""hi""}, '
                           '{""role"": ""assistant"", ""content"": ""hello""}]",test\n,test\n',
                           "nochat.csv row 2: field 'messages' is empty (the mapping's messages column)"),
    "csv NaN in messages": ("nanchat.csv", 'messages\n"[{""role"": ""user"", ""content"": NaN}]"\n',
                            "nanchat.csv row 1: field 'messages' is NaN, which is not JSON"),
}


def parquet_case(name: str, tmp_path: Path, deep: Path) -> tuple[Path, str]:
    if name == "parquet null":
        path = tmp_path / "null.parquet"
        pq.write_table(pa.table({"prompt": ["What is 2+2?", "What is 3+3?"], "response": ["4", None]}), path)
        return path, "null.parquet row 2: field 'response' is null (the mapping's response column)"
    if name == "parquet NaN":
        path = tmp_path / "nan.parquet"
        pq.write_table(pa.table({"prompt": ["a", "b"], "response": [1.0, float("nan")]}), path)
        return path, "nan.parquet row 2: field 'response' is NaN (the mapping's response column)"
    return deep, ("deep.parquet row 1: field 'messages' is nested too deeply: its Parquet type is 5,003 levels "
                  "deep, past the reader's limit of 100 (max_depth is 64")


TABLES = ("datasets", "dataset_rows", "records", "memberships")


@pytest.fixture
def populated_store(tmp_path):
    """A workspace holding a dataset and a task drawing from it (so every dataset table has rows)."""
    from igds.data.tasks import TaskSpec, unregister_task
    from igds.workflow.catalog import TaskData, add_task

    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}"} for i in range(12)]
    store = ActivationStore()
    add_dataset(store, write(tmp_path / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows)), "qa")
    add_task(store, TaskSpec("bounded_qa", "", "exact_match"),
             TaskData(eval_datasets=("qa",), n_probe=4, n_dev=4, n_test=4, pool_datasets=("general",)))
    yield store
    unregister_task("bounded_qa")


def counts(store) -> dict[str, int]:
    return {t: store.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}  # table names are constants


@pytest.mark.parametrize("case", [*HOSTILE, "parquet null", "parquet NaN", "parquet deep messages"])
def test_every_refusal_names_file_line_and_field_and_stores_nothing(case, populated_store, tmp_path, deep_parquet):
    store = populated_store
    before = counts(store)
    assert all(before.values()), before
    if case in HOSTILE:
        name, text, expected = HOSTILE[case]
        path = write(tmp_path / name, text)
    else:
        path, expected = parquet_case(case, tmp_path, deep_parquet)
    with pytest.raises(CorpusError) as err:
        add_dataset(store, path, "hostile")
    message = str(err.value)
    assert expected in message, message
    assert "nothing was stored" in message and "Recursion" not in message
    assert counts(store) == before
    # the preview says the same, and the CLI prints it (no traceback)
    assert expected in preview_source(path).problems[0]


def test_the_cli_refuses_a_deep_messages_cell_without_a_traceback(tmp_path, deep_parquet, capsys):
    from igds.cli import main

    path = write(tmp_path / "deep.csv", 'messages\n"' + "[" * 5_000 + "]" * 5_000 + '"\n')
    for source in (path, deep_parquet):
        assert main(["data", "add", str(source), "--name", "deep"]) == 2
        err = capsys.readouterr().err
        assert f"error: 1 problem(s); nothing was stored:\n  {source.name} row 1: field 'messages' is nested" in err
    assert ActivationStore().datasets_table().empty


# -- the caps, each named ------------------------------------------------------------------------------------
def test_each_cap_is_named_with_the_file_and_line(tmp_path):
    rows = "".join(json.dumps({"prompt": f"q{i}", "response": "a" * 50}) + "\n" for i in range(5))
    path = write(tmp_path / "caps.jsonl", rows)
    small = {"max_rows": 3}
    with pytest.raises(CorpusError, match=r"caps.jsonl line 4: the file has more than 3 rows \(max_rows\)"):
        list(iter_rows(path, "caps.jsonl", limits=ReadLimits(**small)))
    with pytest.raises(CorpusError, match=r"caps.jsonl line 1: field 'response' is 50 characters; the limit is 40 "
                                          r"\(max_field_chars\)"):
        list(iter_rows(path, "caps.jsonl", limits=ReadLimits(max_field_chars=40)))
    with pytest.raises(CorpusError, match=r"caps.jsonl line 1: field 'response' makes the line longer than 60 bytes "
                                          r"\(max_line_bytes\)"):
        list(iter_rows(path, "caps.jsonl", limits=ReadLimits(max_line_bytes=60)))
    with pytest.raises(CorpusError, match=r"caps.jsonl: holds more text than 200 bytes \(max_decompressed_bytes\); "
                                          r"reading stopped at line 3"):
        list(iter_rows(path, "caps.jsonl", limits=ReadLimits(max_decompressed_bytes=200)))
    width = len(rows.splitlines()[0].encode())  # every line is as long, without its newline
    assert len(list(iter_rows(path, limits=ReadLimits(max_rows=5, max_line_bytes=width)))) == 5  # exactly at the caps
    with pytest.raises(CorpusError, match="caps.jsonl line 1: field 'response' makes the line longer"):
        list(iter_rows(path, "caps.jsonl", limits=ReadLimits(max_line_bytes=width - 3)))
    with pytest.raises(ValueError, match="ReadLimits.max_rows must be positive"):
        ReadLimits(max_rows=0)
    # the preview and add_dataset take the same limits and report the cap
    pv = preview_source(path, limits=ReadLimits(**small))
    assert pv.n_rows == 3 and not pv.ok and "(max_rows)" in pv.problems[0]


def test_a_csv_row_spanning_lines_is_capped_as_one_row(tmp_path):
    cell = "line\n" * 40  # one quoted cell over 40 lines, 200 bytes
    path = write(tmp_path / "multi.csv", f'prompt,response\nq,"{cell}"\nq2,a2\n')
    assert len(list(iter_rows(path, limits=ReadLimits(max_line_bytes=300)))) == 2
    with pytest.raises(CorpusError, match=r"multi.csv row 1: the row is longer than 100 bytes \(max_line_bytes\)"):
        list(iter_rows(path, "multi.csv", limits=ReadLimits(max_line_bytes=100)))


def test_the_preview_keeps_counts_and_shown_rows_only(tmp_path):
    rows = [{"question": f"q{i % 30}", "answer": f"a{i % 30}", "split": "test" if i % 2 else "train"}
            for i in range(100)]
    path = write(tmp_path / "qa.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    pv = preview_source(path, n_show=3)
    assert (pv.n_rows, pv.n_records, pv.split_counts) == (100, 30, {"train": 50, "test": 50})
    assert len(pv.rows) == 3 and not hasattr(pv, "records")
    store = ActivationStore()
    res = add_dataset(store, path, "qa", ColumnMapping(prompt="question", response="answer", split="split"))
    assert (res.n_rows, res.n_records) == (100, 30)
    stored = store.dataset_examples("qa")
    assert list(stored.row_no) == list(range(1, 101)) and stored.prompt.tolist()[31] == "q1"
    assert stored.split_label.tolist()[:2] == ["train", "test"]


def test_parquet_column_depths_read_from_the_footer(tmp_path, deep_parquet):
    path = tmp_path / "flat.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "tags": [["a", "b"]], "meta": [{"k": {"j": 1}}]}), path)
    assert parquet_column_depths(path) == {"prompt": 1, "tags": 3, "meta": 3}
    assert parquet_column_depths(deep_parquet) == {"messages": 5_003, "split": 1}


def test_a_parquet_row_group_over_the_row_cap_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge-cell.parquet"
    pq.write_table(pa.table({"prompt": ["p"], "response": ["r" * 5_000]}), path)
    with pytest.raises(CorpusError, match=r"huge-cell.parquet row 1: field 'response' makes 5.1 kB uncompressed, "
                                          r"more than 1.0 kB a row \(max_line_bytes\)"):
        list(iter_rows(path, "huge-cell.parquet", limits=ReadLimits(max_line_bytes=1_000)))
    # many rows averaging under the cap are read batch by batch; the long one is refused by its length
    pq.write_table(pa.table({"prompt": ["p"] * 100, "response": ["r" * 5_000] + ["r"] * 99}), path)
    with pytest.raises(CorpusError, match=r"row 1: field 'response' is 5,000 characters; the limit is 1,000"):
        list(iter_rows(path, limits=ReadLimits(max_line_bytes=1_000, max_field_chars=1_000)))
