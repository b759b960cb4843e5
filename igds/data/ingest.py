"""Bring your own data: read a file (JSONL, JSONL.gz, Parquet, CSV) or a hub split, map its columns to records,
preview every problem, and store it in the workspace as a dataset, all or nothing.

A :class:`ColumnMapping` covers the three shapes instruction data comes in:

- ``prompt_response``: one column holds the input, one the answer (``question``/``answer`` and similar
  names are guessed);
- ``alpaca``: ``instruction`` + optional ``input`` → the content, ``output`` → the response;
- ``messages``: a chat conversation, a list of ``{"role", "content"}`` turns (ShareGPT's ``{"from",
  "value"}`` too). The last assistant turn is the response and everything before it the prompt: a lone user
  turn is the content as it is; a longer conversation (a system turn, earlier turns) is kept as the
  conversation in ``meta["messages"]`` and written as a role-labelled transcript into the content, so the
  model reads it and the token scope counts it as the example's own text.

A dataset holds records, not memberships: tasks (:mod:`igds.workflow.catalog`) decide which rows are probe,
dev, test or pool items. Ingest is idempotent (the same file with the same mapping under the same name is a
no-op; the same content under any name is one record) and records its provenance: the file's sha256, the
mapping and the row count.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igds import settings
from igds.config import ConfigBase
from igds.constants import GENERAL
from igds.data.limits import DEFAULT_LIMITS, CorpusError, ReadLimits, check_value, parse_json_text, too_many_rows
from igds.data.readers import iter_rows
from igds.data.records import Record, example_id
from igds.hashing import file_sha256
from igds.progress import ProgressFn, null_progress

FORMATS = ("prompt_response", "alpaca", "messages")
# Column names tried, in order, when guessing a mapping.
_PROMPT_NAMES = ("prompt", "question", "query", "input", "text", "source", "instruction", "problem")
_RESPONSE_NAMES = ("response", "answer", "output", "completion", "target", "solution", "label", "summary")
_MESSAGE_NAMES = ("messages", "conversations", "conversation", "turns", "dialog")
_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
          "model": "assistant", "bot": "assistant"}
# Labels of a split column: what each means for a task (anything else, e.g. ``train``, is no eval split).
SPLIT_LABELS = {"probe": "probe", "dev": "dev", "validation": "dev", "valid": "dev", "val": "dev", "test": "test"}
RESERVED_NAMES = ("demo", "tiny-demo", GENERAL)
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_UPLOAD_BYTES = 200 * 1024 * 1024  # the dashboard's upload limit (.streamlit/config.toml maxUploadSize)


@dataclass(frozen=True, kw_only=True)
class ColumnMapping(ConfigBase):
    """Which columns of a file make a record.

    Args:
        format: ``prompt_response``, ``alpaca`` or ``messages``.
        prompt: input column (``prompt_response``).
        response: answer column (``prompt_response``).
        instruction: instruction column (``alpaca``).
        input: optional input column appended to the instruction (``alpaca``; empty cells are fine).
        output: answer column (``alpaca``).
        messages: conversation column (``messages``).
        split: optional column whose values (probe, dev/validation, test) a task can split by.
        source: optional column naming each row's source (default: the dataset name).
    """

    format: str = field(default="prompt_response", metadata={"help": "prompt_response | alpaca | messages"})
    prompt: str = field(default="prompt", metadata={"help": "input column (prompt_response)"})
    response: str = field(default="response", metadata={"help": "answer column (prompt_response)"})
    instruction: str = field(default="instruction", metadata={"help": "instruction column (alpaca)"})
    input: str = field(default="input", metadata={"help": "optional input column (alpaca)"})
    output: str = field(default="output", metadata={"help": "answer column (alpaca)"})
    messages: str = field(default="messages", metadata={"help": "conversation column (messages)"})
    split: str = field(default="", metadata={"help": "optional split column (probe / dev / test labels)"})
    source: str = field(default="", metadata={"help": "optional source column"})

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ValueError(f"column mapping format {self.format!r} is not one of {', '.join(FORMATS)}")

    def required(self) -> tuple[str, ...]:
        """The columns every row must have."""
        return {"prompt_response": (self.prompt, self.response), "alpaca": (self.instruction, self.output),
                "messages": (self.messages,)}[self.format]

    def used(self) -> tuple[str, ...]:
        """Every column the mapping reads."""
        extra = (self.input,) if self.format == "alpaca" else ()
        return (*self.required(), *extra, *(c for c in (self.split, self.source) if c))

    def role(self, column: str) -> str:
        """What the mapping calls ``column`` (``prompt``, ``output``, ``messages``, ...), for messages."""
        roles = {"prompt_response": ("prompt", "response"), "alpaca": ("instruction", "input", "output"),
                 "messages": ("messages",)}[self.format] + ("split", "source")
        return next((r for r in roles if getattr(self, r) == column), column)


def guess_mapping(columns: Iterable[str]) -> ColumnMapping:
    """The most likely mapping for a file's columns (a chat column, then Alpaca, then prompt/response)."""
    cols = list(columns)
    lower = {c.lower(): c for c in cols}
    split = next((lower[c] for c in ("split", "subset", "fold") if c in lower), "")
    source = next((lower[c] for c in ("source", "dataset", "origin") if c in lower), "")
    chat = next((lower[c] for c in _MESSAGE_NAMES if c in lower), None)
    if chat:
        return ColumnMapping(format="messages", messages=chat, split=split, source=source)
    if "instruction" in lower and ("output" in lower or "input" in lower):  # a row may lack its output
        return ColumnMapping(format="alpaca", instruction=lower["instruction"], output=lower.get("output", "output"),
                             input=lower.get("input", "input"), split=split, source=source)
    prompt = next((lower[c] for c in _PROMPT_NAMES if c in lower and lower[c] != source), cols[0] if cols else "")
    response = next((lower[c] for c in _RESPONSE_NAMES if c in lower and lower[c] != prompt),
                    next((c for c in cols if c not in (prompt, split, source)), "response"))
    return ColumnMapping(prompt=prompt, response=response, split=split, source=source)


class MissingField(CorpusError):
    """A mapped column a row lacks (the key is absent); ``column`` names it."""

    def __init__(self, where: str, column: str, role: str):
        super().__init__(f"{where}: field {column!r} is missing (the mapping's {role} column)")
        self.column = column


def _text(raw: dict, column: str, where: str, mapping: ColumnMapping, *, optional: bool = False) -> str:
    """The text of a mapped cell. An absent key, a null (Parquet, JSON) and an empty or blank cell (CSV) are all
    missing values: refused, or ``""`` when ``optional``; NaN (a float column's missing value) likewise."""
    value = raw.get(column)
    blank = value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and not math.isfinite(value))
    if not blank:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise CorpusError(f"{where}: field {column!r} must be text, got {type(value).__name__}")
        return str(value)
    if optional:
        return ""
    role = mapping.role(column)
    if column not in raw:
        raise MissingField(where, column, role)
    how = "null" if value is None else ("empty" if isinstance(value, str) else str(value).replace("nan", "NaN"))
    raise CorpusError(f"{where}: field {column!r} is {how} (the mapping's {role} column)")


def _turns(value: Any, column: str, where: str, limits: ReadLimits) -> list[dict[str, str]]:
    if isinstance(value, str):  # CSV cells and some exports hold the conversation as JSON text
        value = parse_json_text(value, where, column, limits=limits)
    if not isinstance(value, list) or not value:
        raise CorpusError(f"{where}: field {column!r} must be a non-empty list of turns, got "
                          f"{'an empty list' if value == [] else type(value).__name__}")
    turns = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise CorpusError(f"{where}: field {column!r} turn {i + 1} must be an object with role and content")
        role = turn.get("role", turn.get("from"))
        content = turn.get("content", turn.get("value"))
        if role not in _ROLES:
            raise CorpusError(f"{where}: field {column!r} turn {i + 1} has role {role!r}; "
                              f"use one of {', '.join(sorted(_ROLES))}")
        if not isinstance(content, str):
            raise CorpusError(f"{where}: field {column!r} turn {i + 1} content must be text, got "
                              f"{type(content).__name__}")
        turns.append({"role": _ROLES[role], "content": content})
    return turns


def transcript(turns: list[dict[str, str]]) -> str:
    """The content of a conversation that is more than one user turn: its turns, role-labelled."""
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in turns)


def conversation_record(turns: list[dict[str, str]], column: str, where: str) -> tuple[str, str, dict]:
    """``(content, response, meta)`` of a conversation: the last assistant turn answers everything before it.

    Raises:
        CorpusError: no assistant turn, an empty answer, or no user turn before it.
    """
    last = max((i for i, t in enumerate(turns) if t["role"] == "assistant"), default=None)
    if last is None:
        raise CorpusError(f"{where}: field {column!r} has no assistant turn to use as the response")
    history, response = turns[:last], turns[last]["content"]
    if not response.strip():
        raise CorpusError(f"{where}: field {column!r} turn {last + 1} (the response) is empty")
    if not any(t["role"] == "user" and t["content"].strip() for t in history):
        raise CorpusError(f"{where}: field {column!r} has no user turn before the last assistant turn")
    late = next((i for i, t in enumerate(history) if t["role"] == "system" and i > 0), None)
    if late is not None:
        raise CorpusError(f"{where}: field {column!r} turn {late + 1} is a system turn after the conversation started")
    first = 1 if history[0]["role"] == "system" else 0
    if history[first]["role"] != "user" or history[-1]["role"] != "user":
        bad = first + 1 if history[first]["role"] != "user" else last
        raise CorpusError(f"{where}: field {column!r} turn {bad} is an assistant turn where a user turn must be "
                          "(a conversation opens with a user turn and the answer follows one)")
    meta: dict[str, Any] = {}
    if len(turns) > last + 1:
        meta["dropped_turns"] = len(turns) - last - 1  # turns after the answer have no answer of their own
    if len(history) == 1:
        return history[0]["content"], response, meta
    return transcript(history), response, {**meta, "messages": history}


def map_row(raw: Any, mapping: ColumnMapping, where: str, default_source: str, *,
            limits: ReadLimits = DEFAULT_LIMITS) -> tuple[Record, str]:
    """One raw row → ``(record, split label)`` under ``mapping``.

    Raises:
        CorpusError: naming ``where`` (file and line/row) and the field (:class:`MissingField` for an absent
            column, named as the mapping calls it).
    """
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: expected an object with columns, got {type(raw).__name__}")
    for column in mapping.used():
        if column in raw:
            check_value(where, column, raw[column], limits=limits)
    meta: dict[str, Any] = {}
    if mapping.format == "prompt_response":
        content, response = _text(raw, mapping.prompt, where, mapping), _text(raw, mapping.response, where, mapping)
    elif mapping.format == "alpaca":
        instruction = _text(raw, mapping.instruction, where, mapping)
        extra = _text(raw, mapping.input, where, mapping, optional=True)
        content = f"{instruction}\n\n{extra}" if extra else instruction
        response = _text(raw, mapping.output, where, mapping)
    else:
        if mapping.messages not in raw:
            raise MissingField(where, mapping.messages, "messages")
        cell = raw[mapping.messages]
        if cell is None or (isinstance(cell, str) and not cell.strip()):  # a null, or an empty CSV cell
            how = "null" if cell is None else "empty"
            raise CorpusError(f"{where}: field {mapping.messages!r} is {how} (the mapping's messages column)")
        turns = _turns(raw[mapping.messages], mapping.messages, where, limits)
        content, response, meta = conversation_record(turns, mapping.messages, where)
    label = _text(raw, mapping.split, where, mapping, optional=True).strip().lower() if mapping.split else ""
    source = (_text(raw, mapping.source, where, mapping, optional=True) if mapping.source else "") or default_source
    return Record(example_id(content, response), source, content, response, meta), label


@dataclass
class Preview:
    """What a file would become, before anything is stored: counts and the rows shown, never the whole file.

    Attributes:
        columns: the file's columns (of its first rows).
        mapping: the mapping used (guessed when none was given).
        rows: the first mapped rows (prompt, response, split, source) for display.
        problems: every problem found (capped at ``max_problems``; ``n_problems`` counts all).
        n_rows: rows read; n_records: distinct records among the good rows.
        split_counts: rows per split label (when a split column is mapped).
    """

    columns: list[str]
    mapping: ColumnMapping
    rows: list[dict]
    problems: list[str]
    n_problems: int
    n_rows: int
    n_records: int
    split_counts: dict[str, int]
    content_sha256: str
    origin: str = ""

    @property
    def ok(self) -> bool:
        """True when the file can be stored."""
        return self.n_problems == 0 and self.n_rows > 0

    def error(self) -> CorpusError:
        """The problems as one error (the first ten named)."""
        shown = "\n  ".join(self.problems[:10])
        more = f"\n  … and {self.n_problems - 10} more" if self.n_problems > 10 else ""
        return CorpusError(f"{self.n_problems} problem(s); nothing was stored:\n  {shown}{more}")


def hub_rows(dataset_id: str, config: str | None = None, split: str = "train", *,
             limits: ReadLimits = DEFAULT_LIMITS) -> Iterator[tuple[str, Any]]:
    """Rows of a Hugging Face dataset split (needs ``IGDS_OFFLINE=0``; never used by the offline default).

    The split is memory-mapped by ``datasets`` and read one row at a time, up to ``limits.max_rows`` rows.

    Raises:
        CorpusError: when IGDS runs offline, the dataset cannot be loaded or it has more than ``max_rows`` rows.
    """
    if settings.offline():
        raise CorpusError(f"{dataset_id}: a hub dataset needs network access and IGDS runs offline; set "
                          "IGDS_OFFLINE=0, or download the file and add it by path")
    import datasets

    try:
        ds = datasets.load_dataset(dataset_id, config, split=split)
    except Exception as exc:  # datasets raises many unrelated types (connection, missing config, ...)
        raise CorpusError(f"{dataset_id}: cannot load split {split!r} ({exc})") from None
    label = f"{dataset_id}:{split}"
    if len(ds) > limits.max_rows:
        raise too_many_rows(f"{label} row {limits.max_rows + 1:,}", limits)
    for row_no, row in enumerate(ds, start=1):
        yield f"{label} row {row_no}", row


def _source_rows(source: str | os.PathLike[str], max_bytes: int | None, hub: tuple[str | None, str] | None,
                 limits: ReadLimits) -> tuple[Iterator[tuple[str, Any]], str, str]:
    """``(rows, content hash, origin)`` of a local file or (with ``hub`` = (config, split)) a hub split."""
    if hub is not None:
        config, split = hub
        origin = f"{source}:{config}:{split}" if config else f"{source}:{split}"
        return hub_rows(str(source), config, split, limits=limits), "", origin
    path = Path(source).expanduser()
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    rows = iter_rows(path, str(path.name), max_bytes=max_bytes, limits=limits)
    return rows, file_sha256(path), str(path.resolve())


def preview_source(source: str | os.PathLike[str], mapping: ColumnMapping | None = None, *, name: str = "",
                   n_show: int = 20, max_problems: int = 200, max_bytes: int | None = None,
                   hub: tuple[str | None, str] | None = None, progress: ProgressFn | None = None,
                   origin: str | None = None, limits: ReadLimits | None = None) -> Preview:
    """Read and validate a whole file under a mapping (guessed from the first row when None); store nothing.

    The file is streamed (:func:`igds.data.readers.iter_rows`): the preview keeps its counts, the distinct ids
    and the rows it shows, so its memory grows with the largest row, not with the file.

    Args:
        source: a local file, or a hub dataset id when ``hub`` is given.
        name: the dataset name (each record's default source).
        n_show: mapped rows kept for display.
        max_problems: problems listed (all are counted).
        max_bytes: refuse files larger than this (the upload limit).
        hub: ``(config, split)`` to read ``source`` as a hub dataset.
        progress: called every 1,000 rows.
        origin: where the data came from, as recorded (default: the file's path or the hub split); an upload
            names the uploaded file rather than the temporary copy it was read from.
        limits: caps on what the file may hold (default: :class:`~igds.data.readers.ReadLimits` ()).
    """
    return _scan(source, mapping, name=name, n_show=n_show, max_problems=max_problems, max_bytes=max_bytes, hub=hub,
                 progress=progress, origin=origin, limits=limits or DEFAULT_LIMITS)


def _scan(source: str | os.PathLike[str], mapping: ColumnMapping | None, *, name: str, n_show: int,
          max_problems: int, max_bytes: int | None, hub: tuple[str | None, str] | None, progress: ProgressFn | None,
          origin: str | None, limits: ReadLimits, keep: Callable[[Record, str], None] | None = None) -> Preview:
    """:func:`preview_source`, handing each good row's ``(record, split label)`` to ``keep`` as it is read."""
    progress = progress or null_progress
    try:
        rows, sha, read_from = _source_rows(source, max_bytes, hub, limits)
        origin = origin or read_from
    except CorpusError as exc:  # the file as a whole: missing, of an unknown type, over the limit
        return Preview(columns=[], mapping=mapping or ColumnMapping(), rows=[], problems=[str(exc)], n_problems=1,
                       n_rows=0, n_records=0, split_counts={}, content_sha256="")
    default_source = name or Path(str(source)).name
    problems: list[str] = []
    listed_missing: list[str | None] = []  # per listed problem: the column it says is missing, if it is that
    n_problems = n_rows = 0
    columns: list[str] = []
    ids: set[int] = set()
    split_counts: Counter[str] = Counter()
    n_missing: Counter[str] = Counter()  # rows lacking each mapped column
    first_missing: dict[str, str] = {}
    shown: list[dict] = []
    hasher = hashlib.sha256()

    def problem(message: str, column: str | None = None) -> None:
        nonlocal n_problems
        n_problems += 1
        if len(problems) < max_problems:
            problems.append(message)
            listed_missing.append(column)

    seen: dict[str, None] = {}  # every column of any row, in order of appearance
    try:
        for where, raw in rows:
            n_rows += 1
            if isinstance(raw, dict):
                seen.update(dict.fromkeys(raw))
                if not columns:
                    columns = list(raw)
                    mapping = mapping or guess_mapping(columns)
            mapping = mapping or ColumnMapping()
            try:
                record, label = map_row(raw, mapping, where, default_source, limits=limits)
            except MissingField as exc:
                problem(str(exc), exc.column)
                n_missing[exc.column] += 1
                first_missing.setdefault(exc.column, where)
                continue
            except CorpusError as exc:
                problem(str(exc))
                continue
            ids.add(int(record.id, 16))
            split_counts[label] += 1
            if keep is not None:
                keep(record, label)
            if not sha:
                hasher.update(json.dumps([record.prompt, record.response, label]).encode())
            if len(shown) < n_show:
                shown.append({"row": n_rows, "prompt": record.prompt, "response": record.response,
                              "split": label, "source": record.source})
            if n_rows % 1000 == 0:
                progress(n_rows, 0, f"read {n_rows:,} rows")
    except CorpusError as exc:  # the reader itself stopped (bad JSON, bad bytes, a file over a cap)
        problem(str(exc) if "reading stopped" in str(exc) else f"{exc} (reading stopped here)")
    mapping = mapping or ColumnMapping()
    missing = [c for c in mapping.required() if seen and c not in seen]
    if missing:  # one problem for the file instead of one per row
        kept = [(p, c) for p, c in zip(problems, listed_missing, strict=True) if c not in missing]
        problems[:] = [p for p, _ in kept]
        n_problems -= sum(n_missing[c] for c in missing) - 1
        where = next((w for c, w in first_missing.items() if c in missing), default_source)  # the first such row
        roles = ", ".join(mapping.role(c) for c in missing)
        problems.insert(0, f"{where}: column(s) {', '.join(map(repr, missing))} not in the file (the mapping's "
                           f"{roles} column(s)); its columns: {', '.join(seen)}")
    if n_rows == 0 and not n_problems:
        problem(f"{Path(str(source)).name}: no rows")
    return Preview(columns=columns, mapping=mapping, rows=shown, problems=problems, n_problems=n_problems,
                   n_rows=n_rows, n_records=len(ids), split_counts=dict(split_counts),
                   content_sha256=sha or hasher.hexdigest(), origin=origin)


def check_dataset_name(name: str) -> str:
    """Refuse a dataset name outside ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}`` or reserved for the shipped data."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"dataset name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                         "letter or digit")
    if name in RESERVED_NAMES:
        raise ValueError(f"dataset name {name!r} is reserved for the shipped data; choose another")
    return name


@dataclass(frozen=True)
class DatasetResult:
    """What :func:`add_dataset` stored."""

    name: str
    n_rows: int
    n_records: int
    created: bool  # False: the same file and mapping were already stored under this name (nothing written)
    seconds: float


class _Collected:
    """The good rows of a file as Arrow batches (text in Arrow buffers, no Python object kept per row)."""

    BATCH = 4096

    def __init__(self) -> None:
        self.batches: list = []
        self.pending: list[tuple[Record, str]] = []

    def __call__(self, record: Record, label: str) -> None:
        self.pending.append((record, label))
        if len(self.pending) >= self.BATCH:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if self.pending:
            recs = [r for r, _ in self.pending]
            self.batches.append(pa.record_batch({
                "id": [r.id for r in recs], "source": [r.source for r in recs], "prompt": [r.prompt for r in recs],
                "response": [r.response for r in recs],
                "meta": [json.dumps(r.meta, sort_keys=True, ensure_ascii=False) for r in recs],
                "split_label": pa.array([lb or None for _, lb in self.pending], pa.string())}))
            self.pending = []

    def tables(self):
        """``(records, rows)`` as :meth:`ActivationStore.insert_dataset` takes them (at least one row kept)."""
        import pyarrow as pa

        self.flush()
        table = pa.Table.from_batches(self.batches)
        rows = pa.table({"row_no": pa.array(range(1, table.num_rows + 1), pa.int32()), "example_id": table["id"],
                         "split_label": table["split_label"]})
        return table.select(["id", "source", "prompt", "response", "meta"]), rows


def add_dataset(store, source: str | os.PathLike[str], name: str, mapping: ColumnMapping | None = None, *,
                max_bytes: int | None = None, hub: tuple[str | None, str] | None = None,
                progress: ProgressFn | None = None, origin: str | None = None,
                limits: ReadLimits | None = None) -> DatasetResult:
    """Validate a whole file (or hub split) and store it as a dataset in one transaction.

    The file is read once, as a stream; the good rows are kept as Arrow batches until the file has been read to
    the end without a problem, then stored; on any problem nothing is stored. Memory grows with the rows stored
    (their text), bounded by ``limits.max_decompressed_bytes``, and with the largest row.

    Args:
        store: the workspace's :class:`igds.store.ActivationStore`.
        source: the file, or a hub dataset id with ``hub=(config, split)``.
        name: the dataset's name in the workspace.
        mapping: column mapping (guessed from the columns when None).
        max_bytes: refuse files larger than this.
        progress: reading and storing progress.
        limits: caps on what the file may hold (default: :class:`~igds.data.readers.ReadLimits` ()).

    Raises:
        CorpusError: listing every problem (line and field); nothing is stored.
        ValueError: a bad or taken name.
    """
    import time

    t0 = time.perf_counter()
    progress = progress or null_progress
    check_dataset_name(name)
    collected = _Collected()
    pv = _scan(source, mapping, name=name, n_show=0, max_problems=200, max_bytes=max_bytes, hub=hub,
               progress=progress, origin=origin, limits=limits or DEFAULT_LIMITS, keep=collected)
    if not pv.ok:
        raise pv.error()
    progress(pv.n_rows, pv.n_rows, f"storing {pv.n_rows:,} rows")
    records, rows = collected.tables()
    created = store.insert_dataset(
        {"name": name, "kind": "hub" if hub else "file", "origin": pv.origin, "content_sha256": pv.content_sha256,
         "mapping": pv.mapping.to_json(), "n_rows": pv.n_rows, "n_records": pv.n_records}, records, rows)
    progress(pv.n_rows, pv.n_rows, f"dataset {name}: {pv.n_rows:,} rows, {pv.n_records:,} records")
    return DatasetResult(name, pv.n_rows, pv.n_records, created, time.perf_counter() - t0)
