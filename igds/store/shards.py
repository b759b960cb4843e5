"""Where the activation shards live and how DuckDB sees them.

The per-(example, feature) aggregates (``feature_acts``) and the per-example stats (``example_stats``) are not
copied into the database file: each ingested shard is a pair of Parquet files under the store's *shard
location*, laid out hive-style,

    <location>/<store id>/run_id=<run>/shard_key=<key>/acts-<nonce>.parquet
    <location>/<store id>/run_id=<run>/shard_key=<key>/stats-<nonce>.parquet

and ``feature_acts`` / ``example_stats`` are DuckDB views over ``read_parquet`` of exactly the files the
``shards`` table records (full paths or URIs), in ingest order, so a scan returns rows in the order the old
tables held them. A query's ``WHERE run_id = ?`` prunes the list by the ``run_id=`` folder: only that run's
files are read (DuckDB still checks that every listed file exists when it binds the view, one ``stat`` per file,
which bounds this layout at some 10^4 shards; past that, merge a finished run's shards or move to a DuckLake
catalog).

Visibility is the ``shards`` row: a shard's files are published first (invisible: no view lists them) and the
row plus the rebuilt views commit in one DuckDB transaction, so a shard is visible exactly once or not at all.
Each publication gets fresh file names (the nonce), so a retried or concurrent ingest never overwrites a
file a committed view reads; files of an attempt that did not commit are removed by the next ingest of that
shard (or stay, unlisted and harmless, until then).

The location is a local folder (default: ``shards/`` next to the database file, recorded relative to it: a
workspace moved with its ``shards/`` folder finds its files again on the next open, and a database file copied
without them keeps reading the original's files, which are never modified, and writes its own under a new
store id) or an object-storage URI set through ``IGDS_SHARDS`` when the store is created.
For ``s3://``, ``gs://`` (``gcs://``) or ``r2://`` the files are written through ``pyarrow.fs`` (credentials
from the usual environment: ``AWS_*``, ``GOOGLE_APPLICATION_CREDENTIALS``) and read by DuckDB's ``httpfs``
extension, which is not bundled: install it once where the store is used (``INSTALL httpfs`` in DuckDB, which
downloads it from extensions.duckdb.org, or ``INSTALL '<path>/httpfs.duckdb_extension'`` offline) and give
DuckDB the credentials (``CREATE PERSISTENT SECRET (TYPE s3, PROVIDER credential_chain)``). Stores may share
a location: each keeps its files under its own random store id (meta ``store_id``).

View definitions cannot take prepared parameters, so the file list is spelled into the view's SQL as
quoted string literals (``sql_string``); the names are ours (hex keys, a percent-encoded run id) under the
recorded location.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq

ACTS_VIEW = "feature_acts"
STATS_VIEW = "example_stats"
DEFAULT_LOCATION = "shards"  # relative: next to the database file

ACTS_SCHEMA = pa.schema([("example_id", pa.string()), ("feature", pa.int32()), ("max_act", pa.float32()),
                         ("sum_act", pa.float32()), ("n_active", pa.int32())])
STATS_SCHEMA = pa.schema([("example_id", pa.string()), ("n_tokens", pa.int32()), ("n_positions", pa.int32()),
                          ("n_sinks", pa.int32())])
_SQL_TYPES = {pa.string(): "VARCHAR", pa.int32(): "INTEGER", pa.float32(): "REAL"}
# Columns of the views, in the order the tables had them.
ACTS_COLUMNS = ("run_id", "example_id", "feature", "max_act", "sum_act", "n_active")
STATS_COLUMNS = ("run_id", "example_id", "n_tokens", "n_positions", "n_sinks", "shard_key")
# Schemes read through DuckDB's httpfs extension.
REMOTE_SCHEMES = ("s3", "s3a", "gs", "gcs", "r2")
_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")


class ShardError(ValueError):
    """A shard that cannot be ingested (bad key, missing or malformed rows)."""


def sql_string(value: str) -> str:
    """``value`` as a SQL string literal (quotes doubled): for DDL, which takes no parameters."""
    return "'" + value.replace("'", "''") + "'"


def check_shard_key(key: str) -> str:
    """A shard key names a folder: letters, digits, ``_.-`` only."""
    if not isinstance(key, str) or not _KEY.fullmatch(key) or key in (".", ".."):
        raise ShardError(f"shard key {key!r} must be 1-128 letters, digits, '_', '.' or '-'")
    return key


def partition_dir(run_id: str, shard_key: str) -> str:
    """Relative folder of a shard: ``run_id=<run>/shard_key=<key>`` (the run id percent-encoded, which DuckDB's
    hive partitioning decodes)."""
    if not isinstance(run_id, str) or not run_id:
        raise ShardError(f"run id must be a non-empty string, got {run_id!r}")
    return f"run_id={quote(run_id, safe='')}/shard_key={check_shard_key(shard_key)}"


def conform(table: pa.Table, schema: pa.Schema, what: str) -> pa.Table:
    """``table`` with exactly ``schema``'s columns, in order, cast to its types; a clear error when a column is
    missing or does not cast."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise ShardError(f"{what} lacks column(s) {missing}; expected {schema.names}")
    try:
        return table.select(schema.names).cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ShardError(f"{what} does not cast to {schema}: {e}") from e


def empty_select(schema: pa.Schema, columns: tuple[str, ...]) -> str:
    """A typed, empty relation with the view's columns (the views of a store without shards)."""
    types = {f.name: _SQL_TYPES[f.type] for f in schema}
    types.update(run_id="VARCHAR", shard_key="VARCHAR")
    return "SELECT " + ", ".join(f"CAST(NULL AS {types[c]}) AS {c}" for c in columns) + " WHERE false"


def view_select(files: list[str], columns: tuple[str, ...]) -> str:
    """``SELECT columns FROM read_parquet([files])`` with ``run_id`` and ``shard_key`` from the hive folders."""
    listed = ", ".join(sql_string(f) for f in files)
    return (f"SELECT {', '.join(columns)} FROM read_parquet([{listed}], hive_partitioning = true, "
            "hive_types = {'run_id': VARCHAR, 'shard_key': VARCHAR})")


@dataclass(frozen=True)
class ShardLocation:
    """The folder or URI holding a store's shard files.

    Args:
        root: absolute local folder, or ``scheme://bucket/prefix``.
    """

    root: str

    @classmethod
    def resolve(cls, recorded: str, db_path: Path, store_id: str) -> ShardLocation:
        """The folder of one store's shards: ``<recorded>/<store_id>`` (``recorded`` relative: to the database
        file's folder). The store id keeps two stores that share a location (two database files in one folder,
        or one bucket) out of each other's files."""
        if not re.fullmatch(r"[0-9a-f]{8,32}", store_id):
            raise ShardError(f"bad store id {store_id!r}")
        if recorded.startswith("file://"):
            recorded = recorded[len("file://"):]
        if "://" in recorded:
            scheme = recorded.split("://", 1)[0].lower()
            if scheme not in REMOTE_SCHEMES:
                raise ShardError(f"shard location {recorded!r}: scheme {scheme!r} is not supported "
                                 f"(a local folder or one of {', '.join(REMOTE_SCHEMES)})")
            return cls(f"{recorded.rstrip('/')}/{store_id}")
        path = Path(recorded)
        return cls(str((path if path.is_absolute() else (db_path.parent / path).resolve()) / store_id))

    @property
    def remote(self) -> bool:
        return "://" in self.root

    def uri(self, rel: str) -> str:
        """Absolute path or URI of a file or folder given relative to the location."""
        return f"{self.root}/{rel}"

    def owns(self, uri: str) -> bool:
        """Whether a file or folder is this store's own (a copied store file also reads its original's)."""
        return uri.startswith(self.root + "/")

    # -- filesystem (full paths or URIs) ---------------------------------------------------------
    @staticmethod
    def _fs(uri: str):
        from pyarrow import fs

        return fs.FileSystem.from_uri(uri)

    def publish(self, rel_dir: str, name: str, table: pa.Table | None, source: Path | None) -> str:
        """Put one file at ``<root>/rel_dir/<name>-<nonce>.parquet`` and return its full path or URI.

        A local source file is hard-linked (no copy) when it has exactly the canonical schema and sits on the
        same filesystem, copied otherwise; a table is written. Local files appear through ``os.replace``, so a
        reader never sees half a file; object stores make a single upload visible whole.
        """
        uri = self.uri(f"{rel_dir}/{name}-{uuid.uuid4().hex[:12]}.parquet")
        if self.remote:
            from pyarrow import fs

            filesystem, target = self._fs(uri)
            filesystem.create_dir(target.rsplit("/", 1)[0], recursive=True)
            if table is not None:
                pq.write_table(table, target, filesystem=filesystem)
            else:
                fs.copy_files(str(source), target, destination_filesystem=filesystem)
            return uri
        target = Path(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(".tmp-" + target.name)
        if table is not None:
            pq.write_table(table, tmp)
        else:
            try:
                os.link(source, tmp)
            except OSError:  # another filesystem, or links not allowed: copy
                shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return uri

    def remove(self, uri: str) -> None:
        """Delete one of this store's files or folders (recursively); a missing one is fine, another store's
        is left alone."""
        if not self.owns(uri):
            return
        if "://" in uri:
            from pyarrow import fs

            filesystem, path = self._fs(uri)
            info = filesystem.get_file_info(path)
            if info.type == fs.FileType.Directory:
                filesystem.delete_dir(path)
            elif info.type == fs.FileType.File:
                filesystem.delete_file(path)
            return
        path = Path(uri)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)

    def listdir(self, rel_dir: str) -> list[str]:
        """Full paths or URIs of the files directly in this store's ``rel_dir`` (empty when it does not exist)."""
        uri = self.uri(rel_dir)
        if self.remote:
            from pyarrow import fs

            filesystem, path = self._fs(uri)
            infos = filesystem.get_file_info(fs.FileSelector(path, allow_not_found=True))
            return [f"{uri}/{i.base_name}" for i in infos if i.type == fs.FileType.File]
        folder = Path(uri)
        return [str(p) for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []


def file_exists(uri: str) -> bool:
    """Whether a shard file (full path or URI) is there."""
    if "://" in uri:
        from pyarrow import fs

        filesystem, path = fs.FileSystem.from_uri(uri)
        return filesystem.get_file_info(path).type == fs.FileType.File
    return Path(uri).is_file()


def read_source(path: Path, schema: pa.Schema, what: str) -> tuple[pa.Table | None, int]:
    """A worker-written shard file, checked: ``(None, rows)`` when it can be linked as it is (exactly the
    canonical schema), else ``(conformed table, rows)`` to be written anew."""
    try:
        meta = pq.read_metadata(path)
        file_schema = meta.schema.to_arrow_schema()
    except (OSError, pa.ArrowInvalid) as e:
        raise ShardError(f"{what} {path} is not a readable Parquet file: {e}") from e
    if file_schema.remove_metadata().equals(schema):
        return None, meta.num_rows
    table = conform(pq.read_table(path), schema, f"{what} {path}")
    return table, table.num_rows
