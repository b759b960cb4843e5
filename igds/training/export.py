"""Export a selection as a fine-tuning dataset: JSONL, Parquet or a ``datasets`` folder, plus a manifest.

An export is the folder ``<export_dir>/<name>/`` holding the data (``data.jsonl``, ``data.parquet`` or the
``save_to_disk`` folder ``data/``) and ``manifest.json``: the caller's lineage, counts, per-source /
per-task / per-split composition, a content hash (sorted example ids + lineage), each file's sha256 and
size, the creation time and the igds version. Names come from users, so they are confined to the
export folder. The folder is written under a temporary name and renamed into place, so a crash never
leaves a half-written export.
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

EXPORT_FORMATS = ("jsonl", "parquet", "hf")
EXPORTS_DIR = "exports"
MANIFEST_FILENAME = "manifest.json"
DATA_NAMES = {"jsonl": "data.jsonl", "parquet": "data.parquet", "hf": "data"}
# ``prompt`` is the user message as the task renders it (instruction + content), ``content`` the record's own
# input text: a consumer can train on the rendered message or re-render the content its own way.
_COLUMNS = ("id", "task", "source", "split", "prompt", "content", "response", "meta")
# One path component of safe characters; no leading dot, so it can clash neither with ".", ".." nor
# with the hidden temporary folders written next to exports.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


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


@dataclass(frozen=True, kw_only=True)
class ExportConfig(ConfigBase):
    """How a selection is exported.

    Args:
        name: Folder name under the export directory (letters, digits, ``.``, ``_``, ``-``).
        fmt: ``jsonl``, ``parquet`` or ``hf`` (a ``datasets`` ``save_to_disk`` folder).
        overwrite: Replace an existing export whose content hash differs.
    """

    name: str = field(default="selection", metadata={"help": "export folder name under <home>/exports"})
    fmt: str = field(default="jsonl", metadata={"help": "format: jsonl | parquet | hf (datasets save_to_disk)"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing export with other content"})

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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def _write_data(examples: list[Example], fmt: str, target: Path) -> None:
    if fmt == "jsonl":
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
    return [{"path": p.relative_to(folder).as_posix(), "sha256": _sha256(p), "bytes": p.stat().st_size}
            for p in files]


def _existing_hash(path: Path) -> str | None:
    try:
        return json.loads((path / MANIFEST_FILENAME).read_text(encoding="utf-8")).get("content_hash")
    except (OSError, ValueError, AttributeError):
        return None


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
        ValueError: For an unsafe name, duplicate ids, non-JSON lineage, or an existing export with a
            different content hash when ``cfg.overwrite`` is False.
    """
    check_export_name(cfg.name)
    root = (Path(export_dir) if export_dir is not None else default_export_dir()).resolve()
    final = root / cfg.name
    if final.resolve().parent != root:  # belt and braces: e.g. a symlink planted under the export folder
        raise ValueError(f"export {cfg.name!r} resolves outside the export folder {root}")
    ids = [ex.id for ex in examples]
    if len(set(ids)) != len(ids):
        raise ValueError("the selection has duplicate example ids")
    chash = content_hash(ids, lineage)
    unchanged = False
    if final.exists():
        old = _existing_hash(final)
        unchanged = old == chash
        if not unchanged and not cfg.overwrite:
            what = f"content hash {old[:12]}" if old else "no readable manifest"
            raise ValueError(f"export {cfg.name!r} already exists at {final} with {what}, not {chash[:12]}; "
                             "pass overwrite=True (--overwrite) or choose another name")
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{cfg.name}-", dir=root))
    try:
        _write_data(examples, cfg.fmt, tmp / DATA_NAMES[cfg.fmt])
        manifest = {
            "name": cfg.name,
            "format": cfg.fmt,
            "data": DATA_NAMES[cfg.fmt],
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
        ValueError: If the manifest is missing or a file does not match it.
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
