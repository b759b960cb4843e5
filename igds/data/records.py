"""The record model and its readers/writers: local files and ``datasets`` ids.

Records are content, tasks format them. A :class:`Record` is an example's own content: ``id``,
``source``, ``prompt`` (the example's input text *without* any task's instruction), ``response`` (the
reference answer) and ``meta``; its id is a hash of (prompt, response), independent of any task. A
:class:`Membership` says which task uses it and in which split (``probe``/``dev``/``train``/``test``;
off-task records have task ``general``). The chat prompt is rendered at use by the task
(:mod:`igds.data.tasks`, :mod:`igds.modeling.encoding`).

In memory, readers return :class:`Example` s: one record paired with one membership. The same content
in two tasks is one record with two memberships, so two examples share an id (and their record).
Files are validated completely before anything is returned, so a bad file never ends up half-ingested;
errors name the file, the line or row and the field. Users normally import these names from
:mod:`igds.data.corpus`.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from igds.constants import GENERAL

SPLITS = ("probe", "dev", "train", "test", "reference")
_FIELDS = ("id", "task", "source", "split", "prompt", "response", "meta")


class CorpusError(ValueError):
    """A record file is malformed; the message names the file, line/row and field."""


@dataclass(frozen=True)
class Record:
    """An example's own content, independent of any task.

    Args:
        id: Content hash (:func:`example_id`) unless the user gave one.
        source: Where the content comes from (dataset, file, package).
        prompt: The example's input text without any task instruction (its *content*).
        response: The reference answer.
        meta: Free-form provenance (not part of equality).
    """

    id: str
    source: str
    prompt: str
    response: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True)
class Membership:
    """Which task uses an example, and in which split (``general`` for the off-task pool)."""

    task: str
    split: str


@dataclass(frozen=True)
class Example:
    """A record paired with one membership: what the loaders return and the stages consume.

    ``prompt`` is the record's content (no instruction); render the model input through the task
    (``igds.modeling.encoding.encode_examples``). The id does not depend on ``task`` or ``split``.
    """

    id: str
    task: str
    source: str
    split: str
    prompt: str
    response: str
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def content(self) -> str:
        """The example's own input text (the same as ``prompt``)."""
        return self.prompt

    @property
    def record(self) -> Record:
        """The content part."""
        return Record(self.id, self.source, self.prompt, self.response, self.meta)

    @property
    def membership(self) -> Membership:
        """The task/split part."""
        return Membership(self.task, self.split)

    @classmethod
    def of(cls, record: Record, membership: Membership) -> Example:
        """Pair a record with a membership."""
        return cls(record.id, membership.task, record.source, membership.split, record.prompt, record.response,
                   record.meta)

    def to_dict(self) -> dict[str, Any]:
        """The example as a plain dict (the on-disk schema)."""
        return asdict(self)


def example_id(content: str, response: str) -> str:
    """Stable content id: the first 16 hex digits of sha256(content, response), independent of any task.

    Args:
        content: The example's input text, without any task instruction.
        response: Reference answer.

    Returns:
        A 16-character hex string.
    """
    # A NUL separator keeps ("a", "bc") and ("ab", "c") apart.
    return hashlib.sha256(f"{content}\0{response}".encode()).hexdigest()[:16]


def known_tasks() -> list[str]:
    """Task names a record may carry: the registered tasks plus ``general``."""
    from igds.data.tasks import list_tasks

    return [*list_tasks(), GENERAL]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def validate_record(
    raw: Any,
    where: str,
    *,
    task: str | None = None,
    split: str | None = None,
    source: str | None = None,
    tasks: Iterable[str] | None = None,
) -> Example:
    """Check one raw record and turn it into an :class:`Example`.

    Args:
        raw: The decoded record (a dict).
        where: Location for messages, e.g. ``"data.jsonl line 7"``.
        task: Default task for records without one.
        split: Default split for records without one.
        source: Default source for records without one.
        tasks: Allowed task names (default: :func:`known_tasks`).

    Returns:
        The validated example; a missing ``id`` is filled with :func:`example_id`.

    Raises:
        CorpusError: On the first problem found.
    """
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: expected an object with fields {', '.join(_FIELDS)}, got {_type_name(raw)}")
    allowed = list(tasks) if tasks is not None else known_tasks()
    defaults = {"task": task, "split": split, "source": source}
    values: dict[str, str] = {}
    for name in ("task", "split", "source", "prompt", "response"):
        value = raw.get(name)
        if value is None or (value == "" and name in defaults):
            value = defaults.get(name)
        if value is None:
            raise CorpusError(f"{where}: field {name!r} is missing")
        if not isinstance(value, str):
            raise CorpusError(f"{where}: field {name!r} must be a string, got {_type_name(value)}")
        if not value.strip():
            raise CorpusError(f"{where}: field {name!r} is empty")
        values[name] = value
    if values["task"] not in allowed:
        raise CorpusError(f"{where}: field 'task' has unknown task {values['task']!r}; known: {', '.join(allowed)}")
    if values["split"] not in SPLITS:
        raise CorpusError(f"{where}: field 'split' has unknown split {values['split']!r}; known: {', '.join(SPLITS)}")
    meta = raw.get("meta")
    if isinstance(meta, str) and meta.strip():  # CSV cells and some parquet files carry JSON text
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: field 'meta' is not valid JSON ({exc.msg})") from None
    if meta in (None, ""):
        meta = {}
    if not isinstance(meta, dict):
        raise CorpusError(f"{where}: field 'meta' must be an object, got {_type_name(meta)}")
    _check_content(values["task"], values["prompt"], where)
    rid = raw.get("id")
    if rid in (None, ""):
        rid = example_id(values["prompt"], values["response"])
    elif not isinstance(rid, str):
        raise CorpusError(f"{where}: field 'id' must be a string, got {_type_name(rid)}")
    return Example(rid, values["task"], values["source"], values["split"], values["prompt"], values["response"], meta)


def _check_content(task: str, prompt: str, where: str) -> None:
    """Refuse a prompt that still carries its task's instruction (the task adds it when rendering)."""
    from igds.data.tasks import record_task

    instruction = record_task(task).instruction
    if instruction and prompt.startswith(instruction + "\n\n"):
        raise CorpusError(f"{where}: field 'prompt' starts with the instruction of task {task!r}; records hold "
                          "the content only (the task adds its instruction when it renders the prompt): "
                          "remove the instruction and the blank line after it")


class MembershipIndex:
    """Merges examples that share an id: one record, one membership per task.

    The same content in two tasks is kept as two examples that share the first one's record (source
    and meta included). An id seen again with other content, or twice in one task, is an error.
    """

    def __init__(self) -> None:
        self._first: dict[str, tuple[Record, dict[str, str]]] = {}

    def add(self, ex: Example, where: str, here: str) -> Example:
        """Register ``ex`` found at ``here``; return it, sharing the record of an earlier example with its id.

        Args:
            ex: The example just read.
            where: Location prefix for messages (e.g. ``"data.jsonl line 7"``).
            here: Short location stored for later messages (e.g. ``"line 7"``).

        Raises:
            CorpusError: For an id already used by other content or already in this task.
        """
        first = self._first.get(ex.id)
        if first is None:
            self._first[ex.id] = (ex.record, {ex.task: here})
            return ex
        record, tasks = first
        if (record.prompt, record.response) != (ex.prompt, ex.response):
            raise CorpusError(f"{where}: field 'id' duplicates id {ex.id!r} (first at {next(iter(tasks.values()))}) "
                              "with other content")
        if ex.task in tasks:
            raise CorpusError(f"{where}: field 'id' duplicates id {ex.id!r} (first at {tasks[ex.task]}) in task "
                              f"{ex.task!r}; an example belongs to one split of a task")
        tasks[ex.task] = here
        return Example.of(record, ex.membership)


# Limits on what one row may hold: nesting depth of a field's value and characters in one string.
MAX_DEPTH = 64
MAX_FIELD_CHARS = 1_000_000
# A gzip file may decompress to at most this many times the upload limit (when one is given).
GZIP_RATIO = 20
_SURROGATE = re.compile("[\ud800-\udfff]")
# JSON tokens that matter for nesting: whole strings (skipped as one token), brackets, commas, colons.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)
_BOM = b"\xef\xbb\xbf"


def _size(n: int) -> str:
    """A byte count for messages: ``950 bytes``, ``12.3 kB``, ``12.3 MB`` (decimal units)."""
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


def _field_label(field: str | None) -> str:
    return "the record" if field is None else f"field {field!r}"


def _check_string(where: str, field: str | None, text: str) -> None:
    if len(text) > MAX_FIELD_CHARS:
        raise CorpusError(f"{where}: {_field_label(field)} is {len(text):,} characters; the limit is "
                          f"{MAX_FIELD_CHARS:,}")
    bad = _SURROGATE.search(text)
    if bad:
        raise CorpusError(f"{where}: {_field_label(field)} has an invalid Unicode escape (lone surrogate "
                          f"\\u{ord(bad.group()):04x})")


def check_value(where: str, field: str | None, value: Any) -> None:
    """Check one value of a row: nesting depth, lone surrogates and string length, at any depth.

    The walk is iterative, so a value nested far deeper than the interpreter's recursion limit is refused
    with a clear message instead of a ``RecursionError``. Dict keys are checked like strings.

    Args:
        where: Location for messages, e.g. ``"data.jsonl line 7"``.
        field: The row's top-level field holding ``value``; None when ``value`` is the whole record.
        value: A decoded value (str, number, bool, None, list/tuple, dict, ...).

    Raises:
        CorpusError: ``"<where>: field 'x' is nested deeper than 64 levels"``, ``"<where>: field 'x' has an
            invalid Unicode escape (lone surrogate \\ud800)"`` or ``"<where>: field 'x' is 1,234,567
            characters; the limit is 1,000,000"`` (``the record`` instead of ``field 'x'`` when field is None).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            _check_string(where, field, item)
        elif isinstance(item, dict | list | tuple):
            depth += 1
            if depth > MAX_DEPTH:
                raise CorpusError(f"{where}: {_field_label(field)} is nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        _check_string(where, field, key)
                    stack.append((child, depth))
            else:
                stack.extend((child, depth) for child in item)


def _check_row(where: str, row: Any) -> None:
    if not isinstance(row, dict):
        check_value(where, None, row)
        return
    for key, value in row.items():
        name = key if isinstance(key, str) else str(key)
        _check_string(where, name, name)
        check_value(where, name, value)
    meta = row.get("meta")
    # CSV cells and parquet strings carry meta as JSON text, which validate_record parses: check its nesting
    # here, where a deep value cannot crash the parser. Syntax errors are left to validate_record's message.
    if isinstance(meta, str) and meta.count("[") + meta.count("{") > MAX_DEPTH:
        try:
            parsed = json.loads(meta)
        except RecursionError:
            raise CorpusError(f"{where}: field 'meta' is nested deeper than {MAX_DEPTH} levels") from None
        except ValueError:
            return
        check_value(where, "meta", parsed)


def _deep_field(text: str) -> str | None:
    """The top-level field of a JSON text whose value is nested deeper than :data:`MAX_DEPTH` (None: the record).

    Only used after ``json.loads`` gave up on the nesting, so it scans tokens without building values.
    """
    depth, top_is_object, expect_key, key = 0, False, False, None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token in "[{":
            if depth == 0:
                top_is_object = token == "{"
                expect_key = top_is_object
            depth += 1
            if depth - top_is_object > MAX_DEPTH:
                return key if top_is_object else None
        elif token in "]}":
            depth -= 1
        elif depth == 1 and top_is_object and token == ",":
            expect_key = True
        elif depth == 1 and expect_key and token.startswith('"'):
            try:
                key = json.loads(token)
            except ValueError:
                key = token[1:-1]
            expect_key = False
    return key if top_is_object else None


def _decode(data: bytes, label: str, line_no: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{label} line {line_no}: not valid UTF-8 (byte {exc.start})") from None


def _gunzip(data: bytes, label: str, max_bytes: int | None) -> bytes:
    """Decompress a gzip file; with ``max_bytes``, stop past ``GZIP_RATIO * max_bytes`` (a gzip bomb)."""
    cap = None if max_bytes is None else GZIP_RATIO * max_bytes
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            while chunk := gz.read(1 << 20):
                out += chunk
                if cap is not None and len(out) > cap:
                    raise CorpusError(f"{label}: decompresses to more than {_size(cap)} ({GZIP_RATIO} times the "
                                      f"upload limit of {_size(max_bytes)}); refusing it as a possible gzip bomb")
    except (OSError, EOFError, zlib.error) as exc:
        raise CorpusError(f"{label}: not a valid gzip file ({exc})") from None
    return bytes(out)


def _iter_jsonl(path: Path, label: str, max_bytes: int | None = None) -> Iterator[tuple[str, Any]]:
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = _gunzip(data, label, max_bytes)
    data = data.removeprefix(_BOM)
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        text = _decode(line, label, line_no).strip()
        if not text:
            continue
        where = f"{label} line {line_no}"
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise CorpusError(f"{where}: {_field_label(_deep_field(text))} is nested deeper than {MAX_DEPTH} "
                              "levels") from None
        _check_row(where, row)
        yield where, row


def _iter_csv(path: Path, label: str, max_bytes: int | None = None) -> Iterator[tuple[str, Any]]:
    data = path.read_bytes()
    for line_no, line in enumerate(data.split(b"\n"), start=1):
        _decode(line, label, line_no)  # report the exact line of bad bytes before parsing
    # The csv module refuses cells over its field size limit (128 KiB by default); raise it past our own limit
    # so an oversized cell is reported by name and length. The setting is process-wide and only ever raised.
    if csv.field_size_limit() <= MAX_FIELD_CHARS:
        csv.field_size_limit(4 * MAX_FIELD_CHARS)
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    row_no = 0
    while True:
        row_no += 1
        where = f"{label} row {row_no}"
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CorpusError(f"{where}: invalid CSV ({exc}); the limit is {MAX_FIELD_CHARS:,} characters a field"
                              if "field larger" in str(exc) else f"{where}: invalid CSV ({exc})") from None
        if None in row:
            raise CorpusError(f"{where}: more cells than header columns")
        row = {k: v for k, v in row.items() if v is not None}
        _check_row(where, row)
        yield where, row


def _iter_parquet(path: Path, label: str, max_bytes: int | None = None) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
        meta = pf.metadata
        unpacked = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    except Exception as exc:  # pyarrow raises several unrelated types for corrupt files
        raise CorpusError(f"{label}: cannot read parquet ({exc})") from None
    if max_bytes is not None and unpacked > GZIP_RATIO * max_bytes:
        raise CorpusError(f"{label}: decompresses to {_size(unpacked)}, more than {GZIP_RATIO} times the upload "
                          f"limit of {_size(max_bytes)}")
    batches = pf.iter_batches(batch_size=1024)
    row_no = 0
    while True:
        try:
            batch = next(batches, None)
            rows = [] if batch is None else batch.to_pylist()
        except Exception as exc:  # as above
            raise CorpusError(f"{label}: cannot read parquet ({exc})") from None
        if batch is None:
            return
        for row in rows:
            row_no += 1
            where = f"{label} row {row_no}"
            _check_row(where, row)
            yield where, row


_READERS = {".jsonl": _iter_jsonl, ".jsonl.gz": _iter_jsonl, ".ndjson": _iter_jsonl, ".csv": _iter_csv,
            ".parquet": _iter_parquet}


def _reader(path: Path, label: str) -> Callable[[Path, str, int | None], Iterator[tuple[str, Any]]]:
    name = path.name.lower()
    for suffix, reader in _READERS.items():
        if name.endswith(suffix):
            return reader
    raise CorpusError(f"{label}: unsupported file type; use .jsonl, .jsonl.gz, .parquet or .csv")


def iter_rows(
    path: str | os.PathLike[str], label: str | None = None, *, max_bytes: int | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Read the raw rows of a record file (``.jsonl``, ``.ndjson``, ``.jsonl.gz``, ``.csv``, ``.parquet``).

    File-level problems (missing file, unsupported type, over ``max_bytes``) are raised by the call itself;
    each row is checked before it is yielded: lone surrogates, strings over :data:`MAX_FIELD_CHARS` and values
    nested deeper than :data:`MAX_DEPTH` (:func:`check_value`). A UTF-8 byte order mark at the start of a JSONL
    or CSV file is accepted. Rows are *not* validated as records (see :func:`validate_record`), and a row that
    is not an object (e.g. a JSON array) is yielded as it is. Callers that must not half-ingest a file consume
    all rows before storing any.

    Args:
        path: The file.
        label: Name of the file in messages (default: the path as given).
        max_bytes: Upload limit on the file's size on disk (compressed size for ``.gz``); a gzip file may
            decompress to at most 20 times this, a parquet file hold at most 20 times this uncompressed.
            None: no limit.

    Returns:
        An iterator of ``(where, raw_row)``, where is e.g. ``"data.jsonl line 7"``, ``"x.csv row 3"`` or
        ``"x.parquet row 3"``.

    Raises:
        CorpusError: Naming the file, the line or row and the field, e.g. ``"<file>: 12.3 MB is over the upload
            limit of 10.0 MB"``, ``"<file> line 7: field 'prompt' has an invalid Unicode escape (lone surrogate
            \\ud800)"``. Raised by the call for file-level problems, by the iteration for rows.
    """
    path = Path(path)
    label = str(path) if label is None else label
    if not path.is_file():
        raise CorpusError(f"{label}: file not found")
    reader = _reader(path, label)
    if max_bytes is not None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        size = path.stat().st_size
        if size > max_bytes:
            raise CorpusError(f"{label}: {_size(size)} is over the upload limit of {_size(max_bytes)}")
    return reader(path, label, max_bytes)


def read_records(
    path: str | os.PathLike[str],
    *,
    task: str | None = None,
    split: str | None = None,
    source: str | None = None,
    max_bytes: int | None = None,
) -> list[Example]:
    """Read and validate a record file (``.jsonl``, ``.ndjson``, ``.jsonl.gz``, ``.parquet`` or ``.csv``).

    Every record is validated before anything is returned (rows are read by :func:`iter_rows`). ``task``,
    ``split`` and ``source`` fill records that lack the field (``source`` defaults to the file name); a missing
    ``id`` becomes the content hash. A given id that differs from the hash is kept (user ids). An id may repeat
    only for the same content in another task (one record, two memberships; see :class:`MembershipIndex`).

    Args:
        path: The file.
        task: Default task.
        split: Default split.
        source: Default source.
        max_bytes: Upload limit on the file size (see :func:`iter_rows`); None: no limit.

    Returns:
        The examples in file order.

    Raises:
        CorpusError: For an unreadable, empty, oversized or invalid file, naming the line/row and field.
    """
    path = Path(path)
    label = str(path)
    allowed = known_tasks()
    examples: list[Example] = []
    index = MembershipIndex()
    for where, raw in iter_rows(path, label, max_bytes=max_bytes):
        ex = validate_record(raw, where, task=task, split=split, source=source or path.name, tasks=allowed)
        examples.append(index.add(ex, where, where.removeprefix(label + " ")))
    if not examples:
        raise CorpusError(f"{label}: file is empty (no records)")
    return examples


def write_records(path: str | os.PathLike[str], examples: Iterable[Example]) -> None:
    """Write examples as JSONL (gzip if the name ends in ``.gz``), byte-for-byte reproducibly.

    Keys are sorted, non-ASCII is kept, and the gzip header has no name and mtime 0, so the same
    examples in the same order always give the same bytes.

    Args:
        path: Output file.
        examples: Records to write, in the order given.
    """
    path = Path(path)
    lines = [json.dumps(ex.to_dict(), ensure_ascii=False, sort_keys=True) + "\n" for ex in examples]
    data = "".join(lines).encode("utf-8")
    if path.name.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # atomic: a crash never leaves a half-written corpus file


def load_hf_dataset(
    dataset_id: str,
    *,
    task: str,
    prompt_field: str,
    response_field: str,
    split: str = "train",
    config: str | None = None,
) -> list[Example]:
    """Load examples through ``datasets`` (hub id, local data file or ``save_to_disk`` folder).

    Hub ids need network access; the default offline demo never calls this.

    Args:
        dataset_id: Hub id (``"openai/gsm8k"``), a local ``.json``/``.jsonl``/``.csv``/``.parquet``
            file, or a folder written by ``Dataset.save_to_disk``.
        task: Task of every record.
        prompt_field: Column holding the input (the content; the task adds its instruction when
            rendering, so define the instruction on the task, e.g. ``register_custom_task(...,
            instruction=...)``).
        response_field: Column holding the reference answer.
        split: Dataset split; ``validation`` maps to our ``dev``, ``test``/``probe`` keep their name,
            anything else becomes ``train``. Slices such as ``train[:100]`` work.
        config: Dataset configuration name.

    Returns:
        The validated examples, with ``source`` ``hf:<dataset_id>``.

    Raises:
        CorpusError: If a column is missing or a row is invalid.
    """
    import datasets

    path = Path(dataset_id)
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds[split.split("[")[0]]
    elif path.is_file():
        suffix = path.name.lower().removesuffix(".gz").rsplit(".", 1)[-1]
        builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}.get(suffix, suffix)
        ds = datasets.load_dataset(builder, data_files=str(path), split=split)
    else:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    label = f"{dataset_id} ({split})"
    for column in (prompt_field, response_field):
        if column not in ds.column_names:
            raise CorpusError(f"{label}: field {column!r} is missing; columns: {', '.join(ds.column_names)}")
    base = split.split("[")[0]
    our_split = {"validation": "dev", "valid": "dev", "dev": "dev", "test": "test", "probe": "probe"}.get(base, "train")
    allowed = known_tasks()
    examples, seen = [], set()
    for row_no, row in enumerate(ds, start=1):
        text, response = row[prompt_field], row[response_field]
        if isinstance(response, int | float) and not isinstance(response, bool):
            response = str(response)  # numeric answers (e.g. math) are fine as text
        raw = {"prompt": text, "response": response}
        ex = validate_record(
            raw, f"{label} row {row_no}", task=task, split=our_split, source=f"hf:{dataset_id}", tasks=allowed
        )
        if ex.id in seen:
            continue  # hub datasets contain exact duplicates; keep the first
        seen.add(ex.id)
        examples.append(ex)
    if not examples:
        raise CorpusError(f"{label}: dataset is empty")
    return examples
