"""Results of record: one intervention run as one committed file that a fresh store imports.

A filter run (stage ``intervene``, or a quick look) is an expensive measurement whose run id is a content hash of its
config and upstream runs, so rebuilding the same workspace on another machine yields the same id. :func:`export_run`
writes the run's ``runs`` row and every row keyed by its id (every table with an ``effect_id`` column, found in the
store's schema, so columns and tables added later travel too) as ONE zip file under ``results/filter/``; a store that
imports it (:func:`import_run`, :func:`import_records`) holds the run as measured, so the run is read back instead of
measured again, and a partial run resumes where the file left off.

The file (``<task>.<scope>.<preset>.<run id>.zip``, entries stored uncompressed with a fixed date, so the same rows
give the same bytes):

- ``manifest.json``: format and version, run id, stage, task, token scope, method preset, status, model and SAE keys,
  the parent recall run, per table its row count, key and column types, the IGDS version and git commit, and when it
  was written;
- ``tables/<table>.parquet``: the run's rows of each table (``runs`` included) with the store's own column types
  (DOUBLE stays float64), zstd-compressed, in key order;
- ``tables/parent.runs.parquet``, ``tables/parent.recall.parquet``: the recall the run was measured from (its
  ``runs`` row and ``recall`` rows), so the importing store can read the run before it has recalled anything.

Import is idempotent and resumable: rows whose key (the table's primary key; for the tables without one, the columns
that identify a row) is already stored are left as they are (except a summary row, which gives way to the file's row
of the same key when that counts more dev rows, ``n``: a later look of the same job), the rest are added through Arrow
in one transaction; the ``runs`` row is added when missing and moved forward (``partial`` → ``done``) when the file is
further along, never back. A malformed or incompatible file raises :class:`RecordError` naming the file and the field.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from igds import __version__, settings
from igds.constants import SCHEMA_VERSION
from igds.store.errors import StoreError

log = logging.getLogger(__name__)

FORMAT = "igds-run-record"
FORMAT_VERSION = 1
RUN_KEY = "effect_id"       # the column that keys a run's rows in its data tables
RUNS = "runs"
MANIFEST = "manifest.json"
SUFFIX = ".zip"
STATUS_RANK = {"done": 2, "partial": 1}  # any other status (running, failed) ranks 0
# the data tables without a primary key: the columns that identify one of their rows
ROW_KEYS = {"effects": ("effect_id", "feature", "kind", "alpha", "example_id"),
            "null_effects": ("effect_id", "null_id", "example_id")}
# a file's integer column may go into a wider store column; any other type must match the store's exactly (a FLOAT
# file for a DOUBLE column is refused: results of record keep the precision they were measured in)
WIDENING = {("INTEGER", "BIGINT"), ("SMALLINT", "INTEGER"), ("SMALLINT", "BIGINT"), ("TINYINT", "SMALLINT"),
            ("TINYINT", "INTEGER"), ("TINYINT", "BIGINT")}
# a summary row's count of dev rows: on a key both hold, the row counting more wins (a later look of the same job)
COUNT_COLUMN = "n"
VOLATILE_RUN_COLUMNS = ("updated",)  # left out of a record (an importing store sets its own)
PARENT = "parent."  # the entries of the run's recall: parent.runs, parent.recall
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class RecordError(StoreError):
    """A run record that cannot be written or read (the message names the file and the field)."""


@dataclass
class Imported:
    """What importing one record file did.

    Args:
        path: the file.
        run_id: its run.
        added: rows added per table (``runs``: 1 when the run row was missing).
        replaced: stored summary rows replaced per table by the file's row counting more (``n``).
        status_before: the store's status of the run before (None: not stored).
        status_after: its status after.
    """

    path: Path
    run_id: str
    added: dict[str, int] = field(default_factory=dict)
    replaced: dict[str, int] = field(default_factory=dict)
    status_before: str | None = None
    status_after: str | None = None

    @property
    def changed(self) -> bool:
        return any(self.added.values()) or any(self.replaced.values()) or self.status_before != self.status_after


def default_folder() -> Path:
    """``results/filter/`` in the repository (or ``IGDS_RECORDS``)."""
    return settings.records_dir() or settings.REPO_ROOT / "results" / "filter"


def _rank(status: str | None) -> int:
    return STATUS_RANK.get(status or "", 0)


def _safe(part) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(part)).strip("-") or "-"


def record_name(manifest: dict) -> str:
    """The file name of a run's record: ``<task>.<scope>.<preset>.<run id>.zip``."""
    parts = [manifest.get("task"), manifest.get("scope"), manifest.get("preset"), manifest["run_id"]]
    return ".".join(_safe(p if p is not None else "-") for p in parts) + SUFFIX


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(settings.REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


# -- the store's schema ------------------------------------------------------------------------------------------
def run_tables(con) -> list[str]:
    """The store's base tables with an ``effect_id`` column (the tables a run's rows live in), by name."""
    rows = con.execute("SELECT DISTINCT c.table_name FROM information_schema.columns c "
                       "JOIN information_schema.tables t "
                       "ON t.table_name = c.table_name AND t.table_schema = c.table_schema "
                       "WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' AND c.column_name = ? "
                       "ORDER BY 1", [RUN_KEY]).fetchall()
    return [r[0] for r in rows]


def table_columns(con, table: str) -> dict[str, tuple[str, bool]]:
    """``{column: (type, nullable)}`` of a store table, in table order (empty: no such table)."""
    rows = con.execute("SELECT column_name, data_type, is_nullable = 'YES' FROM information_schema.columns "
                       "WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position",
                       [table]).fetchall()
    return {name: (dtype, nullable) for name, dtype, nullable in rows}


def _has_default(con, table: str, column: str) -> bool:
    return con.execute("SELECT column_default IS NOT NULL FROM information_schema.columns WHERE table_schema = "
                       "current_schema() AND table_name = ? AND column_name = ?", [table, column]).fetchall()[0][0]


def table_key(con, table: str) -> list[str]:
    """The columns that identify a row: the primary key, else :data:`ROW_KEYS`, else every column."""
    rows = con.execute("SELECT constraint_column_names FROM duckdb_constraints() WHERE schema_name = current_schema() "
                       "AND table_name = ? AND constraint_type = 'PRIMARY KEY'", [table]).fetchall()
    if rows:
        return list(rows[0][0])
    return list(ROW_KEYS.get(table, table_columns(con, table)))


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- export ------------------------------------------------------------------------------------------------------
def rows_by(con, table: str, where: dict) -> pa.Table:
    """A store table's rows whose columns equal ``where``'s values, in key order."""
    order = ", ".join(quote(c) for c in table_key(con, table))
    cond = " AND ".join(f"{quote(c)} = ?" for c in where)
    return con.sql(f"SELECT * FROM {quote(table)} WHERE {cond} ORDER BY {order}",  # noqa: S608 - schema names
                   params=list(where.values())).to_arrow_table()


def describe(con, tables: dict[str, pa.Table]) -> dict[str, dict]:
    """A manifest's description of each table: its rows, its key and its columns' store types."""
    out = {}
    for name, t in tables.items():
        cols = table_columns(con, store_table(name))
        out[name] = {"rows": t.num_rows, "key": table_key(con, store_table(name)),
                     "columns": {c: cols[c][0] for c in t.column_names}}
    return out


def parquet_bytes(table: pa.Table) -> bytes:
    """The table as zstd Parquet, its types as stored. A float column of mostly distinct values (measured NLLs) is
    written byte-stream-split rather than dictionary-encoded: lossless, and about 10 % smaller once compressed."""
    split = [c for c, t in zip(table.column_names, table.schema.types, strict=True)
             if pa.types.is_floating(t) and table.num_rows and len(pc.unique(table.column(c))) > table.num_rows // 4]
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd", compression_level=9,
                   use_dictionary=[c for c in table.column_names if c not in split], use_byte_stream_split=split)
    return buf.getvalue()


def _manifest(run: dict, store_status: str, tables: dict[str, dict]) -> dict:
    config = json.loads(run["config"]) if isinstance(run.get("config"), str) else (run.get("config") or {})
    intervene = config.get("intervene") or {}
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "run_id": run["run_id"], "stage": run["stage"], "task": config.get("task"),
        "scope": intervene.get("positions"), "preset": config.get("method_preset"),
        "status": run["status"], "stored_status": store_status,
        "n_done": run.get("n_done"), "n_total": run.get("n_total"),
        "model_key": run.get("model_key"), "sae_key": run.get("sae_key"),
        "recall_id": config.get("recall_id"), "compute": config.get("compute"),
        "tables": tables,
        "schema_version": SCHEMA_VERSION, "igds_version": __version__, "commit": _git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_run(store, run_id: str, path: str | Path | None = None) -> Path:
    """Write run ``run_id``'s ``runs`` row and every row keyed by it as one record file.

    A run still ``running`` (or ``failed``) is written as ``partial``: its rows are what it measured so far, and the
    store that imports it resumes from there. Writing a run again replaces its file (atomically); rows unchanged since
    the last export leave the file untouched.

    Args:
        store: the :class:`igds.store.ActivationStore` holding the run.
        run_id: the run (an intervention run's ``effect_id``).
        path: a ``.zip`` file, or a folder to write ``record_name(...)`` into (default: ``results/filter/``).

    Returns:
        the file written.

    Raises:
        RecordError: no such run.
    """
    with store.transaction() as con:  # one snapshot of the run's rows
        runs = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[run_id]).to_arrow_table()
        if runs.num_rows == 0:
            raise RecordError(f"no run {run_id!r} in {store.path}: nothing to export")
        # when the run was last read back is this store's, not the run's: a file would change on every read
        runs = runs.drop_columns([c for c in VOLATILE_RUN_COLUMNS if c in runs.column_names])
        tables = {RUNS: runs}
        for name in run_tables(con):
            tables[name] = rows_by(con, name, {RUN_KEY: run_id})
        tables |= _parent_tables(con, runs)
        described = describe(con, tables)
    run = runs.to_pylist()[0]
    stored_status = run["status"]
    if _rank(stored_status) == 0:
        i = runs.schema.get_field_index("status")
        runs = runs.set_column(i, runs.schema.field(i), pa.array(["partial"], runs.schema.field(i).type))
        tables[RUNS] = runs
        run["status"] = "partial"
    manifest = _manifest(run, stored_status, described)
    target = Path(path) if path is not None else default_folder()
    if target.suffix != SUFFIX:
        target = target / record_name(manifest)
    return write_record(target, manifest, tables)


def _parent_tables(con, runs: pa.Table) -> dict[str, pa.Table]:
    """The run's recall (its ``runs`` row and ``recall`` rows) under ``parent.``, so a store that imports the record
    holds what the run was measured from (the pages read a filter run through its recall)."""
    config = json.loads(runs.column("config")[0].as_py() or "{}")
    recall_id = config.get("recall_id")
    if not recall_id:
        return {}
    parent = con.sql("SELECT * FROM runs WHERE run_id = ?", params=[recall_id]).to_arrow_table()
    if parent.num_rows == 0:
        return {}
    parent = parent.drop_columns([c for c in VOLATILE_RUN_COLUMNS if c in parent.column_names])
    return {f"{PARENT}{RUNS}": parent, f"{PARENT}recall": rows_by(con, "recall", {"recall_id": recall_id})}


def store_table(name: str) -> str:
    """The store table a record entry fills (``parent.<table>``: the parent recall's rows of ``<table>``)."""
    return name.removeprefix(PARENT)


def write_record(target: Path, manifest: dict, tables: dict[str, pa.Table]) -> Path:
    """Write ``manifest`` and ``tables`` as one record file at ``target`` (atomically); a file that already holds
    the same rows and manifest (but for when and by which commit it was written) is left untouched."""
    target.parent.mkdir(parents=True, exist_ok=True)
    entries = {f"tables/{name}.parquet": parquet_bytes(t) for name, t in tables.items()}
    if same_record(target, manifest, entries):
        return target
    tmp = target.with_name(f".tmp-{os.getpid()}-{target.name}")
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            zf.writestr(zipfile.ZipInfo(MANIFEST, _ZIP_DATE), json.dumps(manifest, indent=2, sort_keys=True) + "\n")
            for name, data in entries.items():
                zf.writestr(zipfile.ZipInfo(name, _ZIP_DATE), data)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def same_record(target: Path, manifest: dict, entries: dict[str, bytes]) -> bool:
    """Whether ``target`` already holds these rows of this run with this status (its file then stays as it is)."""
    if not target.exists():
        return False
    try:
        with zipfile.ZipFile(target) as zf:
            old = json.loads(zf.read(MANIFEST))
            same = all(zf.read(name) == data for name, data in entries.items())
            names = set(zf.namelist()) - {MANIFEST}
    except (zipfile.BadZipFile, KeyError, ValueError, OSError):
        return False
    volatile = {"created", "commit", "igds_version"}
    return same and names == set(entries) and \
        {k: v for k, v in old.items() if k not in volatile} == {k: v for k, v in manifest.items() if k not in volatile}


# -- reading a file ----------------------------------------------------------------------------------------------
def read_manifest(path: str | Path) -> dict:
    """A record file's manifest, checked (the tables are not read).

    Raises:
        RecordError: naming the file and the field that is missing or wrong.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            try:
                raw = zf.read(MANIFEST)
            except KeyError:
                raise RecordError(f"{path}: {MANIFEST}: missing (not a run record)") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise RecordError(f"{path}: not a readable run record (zip): {e}") from e
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise RecordError(f"{path}: {MANIFEST}: not JSON: {e}") from e
    if not isinstance(manifest, dict):
        raise RecordError(f"{path}: {MANIFEST}: not a JSON object")
    if manifest.get("format") != FORMAT:
        raise RecordError(f"{path}: {MANIFEST}: format is {manifest.get('format')!r}, expected {FORMAT!r}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise RecordError(f"{path}: {MANIFEST}: format_version {version!r}: this IGDS reads up to {FORMAT_VERSION}")
    for name, kind in (("run_id", str), ("stage", str), ("status", str), ("tables", dict)):
        if not isinstance(manifest.get(name), kind):
            raise RecordError(f"{path}: {MANIFEST}: field {name!r} is missing or not a {kind.__name__}")
    if RUNS not in manifest["tables"]:
        raise RecordError(f"{path}: {MANIFEST}: field 'tables' lacks table {RUNS!r}")
    for name, info in manifest["tables"].items():
        if not isinstance(info, dict) or not isinstance(info.get("rows"), int) \
                or not isinstance(info.get("columns"), dict) or not isinstance(info.get("key"), list):
            raise RecordError(f"{path}: {MANIFEST}: tables.{name}: needs 'rows', 'key' and 'columns'")
    return manifest


def read_tables(path: Path, manifest: dict) -> dict[str, pa.Table]:
    """The tables of a record file, each checked against the manifest's description (rows, key and columns).

    Raises:
        RecordError: naming the file and the table or column that is missing or wrong.
    """
    tables = {}
    with zipfile.ZipFile(path) as zf:
        for name, info in manifest["tables"].items():
            entry = f"tables/{name}.parquet"
            try:
                table = pq.read_table(io.BytesIO(zf.read(entry)))
            except KeyError:
                raise RecordError(f"{path}: table {name!r}: {entry} is missing") from None
            except (pa.ArrowException, OSError) as e:
                raise RecordError(f"{path}: table {name!r}: {entry} is not readable Parquet: {e}") from e
            if table.num_rows != info["rows"]:
                raise RecordError(f"{path}: table {name!r}: {table.num_rows} rows, the manifest says {info['rows']}")
            for col in [*info["columns"], *info["key"]]:
                if col not in table.column_names:
                    raise RecordError(f"{path}: column {name}.{col}: missing from {entry}")
            for col in table.column_names:
                if col not in info["columns"]:
                    raise RecordError(f"{path}: column {name}.{col}: not described in {MANIFEST}")
            tables[name] = table
    return tables


def read_record(path: str | Path) -> tuple[dict, dict[str, pa.Table]]:
    """A run record file's manifest and tables, checked against each other.

    Raises:
        RecordError: naming the file and the table or column that is missing or wrong.
    """
    path = Path(path)
    manifest = read_manifest(path)
    run_id = manifest["run_id"]
    tables = read_tables(path, manifest)
    for name, table in tables.items():
        owner = manifest.get("recall_id") if name.startswith(PARENT) else run_id
        id_col = {RUNS: "run_id", "recall": "recall_id"}.get(store_table(name), RUN_KEY)
        if id_col not in table.column_names:
            raise RecordError(f"{path}: column {name}.{id_col}: missing (it keys the run's rows)")
        ids = pc.unique(table.column(id_col)).to_pylist()
        if ids and ids != [owner]:
            raise RecordError(f"{path}: column {name}.{id_col}: holds {ids[:3]}, not only run {owner!r}")
    if tables[RUNS].num_rows != 1:
        raise RecordError(f"{path}: table {RUNS!r}: needs exactly one row, has {tables[RUNS].num_rows}")
    run = tables[RUNS].to_pylist()[0]
    for col in ("stage", "status"):
        if run.get(col) != manifest[col]:
            raise RecordError(f"{path}: column {RUNS}.{col}: {run.get(col)!r}, the manifest says {manifest[col]!r}")
    return manifest, tables


# -- import ------------------------------------------------------------------------------------------------------
def check_table(path: Path, con, name: str, table: pa.Table) -> dict[str, tuple[str, bool]]:
    """The store's columns of ``name``, after checking the file's rows fit them."""
    cols = table_columns(con, name)
    if not cols:
        raise RecordError(f"{path}: table {name!r}: this store has no such table (a newer IGDS wrote the file?)")
    con.register("record_check", table)
    try:  # the column types DuckDB reads from the file's rows (the manifest's only describe them)
        held = {r[0]: r[1] for r in con.execute("DESCRIBE SELECT * FROM record_check").fetchall()}
    finally:
        con.unregister("record_check")
    for col in table.column_names:
        if col not in cols:
            raise RecordError(f"{path}: column {name}.{col}: this store's table has no such column")
        have, want = held[col], cols[col][0]
        if have != want and (have, want) not in WIDENING:
            raise RecordError(f"{path}: column {name}.{col}: the file holds {have}, this store {want}")
    for col, (_, nullable) in cols.items():
        if col not in table.column_names and not nullable and not _has_default(con, name, col):
            raise RecordError(f"{path}: column {name}.{col}: missing from the file, and the store needs a value")
    return cols


def insert_new(con, path: Path, name: str, table: pa.Table, cols: dict, key: list[str]) -> tuple[int, int]:
    """Insert the rows of ``table`` whose key is not stored yet; a stored row of a table with a count column
    :data:`COUNT_COLUMN` (a summary) gives way to the file's row of the same key that counts more (a later look of
    the same job). Returns ``(added, replaced)``."""
    if table.num_rows == 0:
        return 0, 0
    view = "record_rows"
    q = quote(name)
    names = ", ".join(quote(c) for c in table.column_names)
    match = " AND ".join(f"s.{quote(c)} {'IS NOT DISTINCT FROM' if cols[c][1] else '='} r.{quote(c)}" for c in key)
    con.register(view, table)
    try:
        replaced = 0
        if COUNT_COLUMN in table.column_names and COUNT_COLUMN not in key:
            n = quote(COUNT_COLUMN)
            replaced = con.execute(f"DELETE FROM {q} s USING {view} r WHERE {match} "  # noqa: S608 - schema names
                                   f"AND coalesce(r.{n}, -1) > coalesce(s.{n}, -1)").fetchall()[0][0]
        added = con.execute(f"INSERT INTO {q} ({names}) SELECT {names} FROM {view} r "  # noqa: S608 - schema names
                            f"WHERE NOT EXISTS (SELECT 1 FROM {q} s WHERE {match})").fetchall()[0][0]
        return added - replaced, replaced
    except duckdb.Error as e:  # a value that does not fit the store's column
        raise RecordError(f"{path}: table {name!r}: its rows do not fit this store: {e}") from e
    finally:
        con.unregister(view)


def import_run(store, path: str | Path) -> Imported:
    """Import a record file into ``store`` (idempotent; resumable; one transaction).

    Rows whose key is already stored are kept as stored (a summary row counting fewer dev rows, ``n``, than the file's
    is replaced by it); the others are added. The ``runs`` row is added when
    missing; when the file's status is further along (``partial`` < ``done``) the stored row takes it, and its
    ``n_done`` the larger of the two. A run the store holds more of is never moved back.

    Returns:
        what was added (:class:`Imported`).

    Raises:
        RecordError: a malformed file or one that does not fit this store (naming the file and the field).
    """
    path = Path(path)
    manifest, tables = read_record(path)
    run_id = manifest["run_id"]
    done = Imported(path=path, run_id=run_id)
    with store.transaction() as con:
        checked = {name: check_table(path, con, store_table(name), t) for name, t in tables.items()}
        for name, table in tables.items():
            if name == RUNS:
                continue
            key = table_key(con, store_table(name))
            missing = [c for c in key if c not in table.column_names]
            if missing:
                raise RecordError(f"{path}: column {name}.{missing[0]}: missing from the file (it keys the table)")
            done.added[name], done.replaced[name] = insert_new(con, path, store_table(name), table, checked[name],
                                                               key)
        row = con.execute("SELECT stage, status, n_done FROM runs WHERE run_id = ?", [run_id]).fetchall()
        file_run = tables[RUNS].to_pylist()[0]
        if not row:
            done.added[RUNS] = insert_new(con, path, RUNS, tables[RUNS], checked[RUNS], ["run_id"])[0]
            done.status_after = file_run["status"]
        else:
            stage, status, n_done = row[0]
            done.added[RUNS] = 0
            done.status_before = done.status_after = status
            if stage != manifest["stage"]:
                raise RecordError(f"{path}: column {RUNS}.stage: {manifest['stage']!r}, but this store's run {run_id} "
                                  f"is of stage {stage!r}")
            if _rank(file_run["status"]) > _rank(status):
                con.execute("UPDATE runs SET status = ?, n_done = greatest(coalesce(n_done, 0), ?), "
                            "n_total = greatest(coalesce(n_total, 0), ?), message = coalesce(?, message), "
                            "updated = now() WHERE run_id = ?",
                            [file_run["status"], file_run.get("n_done") or 0, file_run.get("n_total") or 0,
                             file_run.get("message"), run_id])
                done.status_after = file_run["status"]
    return done


def _up_to_date(store, manifests: dict[Path, dict]) -> set[Path]:
    """The files whose run the store already holds as far along, with at least as many rows in every table (one
    query on ``runs`` and one per table, whatever the number of files)."""
    ids = sorted({m["run_id"] for m in manifests.values()})
    if not ids:
        return set()
    with store.connect() as con:
        status = dict(con.execute("SELECT run_id, status FROM runs WHERE list_contains(?, run_id)", [ids]).fetchall())
        present = sorted(status)
        counts: dict[tuple[str, str], int] = {}
        if present:
            for name in run_tables(con):
                for rid, n in con.execute(f"SELECT {RUN_KEY}, count(*) FROM {quote(name)} "  # noqa: S608
                                          f"WHERE list_contains(?, {RUN_KEY}) GROUP BY 1", [present]).fetchall():
                    counts[(name, rid)] = n
        parents = sorted({m["recall_id"] for m in manifests.values() if f"{PARENT}recall" in m["tables"]})
        recalled = {r[0] for r in con.execute("SELECT DISTINCT recall_id FROM recall WHERE list_contains(?, "
                                              "recall_id)", [parents]).fetchall()} if parents else set()
    out = set()
    for path, m in manifests.items():
        rid = m["run_id"]
        if rid not in status or _rank(status[rid]) < _rank(m["status"]):
            continue
        if f"{PARENT}recall" in m["tables"] and m.get("recall_id") not in recalled:
            continue
        if all(counts.get((name, rid), 0) >= info["rows"] for name, info in m["tables"].items()
               if name != RUNS and not name.startswith(PARENT)):
            out.add(path)
    return out


def record_files(folder: str | Path) -> list[Path]:
    """The record files under ``folder`` (or ``[folder]`` for one file), by name."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    return sorted(p for p in folder.rglob(f"*{SUFFIX}") if not p.name.startswith(".")) if folder.is_dir() else []


def import_records(store, folder: str | Path | None = None, *, model_key: str | None = None,
                   sae_key: str | None = None, force: bool = False, strict: bool = True) -> list[Imported]:
    """Import every record file under ``folder`` (default ``results/filter/``) that the store lacks rows of.

    Cheap when nothing is new: the manifests are read and compared with the store's runs and row counts first; only
    a file whose run is missing, behind in status or short of rows is imported.

    Args:
        model_key, sae_key: only the records of runs on this model / SAE (a workspace imports its own).
        force: import every file (each import still adds only the missing rows).
        strict: raise on a malformed or incompatible file; False: log it and go on with the others.

    Returns:
        one :class:`Imported` per file imported (files found up to date are not listed).
    """
    folder = Path(folder) if folder is not None else default_folder()
    manifests = {}
    failed = []
    for path in record_files(folder):
        try:
            m = read_manifest(path)
        except RecordError as e:
            if strict:
                raise
            failed.append(str(e))
            continue
        if (model_key is None or m.get("model_key") == model_key) and (sae_key is None or m.get("sae_key") == sae_key):
            manifests[path] = m
    skip = set() if force else _up_to_date(store, manifests)
    out = []
    for path in manifests:
        if path in skip:
            continue
        try:
            out.append(import_run(store, path))
        except RecordError as e:
            if strict:
                raise
            failed.append(str(e))
    for msg in failed:
        log.warning("result of record not imported: %s", msg)
    return out
