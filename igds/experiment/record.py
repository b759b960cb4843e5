"""Grid cells of record: each finished cell of an experiment as one committed file that a fresh store imports.

A cell is hours of CPU (a LoRA fine-tune and an evaluation), so, like a filter run (:mod:`igds.store.record`), it is
measured once and then read back on every machine. ``export_experiment`` writes, under
``results/grid/<experiment id>/``:

- ``<task>.base.zip``: the ``experiments`` row and the task's base evaluation (``evals``, ``eval_outputs``,
  ``amplification``), which every cell of the task is compared with;
- ``<task>.<pool>.<method>@<ratio>.s<seed>.zip`` per finished (or empty) cell: its ``experiment_cells`` row, its
  selection (``selections``, ``selection_members``), its fine-tune row (``finetunes``; the adapter itself stays
  behind) and its evaluation (``evals``, ``eval_outputs``, ``amplification``).

Each file is one manifest plus one Parquet table per store table, in the format of the filter records (same
writer, same checks). Importing is idempotent: rows whose key is stored stay as they are, except a cell row that is
not ``done`` in the store, which gives way to the file's finished one. The grid's ``--dry-run`` then lists only the
cells no file holds, and ``docs/results.md`` regenerates from the store as it was written.
"""

from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from igds import __version__, settings
from igds.constants import SCHEMA_VERSION
from igds.store.record import (
    MANIFEST,
    SUFFIX,
    RecordError,
    check_table,
    describe,
    insert_new,
    read_tables,
    record_files,
    rows_by,
    table_key,
    write_record,
)

log = logging.getLogger(__name__)

FORMAT = "igds-cell-record"
FORMAT_VERSION = 1
CELL_KEY = ("task", "pool_setting", "method", "ratio", "seed")
FINISHED = ("done", "empty")
EVAL_TABLES = ("evals", "eval_outputs", "amplification")


@dataclass
class CellImport:
    """What importing one grid record file added, per table."""

    path: Path
    experiment_id: str
    added: dict[str, int] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return any(self.added.values())


def default_grid_folder() -> Path | None:
    """``results/grid/`` in the repository (``IGDS_RECORDS=off`` turns every import of results of record off)."""
    return settings.grid_records_dir()


def cell_file_name(key: tuple) -> str:
    task, pool, method, ratio, seed = key
    return f"{task}.{pool}.{method}@{ratio:g}.s{seed}{SUFFIX}"


def _eval_tables(con, eval_id: str) -> dict[str, pa.Table]:
    return {t: rows_by(con, t, {"eval_id": eval_id}) for t in EVAL_TABLES}


def _manifest(kind: str, experiment_id: str, tables: dict[str, dict], **extra) -> dict:
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "experiment_id": experiment_id,
            **extra, "tables": tables, "schema_version": SCHEMA_VERSION, "igds_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def export_experiment(store, experiment_id: str, folder: str | Path | None = None) -> list[Path]:
    """Write every finished cell of an experiment, and each task's base evaluation, as record files.

    Returns:
        the files written (or left as they were when unchanged).

    Raises:
        RecordError: no such experiment.
    """
    from igds.experiment.cells import base_eval_id, experiment_config

    root = Path(folder) if folder is not None else (default_grid_folder() or settings.REPO_ROOT / "results" / "grid")
    target = root / experiment_id
    cfg = experiment_config(store, experiment_id)
    ids = store.query_df("SELECT DISTINCT selection_id FROM experiment_cells WHERE experiment_id = ? AND "
                         "selection_id IS NOT NULL", [experiment_id]).selection_id
    members = {sid: store.selection_members_of_record(sid) for sid in ids}
    out = []
    with store.transaction() as con:  # one snapshot
        experiment = rows_by(con, "experiments", {"experiment_id": experiment_id})
        if experiment.num_rows == 0:
            raise RecordError(f"no experiment {experiment_id!r} in {store.path}: nothing to export")
        cells = rows_by(con, "experiment_cells", {"experiment_id": experiment_id})
        files: dict[str, tuple[dict, dict]] = {}
        for row in cells.to_pylist():
            if row["status"] not in FINISHED:
                continue
            key = tuple(row[c] for c in CELL_KEY)
            tables = {"experiment_cells": rows_by(con, "experiment_cells",
                                                  {"experiment_id": experiment_id, **dict(zip(CELL_KEY, key,
                                                                                              strict=True))})}
            if row["selection_id"]:
                tables["selections"] = rows_by(con, "selections", {"selection_id": row["selection_id"]})
                tables["selection_members"] = members[row["selection_id"]]
            if row["run_id"]:
                tables["finetunes"] = rows_by(con, "finetunes", {"run_id": row["run_id"]})
            if row["eval_id"]:
                tables |= _eval_tables(con, row["eval_id"])
            files[cell_file_name(key)] = (_manifest("cell", experiment_id, describe(con, tables),
                                                    cell=dict(zip(CELL_KEY, key, strict=True))), tables)
        evals = {r["task"]: r["eval_id"] for r in cells.to_pylist() if r["eval_id"]}
        for task in cfg.tasks:
            tables, extra = {"experiments": experiment}, {"task": task}
            if task in evals:
                model_key = con.execute("SELECT model_key FROM evals WHERE eval_id = ?", [evals[task]]).fetchall()
                extra["base_eval_id"] = base_eval_id(cfg, task, model_key[0][0] if model_key else None)
                tables |= _eval_tables(con, extra["base_eval_id"])
            files[f"{task}.base{SUFFIX}"] = (_manifest("base", experiment_id, describe(con, tables), **extra), tables)
    for name, (manifest, tables) in files.items():
        out.append(write_record(target / name, manifest, tables))
    return out


def read_cell_manifest(path: Path) -> dict:
    """A grid record file's manifest, checked.

    Raises:
        RecordError: naming the file and the field that is missing or wrong.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read(MANIFEST))
    except (zipfile.BadZipFile, OSError, KeyError, ValueError) as e:
        raise RecordError(f"{path}: not a readable grid record: {e}") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise RecordError(f"{path}: {MANIFEST}: format is not {FORMAT!r}")
    if not isinstance(manifest.get("format_version"), int) or manifest["format_version"] > FORMAT_VERSION:
        raise RecordError(f"{path}: {MANIFEST}: format_version {manifest.get('format_version')!r}: this IGDS reads "
                          f"up to {FORMAT_VERSION}")
    for name, kind in (("experiment_id", str), ("kind", str), ("tables", dict)):
        if not isinstance(manifest.get(name), kind):
            raise RecordError(f"{path}: {MANIFEST}: field {name!r} is missing or not a {kind.__name__}")
    return manifest


def import_cell_file(store, path: str | Path) -> CellImport:
    """Import one grid record file (one transaction; idempotent).

    Raises:
        RecordError: a malformed file or one that does not fit this store (naming the file and the field).
    """
    path = Path(path)
    manifest = read_cell_manifest(path)
    tables = read_tables(path, manifest)
    done = CellImport(path, manifest["experiment_id"])
    _noisy_members_first(store, tables)
    with store.transaction() as con:
        for name, table in tables.items():
            cols = check_table(path, con, name, table)
            key = table_key(con, name)
            if name == "experiment_cells":  # a finished cell replaces a stored one that is not
                _drop_unfinished(con, table)
            done.added[name] = insert_new(con, path, name, table, cols, key)[0]
    return done


def _drop_unfinished(con, table: pa.Table) -> None:
    for row in table.to_pylist():
        if row["status"] in FINISHED:
            con.execute("DELETE FROM experiment_cells WHERE experiment_id = ? AND task = ? AND pool_setting = ? AND "
                        "method = ? AND ratio = ? AND seed = ? AND coalesce(status, '') NOT IN ('done', 'empty')",
                        [row["experiment_id"], *(row[c] for c in CELL_KEY)])


def _noisy_members_first(store, tables: dict[str, pa.Table]) -> None:
    """A noisy-pool selection's members are corrupted items this store builds itself (deterministically): build the
    task's noisy pool before its members arrive."""
    if "selections" not in tables:
        return
    from igds.method.pool import ensure_noisy_pool

    for row in tables["selections"].to_pylist():
        if row.get("pool_setting") == "noisy":
            ensure_noisy_pool(store, row["task"])


def _up_to_date(store, manifest: dict) -> bool:
    """Whether the store already holds what the file brings: its cell, finished; or the experiment and its base
    evaluation."""
    if manifest["kind"] == "cell":
        cell = manifest.get("cell") or {}
        status = store.scalar("SELECT status FROM experiment_cells WHERE experiment_id = ? AND task = ? AND "
                              "pool_setting = ? AND method = ? AND ratio = ? AND seed = ?",
                              [manifest["experiment_id"], *(cell.get(c) for c in CELL_KEY)])
        return status in FINISHED
    have = store.scalar("SELECT count(*) FROM experiments WHERE experiment_id = ?", [manifest["experiment_id"]])
    base = manifest.get("base_eval_id")
    return bool(have) and (base is None or bool(store.scalar("SELECT count(*) FROM evals WHERE eval_id = ?", [base])))


def import_grid_records(store, folder: str | Path | None = None, *, strict: bool = True) -> list[CellImport]:
    """Import every grid record file under ``folder`` (default ``results/grid/``) the store lacks (base files
    first, so a cell's comparison is there when the cell is)."""
    folder = Path(folder) if folder is not None else default_grid_folder()
    if folder is None or not folder.exists():
        return []
    files = sorted(record_files(folder), key=lambda p: (not p.name.endswith(f".base{SUFFIX}"), str(p)))
    out, failed = [], []
    for path in files:
        try:
            manifest = read_cell_manifest(path)
            if not _up_to_date(store, manifest):
                out.append(import_cell_file(store, path))
        except RecordError as e:
            if strict:
                raise
            failed.append(str(e))
    for msg in failed:
        log.warning("grid record not imported: %s", msg)
    return out
