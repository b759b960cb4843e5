"""The record model and its readers/writers: local files and ``datasets`` ids.

Records are content, tasks format them. A :class:`Record` is an example's own content: ``id``,
``source``, ``prompt`` (the example's input text *without* any task's instruction), ``response`` (the
reference answer) and ``meta``; its id is a hash of (prompt, response), independent of any task. A
:class:`Membership` says which task uses it and in which split (``probe``/``dev``/``train``/``test``;
off-task records have task ``general``). The chat prompt is rendered at use by the task
(:mod:`igds.data.tasks`, :mod:`igds.modeling.encoding`).

In memory, readers return :class:`Example` s: one record paired with one membership. The same content
in two tasks is one record with two memberships, so two examples share an id (and their record).
Files are streamed by the bounded readers of :mod:`igds.data.readers` and validated completely before anything
is returned, so a bad file never ends up half-ingested; errors name the file, the line or row and the field.
Users normally import these names from :mod:`igds.data.corpus`.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from igds.constants import GENERAL
from igds.data.limits import (  # noqa: F401 (re-exported: these names have always been importable here)
    MAX_DEPTH,
    MAX_FIELD_CHARS,
    CorpusError,
    ReadLimits,
    check_value,
    parse_json_text,
)
from igds.data.readers import iter_rows

SPLITS = ("probe", "dev", "train", "test", "reference")
_FIELDS = ("id", "task", "source", "split", "prompt", "response", "meta")


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
        meta = parse_json_text(meta, where, "meta")
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


def read_records(
    path: str | os.PathLike[str],
    *,
    task: str | None = None,
    split: str | None = None,
    source: str | None = None,
    max_bytes: int | None = None,
    limits: ReadLimits | None = None,
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
        limits: Caps on what the file may hold (default: :class:`~igds.data.readers.ReadLimits` ()).

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
    for where, raw in iter_rows(path, label, max_bytes=max_bytes, limits=limits):
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
