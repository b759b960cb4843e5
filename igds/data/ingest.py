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
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from igds import settings
from igds.config import ConfigBase
from igds.constants import GENERAL
from igds.data.records import CorpusError, Record, check_value, example_id, iter_rows
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


def guess_mapping(columns: Iterable[str]) -> ColumnMapping:
    """The most likely mapping for a file's columns (a chat column, then Alpaca, then prompt/response)."""
    cols = list(columns)
    lower = {c.lower(): c for c in cols}
    split = next((lower[c] for c in ("split", "subset", "fold") if c in lower), "")
    source = next((lower[c] for c in ("source", "dataset", "origin") if c in lower), "")
    chat = next((lower[c] for c in _MESSAGE_NAMES if c in lower), None)
    if chat:
        return ColumnMapping(format="messages", messages=chat, split=split, source=source)
    if "instruction" in lower and "output" in lower:
        return ColumnMapping(format="alpaca", instruction=lower["instruction"], output=lower["output"],
                             input=lower.get("input", "input"), split=split, source=source)
    prompt = next((lower[c] for c in _PROMPT_NAMES if c in lower and lower[c] != source), cols[0] if cols else "")
    response = next((lower[c] for c in _RESPONSE_NAMES if c in lower and lower[c] != prompt),
                    next((c for c in cols if c not in (prompt, split, source)), "response"))
    return ColumnMapping(prompt=prompt, response=response, split=split, source=source)


def _text(raw: dict, column: str, where: str, *, optional: bool = False) -> str:
    value = raw.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        if optional:
            return ""
        raise CorpusError(f"{where}: field {column!r} is {'missing' if column not in raw else 'empty'}")
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CorpusError(f"{where}: field {column!r} must be text, got {type(value).__name__}")
    return str(value)


def _turns(value: Any, column: str, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):  # CSV cells and some exports hold the conversation as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise CorpusError(f"{where}: field {column!r} is not a JSON list of turns ({exc.msg})") from None
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


def map_row(raw: Any, mapping: ColumnMapping, where: str, default_source: str) -> tuple[Record, str]:
    """One raw row → ``(record, split label)`` under ``mapping``.

    Raises:
        CorpusError: naming ``where`` (file and line/row) and the field.
    """
    if not isinstance(raw, dict):
        raise CorpusError(f"{where}: expected an object with columns, got {type(raw).__name__}")
    for column in mapping.used():
        if column in raw:
            check_value(where, column, raw[column])
    meta: dict[str, Any] = {}
    if mapping.format == "prompt_response":
        content, response = _text(raw, mapping.prompt, where), _text(raw, mapping.response, where)
    elif mapping.format == "alpaca":
        instruction = _text(raw, mapping.instruction, where)
        extra = _text(raw, mapping.input, where, optional=True)
        content = f"{instruction}\n\n{extra}" if extra else instruction
        response = _text(raw, mapping.output, where)
    else:
        if mapping.messages not in raw:
            raise CorpusError(f"{where}: field {mapping.messages!r} is missing")
        content, response, meta = conversation_record(_turns(raw[mapping.messages], mapping.messages, where),
                                                      mapping.messages, where)
    label = _text(raw, mapping.split, where, optional=True).strip().lower() if mapping.split else ""
    source = (_text(raw, mapping.source, where, optional=True) if mapping.source else "") or default_source
    return Record(example_id(content, response), source, content, response, meta), label


@dataclass
class Preview:
    """What a file would become, before anything is stored.

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
    records: list[Record] = field(default_factory=list, repr=False)
    labels: list[str] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        """True when the file can be stored."""
        return self.n_problems == 0 and self.n_rows > 0

    def error(self) -> CorpusError:
        """The problems as one error (the first ten named)."""
        shown = "\n  ".join(self.problems[:10])
        more = f"\n  … and {self.n_problems - 10} more" if self.n_problems > 10 else ""
        return CorpusError(f"{self.n_problems} problem(s); nothing was stored:\n  {shown}{more}")


def hub_rows(dataset_id: str, config: str | None = None, split: str = "train") -> Iterator[tuple[str, Any]]:
    """Rows of a Hugging Face dataset split (needs ``IGDS_OFFLINE=0``; never used by the offline default).

    Raises:
        CorpusError: when IGDS runs offline or the dataset cannot be loaded.
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
    for row_no, row in enumerate(ds, start=1):
        yield f"{label} row {row_no}", row


def _source_rows(source: str | os.PathLike[str], max_bytes: int | None,
                 hub: tuple[str | None, str] | None) -> tuple[Iterator[tuple[str, Any]], str, str]:
    """``(rows, content hash, origin)`` of a local file or (with ``hub`` = (config, split)) a hub split."""
    if hub is not None:
        config, split = hub
        origin = f"{source}:{config}:{split}" if config else f"{source}:{split}"
        return hub_rows(str(source), config, split), "", origin
    path = Path(source).expanduser()
    if not path.is_file():
        raise CorpusError(f"{path}: file not found")
    return iter_rows(path, str(path.name), max_bytes=max_bytes), file_sha256(path), str(path.resolve())


def preview_source(source: str | os.PathLike[str], mapping: ColumnMapping | None = None, *, name: str = "",
                   n_show: int = 20, max_problems: int = 200, max_bytes: int | None = None,
                   hub: tuple[str | None, str] | None = None, progress: ProgressFn | None = None,
                   origin: str | None = None) -> Preview:
    """Read and validate a whole file under a mapping (guessed from the first row when None); store nothing.

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
    """
    progress = progress or null_progress
    try:
        rows, sha, read_from = _source_rows(source, max_bytes, hub)
        origin = origin or read_from
    except CorpusError as exc:  # the file as a whole: missing, of an unknown type, over the limit
        return Preview(columns=[], mapping=mapping or ColumnMapping(), rows=[], problems=[str(exc)], n_problems=1,
                       n_rows=0, n_records=0, split_counts={}, content_sha256="")
    default_source = name or Path(str(source)).name
    problems: list[str] = []
    n_problems = n_rows = 0
    columns: list[str] = []
    records: list[Record] = []
    labels: list[str] = []
    shown: list[dict] = []
    hasher = hashlib.sha256()

    def problem(message: str) -> None:
        nonlocal n_problems
        n_problems += 1
        if len(problems) < max_problems:
            problems.append(message)

    seen: dict[str, None] = {}  # every column of any row, in order of appearance
    absent: list[str] = []  # per-row "field is missing" messages, dropped for a column no row has
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
                record, label = map_row(raw, mapping, where, default_source)
            except CorpusError as exc:
                problem(str(exc))
                if str(exc).endswith("is missing"):
                    absent.append(str(exc))
                continue
            records.append(record)
            labels.append(label)
            if not sha:
                hasher.update(json.dumps([record.prompt, record.response, label]).encode())
            if len(shown) < n_show:
                shown.append({"row": n_rows, "prompt": record.prompt, "response": record.response,
                              "split": label, "source": record.source})
            if n_rows % 1000 == 0:
                progress(n_rows, 0, f"read {n_rows:,} rows")
    except CorpusError as exc:  # the reader itself stopped (bad JSON, bad bytes, a file over the limit)
        problem(f"{exc} (reading stopped here)")
    mapping = mapping or ColumnMapping()
    missing = [c for c in mapping.required() if seen and c not in seen]
    if missing:  # one problem for the file instead of one per row
        gone = {m for m in absent if any(m.endswith(f"field {c!r} is missing") for c in missing)}
        problems[:] = [p for p in problems if p not in gone]
        n_problems -= len(gone) - 1
        problems.insert(0, f"column(s) {', '.join(map(repr, missing))} not in the file; its columns: "
                           f"{', '.join(seen)}")
    if n_rows == 0 and not n_problems:
        problem(f"{Path(str(source)).name}: no rows")
    return Preview(columns=columns, mapping=mapping, rows=shown, problems=problems, n_problems=n_problems,
                   n_rows=n_rows, n_records=len({r.id for r in records}), split_counts=dict(Counter(labels)),
                   content_sha256=sha or hasher.hexdigest(), origin=origin, records=records, labels=labels)


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


def add_dataset(store, source: str | os.PathLike[str], name: str, mapping: ColumnMapping | None = None, *,
                max_bytes: int | None = None, hub: tuple[str | None, str] | None = None,
                progress: ProgressFn | None = None, origin: str | None = None) -> DatasetResult:
    """Validate a whole file (or hub split) and store it as a dataset in one transaction.

    Args:
        store: the workspace's :class:`igds.store.ActivationStore`.
        source: the file, or a hub dataset id with ``hub=(config, split)``.
        name: the dataset's name in the workspace.
        mapping: column mapping (guessed from the columns when None).
        max_bytes: refuse files larger than this.
        progress: reading and storing progress.

    Raises:
        CorpusError: listing every problem (line and field); nothing is stored.
        ValueError: a bad or taken name.
    """
    import time

    import pyarrow as pa

    t0 = time.perf_counter()
    progress = progress or null_progress
    check_dataset_name(name)
    pv = preview_source(source, mapping, name=name, max_bytes=max_bytes, hub=hub, progress=progress, origin=origin)
    if not pv.ok:
        raise pv.error()
    progress(pv.n_rows, pv.n_rows, f"storing {pv.n_rows:,} rows")
    recs = pv.records
    created = store.insert_dataset(
        {"name": name, "kind": "hub" if hub else "file", "origin": pv.origin, "content_sha256": pv.content_sha256,
         "mapping": pv.mapping.to_json(), "n_rows": pv.n_rows, "n_records": pv.n_records},
        pa.table({"id": [r.id for r in recs], "source": [r.source for r in recs],
                  "prompt": [r.prompt for r in recs], "response": [r.response for r in recs],
                  "meta": [json.dumps(r.meta, sort_keys=True, ensure_ascii=False) for r in recs]}),
        pa.table({"row_no": pa.array(range(1, len(recs) + 1), pa.int32()),
                  "example_id": pa.array([r.id for r in recs], pa.string()),
                  "split_label": pa.array([lb or None for lb in pv.labels], pa.string())}))
    progress(pv.n_rows, pv.n_rows, f"dataset {name}: {pv.n_rows:,} rows, {pv.n_records:,} records")
    return DatasetResult(name, pv.n_rows, pv.n_records, created, time.perf_counter() - t0)
