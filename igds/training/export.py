"""Export a selection as a fine-tuning dataset, plus a manifest.

Record formats keep every field and read back with :func:`read_export`: ``jsonl``, ``parquet`` and ``hf`` (a
``datasets`` ``save_to_disk`` folder), with columns id, task, source, split, prompt (the user message as the
task renders it), content, response and meta. Training formats are what fine-tuning tools read, each row
rendered through its task (:func:`igds.data.tasks.record_task`: system prompt, instruction + content):

* ``messages``: ``data.jsonl`` of ``{"messages": [system?, user, assistant], "id"}`` (TRL ``SFTTrainer``'s
  conversational language-modeling form).
* ``prompt_completion``: ``data.jsonl`` of ``{"prompt": [system?, ..., user], "completion": [assistant],
  "id"}`` (TRL's conversational prompt-completion form: the loss covers the completion only).
* ``alpaca``: ``data.json`` (a JSON list) of ``instruction``/``input``/``output``/``system`` (+ ``history``)
  and ``dataset_info.json``, LLaMA-Factory's alpaca entry. LLaMA-Factory joins instruction and input with
  one newline where the task puts a blank line.
* ``sharegpt``: ``data.json`` of ``{"conversations": [{"from": "human"|"gpt", "value"}], "system", "id"}``
  and ``dataset_info.json``, LLaMA-Factory's sharegpt entry.

A record whose ``meta`` holds ``"messages"`` (the conversation before the final answer, as the chat-format
ingest stores it) is exported as that conversation: the task's instruction opens its first user turn, the
task's system prompt is added only if the conversation has no system turn, and the record's response is the
final assistant turn.

An export is the folder ``<export_dir>/<name>/`` holding the data and ``manifest.json``: the caller's
lineage, counts, per-source / per-task / per-split composition, a content hash (sorted example ids +
lineage), each file's sha256 and size, the creation time and the igds version. Names come from users, so
they are confined to the export folder. The folder is written under a temporary name and renamed into
place, so a crash never leaves a half-written export.

An export is named after the selection it holds (:func:`default_export_name`: the selection's name plus the
start of its id), and a folder holding another selection's export (the lineages' ``selection_id`` differ) is
never replaced, ``overwrite`` or not. Exporting the same selection again with the same content rewrites the
folder (reported as ``unchanged``); the same selection whose content changed needs ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from igds import __version__, settings
from igds.config import ConfigBase
from igds.data.records import Example
from igds.data.tasks import SEPARATOR
from igds.hashing import file_sha256

# Formats that keep every field and read back as examples (read_export), then the fine-tuning tools' formats.
RECORD_FORMATS = ("jsonl", "parquet", "hf")
TRAINING_FORMATS = ("messages", "prompt_completion", "alpaca", "sharegpt")
EXPORT_FORMATS = RECORD_FORMATS + TRAINING_FORMATS
EXPORTS_DIR = "exports"
MANIFEST_FILENAME = "manifest.json"
DATASET_INFO_FILENAME = "dataset_info.json"  # LLaMA-Factory's dataset registry, for alpaca and sharegpt
DATA_NAMES = {"jsonl": "data.jsonl", "parquet": "data.parquet", "hf": "data", "messages": "data.jsonl",
              "prompt_completion": "data.jsonl", "alpaca": "data.json", "sharegpt": "data.json"}
_ROLES = ("system", "user", "assistant")
# ``prompt`` is the user message as the task renders it (instruction + content), ``content`` the record's own
# input text: a consumer can train on the rendered message or re-render the content its own way.
_COLUMNS = ("id", "task", "source", "split", "prompt", "content", "response", "meta")
# One path component of safe characters; no leading dot, so it can clash neither with ".", ".." nor
# with the hidden temporary folders written next to exports.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
ID_CHARS = 8  # characters of the selection id in a default export name


def check_export_name(name: str) -> str:
    """Reject export names that could leave the export folder.

    Args:
        name: User-given export name.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: For empty names, ``..``, absolute paths, path separators or other characters
            outside ``[A-Za-z0-9._-]`` (first character a letter or digit, at most 128).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("export name is empty; use letters, digits, '.', '_' or '-'")
    if os.path.isabs(name) or "/" in name or "\\" in name or ".." in name:
        raise ValueError(f"export name {name!r} must be a plain folder name: no '..', no absolute path, "
                         "no path separators")
    if not _NAME_RE.fullmatch(name):
        raise ValueError(f"export name {name!r} may only use letters, digits, '.', '_' and '-', must start with "
                         "a letter or digit and be at most 128 characters")
    return name


def default_export_name(selection_name: str, selection_id: str) -> str:
    """The export name of a selection: its name made safe (runs of other characters become ``-``) plus the
    first :data:`ID_CHARS` characters of its id, so two selections of one name never share a folder.

    Args:
        selection_name: The stored selection's name (user text).
        selection_id: Its id.

    Returns:
        A name :func:`check_export_name` accepts, e.g. ``igds-summarization-0.5-vetted-3f9c0a1b``.
    """
    short = _UNSAFE.sub("-", str(selection_id))[:ID_CHARS].strip("-._") or "selection"
    stem = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", str(selection_name))).strip("-._")
    stem = stem[:127 - len(short)].rstrip("-._")
    return check_export_name(f"{stem}-{short}" if stem else short)


_FMT_HELP = ("format: jsonl | parquet | hf (datasets save_to_disk) keep every field; messages | prompt_completion "
             "(TRL) | alpaca | sharegpt (LLaMA-Factory) are fine-tuning files")


@dataclass(frozen=True, kw_only=True)
class ExportConfig(ConfigBase):
    """How a selection is exported.

    Args:
        name: Folder name under the export directory (letters, digits, ``.``, ``_``, ``-``).
        fmt: ``jsonl``, ``parquet`` or ``hf`` (a ``datasets`` ``save_to_disk`` folder), which keep every
            field; ``messages`` or ``prompt_completion`` (TRL), ``alpaca`` or ``sharegpt`` (LLaMA-Factory).
        overwrite: Replace an existing export of the same selection whose content hash differs (an export of
            another selection is never replaced).
    """

    name: str = field(default="selection", metadata={"help": "export folder name under <home>/exports"})
    fmt: str = field(default="jsonl", metadata={"help": _FMT_HELP})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing export of this selection with other "
                                                              "content (never another selection's)"})

    def __post_init__(self):
        check_export_name(self.name)
        if self.fmt not in EXPORT_FORMATS:
            raise ValueError(f"fmt must be one of {EXPORT_FORMATS}, not {self.fmt!r}")


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export_selection` wrote."""

    path: Path
    manifest: dict[str, Any]
    content_hash: str
    n_examples: int
    unchanged: bool  # an identical export (same content hash) was already there and has been rewritten


def default_export_dir() -> Path:
    """``<IGDS home>/exports``."""
    return settings.home() / EXPORTS_DIR


def content_hash(example_ids: list[str], lineage: dict[str, Any]) -> str:
    """sha256 over the sorted example ids and the canonical lineage JSON (independent of example order)."""
    h = hashlib.sha256()
    for eid in sorted(example_ids):
        h.update(eid.encode())
        h.update(b"\n")
    h.update(b"\0")
    h.update(_lineage_json(lineage).encode())
    return h.hexdigest()


def _lineage_json(lineage: dict[str, Any]) -> str:
    try:
        return json.dumps(lineage, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"lineage must be JSON-serializable (no NaN): {exc}") from None


def _row(ex: Example) -> dict[str, Any]:
    """One exported row (see ``_COLUMNS``)."""
    from igds.data.tasks import record_task

    return {"id": ex.id, "task": ex.task, "source": ex.source, "split": ex.split,
            "prompt": record_task(ex.task).format_prompt(ex.content), "content": ex.content,
            "response": ex.response, "meta": ex.meta}


def _rows(examples: list[Example]) -> dict[str, list]:
    """Column lists; ``meta`` as JSON text because per-record dicts have no common Arrow schema."""
    cols: dict[str, list] = {c: [] for c in _COLUMNS}
    for ex in examples:
        for c, v in _row(ex).items():
            cols[c].append(json.dumps(v, sort_keys=True, ensure_ascii=False) if c == "meta" else v)
    return cols


def conversation(ex: Example) -> list[dict[str, str]]:
    """The chat turns of an example before its answer, rendered through its task.

    A plain record gives ``[system?, user]`` (:meth:`TaskSpec.messages`: the task's system prompt if it has one,
    then instruction + blank line + content). A record whose ``meta`` holds ``"messages"`` (the conversation
    before the answer, as the chat-format ingest stores it: ``{"role", "content"}`` dicts, an optional system
    turn first, then user and assistant turns) gives that conversation, with the task's instruction opening its
    first user turn and the task's system prompt added only when it has no system turn. Consecutive turns of
    one role are joined with a blank line, since chat templates and LLaMA-Factory need alternating turns.

    Args:
        ex: The example.

    Returns:
        ``{"role", "content"}`` dicts: an optional system turn, then user and assistant turns alternating,
        starting and ending with a user turn.

    Raises:
        ValueError: If ``meta["messages"]`` is not such a conversation (naming the example id and the turn).
    """
    from igds.data.tasks import record_task

    spec = record_task(ex.task)
    out = _stored_turns(ex)
    if out is None:
        return spec.messages(ex.content)
    first_user = 1 if out[0]["role"] == "system" else 0
    out[first_user] = {"role": "user", "content": spec.format_prompt(out[first_user]["content"])}
    if out[0]["role"] != "system" and spec.system is not None:
        out.insert(0, {"role": "system", "content": spec.system})
    return out


def _stored_turns(ex: Example) -> list[dict[str, str]] | None:
    """``meta["messages"]`` checked and with same-role runs joined (a new list); None for a plain record."""
    turns = ex.meta.get("messages") if isinstance(ex.meta, dict) else None
    if turns is None:
        return None
    where = f"example {ex.id!r}: meta 'messages'"
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"{where} must be a non-empty list of {{'role', 'content'}} objects")
    out: list[dict[str, str]] = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("content"), str) or turn.get("role") not in _ROLES:
            raise ValueError(f"{where} turn {i}: expected {{'role': one of {', '.join(_ROLES)}, 'content': a "
                             f"string}}, got {turn!r:.120}")
        role, content = turn["role"], turn["content"]
        if role == "system" and i > 0:
            raise ValueError(f"{where} turn {i}: a system turn is only allowed first")
        if role == "assistant" and (not out or out[-1]["role"] == "system"):
            raise ValueError(f"{where} turn {i}: the conversation must start with a user turn (after an optional "
                             "system turn), not an assistant turn")
        if out and out[-1]["role"] == role:
            out[-1] = {"role": role, "content": f"{out[-1]['content']}{SEPARATOR}{content}"}
        else:
            out.append({"role": role, "content": content})
    if out[-1]["role"] != "user":
        raise ValueError(f"{where} must end with the user turn the response answers, but its last turn is "
                         f"{out[-1]['role']!r}")
    return out


def _assistant(ex: Example) -> dict[str, str]:
    return {"role": "assistant", "content": ex.response}


def _alpaca_row(ex: Example) -> dict[str, Any]:
    """instruction/input/output/system, plus history for a conversation of several user turns.

    One user turn: ``instruction`` is the task's instruction and ``input`` the content (LLaMA-Factory joins
    them). Several: the instruction opens the first user turn, in ``history``, as in the other formats.
    """
    from igds.data.tasks import record_task

    spec = record_task(ex.task)
    turns = conversation(ex)
    system = turns[0]["content"] if turns[0]["role"] == "system" else ""
    chat = [t["content"] for t in turns if t["role"] != "system"]
    if len(chat) == 1:
        stored = _stored_turns(ex)
        content = ex.content if stored is None else stored[-1]["content"]
        return {"id": ex.id, "instruction": spec.instruction or "", "input": content, "output": ex.response,
                "system": system}
    history = [[chat[i], chat[i + 1]] for i in range(0, len(chat) - 1, 2)]
    return {"id": ex.id, "instruction": "", "input": chat[-1], "output": ex.response, "system": system,
            "history": history}


def _sharegpt_row(ex: Example) -> dict[str, Any]:
    turns = conversation(ex)
    system = turns[0]["content"] if turns[0]["role"] == "system" else ""
    conv = [{"from": "human" if t["role"] == "user" else "gpt", "value": t["content"]}
            for t in turns if t["role"] != "system"]
    return {"id": ex.id, "conversations": [*conv, {"from": "gpt", "value": ex.response}], "system": system}


def _training_rows(examples: list[Example], fmt: str) -> list[dict[str, Any]]:
    if fmt == "messages":
        return [{"id": ex.id, "messages": [*conversation(ex), _assistant(ex)]} for ex in examples]
    if fmt == "prompt_completion":
        return [{"id": ex.id, "prompt": conversation(ex), "completion": [_assistant(ex)]} for ex in examples]
    if fmt == "alpaca":
        rows = [_alpaca_row(ex) for ex in examples]
        if any("history" in r for r in rows):  # one schema for every row: datasets infers it from all of them
            for r in rows:
                r.setdefault("history", [])
        return rows
    return [_sharegpt_row(ex) for ex in examples]


def dataset_info(name: str, fmt: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """LLaMA-Factory's ``dataset_info.json`` entry for an ``alpaca`` or ``sharegpt`` export.

    Args:
        name: The export name (the dataset's name in LLaMA-Factory).
        fmt: ``alpaca`` or ``sharegpt``.
        rows: The exported rows (``history`` is mapped when they have it).

    Returns:
        ``{name: {"file_name": "data.json", ...}}``.
    """
    if fmt == "alpaca":
        columns = {"prompt": "instruction", "query": "input", "response": "output", "system": "system"}
        if rows and "history" in rows[0]:
            columns["history"] = "history"
        return {name: {"file_name": DATA_NAMES[fmt], "columns": columns}}
    if fmt == "sharegpt":
        return {name: {"file_name": DATA_NAMES[fmt], "formatting": "sharegpt",
                       "columns": {"messages": "conversations", "system": "system"},
                       "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human",
                                "assistant_tag": "gpt"}}}
    raise ValueError(f"format {fmt!r} has no LLaMA-Factory dataset_info entry")


def _write_training(examples: list[Example], fmt: str, target: Path, name: str) -> None:
    rows = _training_rows(examples, fmt)
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    if target.suffix == ".jsonl":
        target.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        return
    # A JSON list, one row a line: what LLaMA-Factory (through datasets' json loader) reads, and diffable.
    target.write_text("[\n" + ",\n".join(lines) + ("\n]\n" if lines else "]\n"), encoding="utf-8")
    info = dataset_info(name, fmt, rows)
    (target.parent / DATASET_INFO_FILENAME).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n",
                                                       encoding="utf-8")


def _write_data(examples: list[Example], fmt: str, target: Path, name: str = "selection") -> None:
    if fmt in TRAINING_FORMATS:
        _write_training(examples, fmt, target, name)
    elif fmt == "jsonl":
        with target.open("w", encoding="utf-8") as f:
            for ex in examples:
                f.write(json.dumps(_row(ex), ensure_ascii=False, sort_keys=True) + "\n")
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({c: pa.array(v, pa.string()) for c, v in _rows(examples).items()}), target)
    else:
        import datasets

        features = datasets.Features({c: datasets.Value("string") for c in _COLUMNS})
        datasets.Dataset.from_dict(_rows(examples), features=features).save_to_disk(str(target))


def _file_entries(folder: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILENAME)
    return [{"path": p.relative_to(folder).as_posix(), "sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in files]


def _existing_manifest(path: Path) -> dict[str, Any]:
    """The manifest of the export at ``path``, or {} when it has none that reads as a JSON object."""
    try:
        manifest = json.loads((path / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def _selection_of(lineage: Any) -> tuple[str | None, str | None]:
    """``(selection_id, name)`` a lineage names (None where it does not)."""
    if not isinstance(lineage, dict):
        return None, None
    sid, name = lineage.get("selection_id"), lineage.get("name")
    return (str(sid) if sid else None), (str(name) if name else None)


def _check_target(final: Path, name: str, chash: str, lineage: dict[str, Any], overwrite: bool) -> bool:
    """Whether an export may be written to ``final``; True when an identical export is there already.

    Raises:
        ValueError: The folder holds another selection's export (always), or other content (without
            ``overwrite``), or is not an export.
    """
    if not final.exists():
        return False
    old = _existing_manifest(final)
    old_hash = old.get("content_hash")
    old_sid, old_name = _selection_of(old.get("lineage"))
    new_sid, new_name = _selection_of(lineage)
    if old_sid and new_sid and old_sid != new_sid:
        held = f"selection {old_sid}" + (f" ({old_name!r})" if old_name else "")
        suggestion = f" such as {default_export_name(new_name, new_sid)!r}" if new_name else ""
        raise ValueError(f"export {name!r} at {final} holds {held}, not selection {new_sid}: an export is never "
                         f"replaced by another selection's; choose another name{suggestion}")
    if old_hash == chash:
        return True
    if not overwrite:
        what = f"content hash {str(old_hash)[:12]}" if old_hash else "no readable manifest"
        same = " (the same selection, with other content)" if old_sid and old_sid == new_sid else ""
        raise ValueError(f"export {name!r} already exists at {final} with {what}, not {chash[:12]}{same}; "
                         "pass overwrite=True (--overwrite) or choose another name")
    return False


def export_selection(examples: list[Example], lineage: dict[str, Any], cfg: ExportConfig,
                     export_dir: Path | None = None) -> ExportResult:
    """Write selected examples and their manifest to ``<export_dir>/<cfg.name>/``.

    Args:
        examples: The selection, in the order to write (ids must be unique).
        lineage: Where the selection came from (model, SAE, layer, corpus hash, features, config, seed,
            ...); stored verbatim and hashed, so it must be JSON-serializable.
        cfg: Name, format and overwrite flag.
        export_dir: Parent folder (default ``<IGDS home>/exports``).

    Returns:
        The export's folder, manifest and content hash.

    Raises:
        ValueError: For an unsafe name, duplicate ids, non-JSON lineage, a folder holding another selection's
            export (the lineages' ``selection_id`` differ; whatever ``cfg.overwrite`` says), or an existing export
            with a different content hash when ``cfg.overwrite`` is False.
    """
    check_export_name(cfg.name)
    root = (Path(export_dir) if export_dir is not None else default_export_dir()).resolve()
    final = root / cfg.name
    if final.resolve().parent != root:  # belt and braces: e.g. a symlink planted under the export folder
        raise ValueError(f"export {cfg.name!r} resolves outside the export folder {root}")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        twice = sorted(i for i, n in Counter(ids).items() if n > 1)
        raise ValueError(f"the selection has duplicate example ids: {len(twice):,} appear more than once (e.g. "
                         f"{', '.join(twice[:3])}); each example is exported once")
    chash = content_hash(ids, lineage)
    unchanged = _check_target(final, cfg.name, chash, lineage, cfg.overwrite)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{cfg.name}-", dir=root))
    try:
        _write_data(examples, cfg.fmt, tmp / DATA_NAMES[cfg.fmt], cfg.name)
        manifest = {
            "name": cfg.name,
            "format": cfg.fmt,
            "data": DATA_NAMES[cfg.fmt],
            **({"dataset_info": DATASET_INFO_FILENAME} if (tmp / DATASET_INFO_FILENAME).is_file() else {}),
            "content_hash": chash,
            "n_examples": len(examples),
            "composition": {key: dict(sorted(Counter(getattr(ex, key) for ex in examples).items()))
                            for key in ("source", "task", "split")},
            "lineage": json.loads(_lineage_json(lineage)),
            "files": _file_entries(tmp),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "igds_version": __version__,
        }
        (tmp / MANIFEST_FILENAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=True)
                                             + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)  # mkdtemp makes the folder private; exports are meant to be shared
        if final.exists():
            # os.replace cannot swap a non-empty folder: move the old one aside first, drop it after.
            trash = Path(tempfile.mkdtemp(prefix=f".old-{cfg.name}-", dir=root))
            os.replace(final, trash / "export")
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(final, manifest, chash, len(examples), unchanged)


def _examples_from_rows(rows: list[dict[str, Any]]) -> list[Example]:
    out = []
    for r in rows:
        meta = r.get("meta") or {}
        if isinstance(meta, str):
            meta = json.loads(meta)
        content = r["content"] if "content" in r else r["prompt"]  # exports before records held content only
        out.append(Example(r["id"], r["task"], r["source"], r["split"], content, r["response"], meta))
    return out


def read_export(path: str | os.PathLike[str]) -> tuple[list[Example], dict[str, Any]]:
    """Read an export folder back, checking every file against its manifest sha256.

    Args:
        path: The export folder (``<export_dir>/<name>``).

    Returns:
        ``(examples in written order, manifest)``.

    Raises:
        ValueError: If the manifest is missing, a file does not match it, or the export is in a training
            format (``messages``, ``prompt_completion``, ``alpaca``, ``sharegpt``: rendered for fine-tuning, they
            do not keep the fields an example needs; its files are checked first).
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not an export (cannot read {MANIFEST_FILENAME}: {exc})") from None
    if _file_entries(path) != manifest.get("files"):
        raise ValueError(f"{path}: files do not match the manifest (changed, missing or extra files)")
    data = path / manifest["data"]
    fmt = manifest["format"]
    if fmt in TRAINING_FORMATS:
        raise ValueError(f"{path}: a {fmt!r} export is a fine-tuning file and does not read back as examples (its "
                         f"files match the manifest); read_export reads {', '.join(RECORD_FORMATS)} exports")
    if fmt == "jsonl":
        with data.open(encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(data).to_pylist()
    elif fmt == "hf":
        import datasets

        rows = datasets.load_from_disk(str(data)).to_list()
    else:
        raise ValueError(f"{path}: unknown export format {fmt!r}")
    return _examples_from_rows(rows), manifest
