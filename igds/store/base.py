"""Connections, schema, examples and run bookkeeping: the base of :class:`igds.store.ActivationStore`
(its docstring states the process model)."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from igds import __version__, settings
from igds.constants import RUNS_DIR, SCHEMA_VERSION
from igds.store import shards as sh
from igds.store.errors import StoreError  # noqa: F401 - re-exported


def id_table(example_ids: Sequence[str]) -> pa.Table:
    """An Arrow table of example ids to register and join against: joins scale where
    ``list_contains`` over a long parameter list does not."""
    return pa.table({"example_id": pa.array(list(example_ids), pa.string())})


def feature_table(features: Sequence[int]) -> pa.Table:
    """An Arrow table of distinct SAE feature ids (ascending) to register and join against."""
    return pa.table({"feature": pa.array(sorted({int(f) for f in features}), pa.int32())})


def insert_arrow(con, rows: dict[str, pa.Table]) -> None:
    """Bulk-insert Arrow tables, ``{table name: rows}`` (columns in the table's order), on an open
    connection (inside the caller's transaction)."""
    for i, (table, data) in enumerate(rows.items()):
        view = f"arrow_rows_{i}"
        con.register(view, data)
        con.execute(f"INSERT INTO {table} SELECT * FROM {view}")  # table names are the module's constants
        con.unregister(view)


# Older schema versions this IGDS upgrades in place (igds.store.migrate); any other version is refused.
MIGRATABLE = (3,)


class StoreBase:
    """Connections, schema, examples and run bookkeeping of the store at ``path`` (``cache/igds.duckdb``).

    Args:
        path: database file; created with the schema on first use.
        lock_timeout: seconds to keep retrying while another process holds the file lock.
        shards: where a new store keeps its activation shards (a folder or an object-storage URI; default
            ``IGDS_SHARDS``, else ``shards/`` next to the database file). An existing store keeps the location
            it recorded; asking for another one is an error.
    """

    # one ingest at a time per store file in this process (views are rebuilt in each ingest transaction)
    _ingest_locks: dict[str, threading.Lock] = {}
    _locks_guard = threading.Lock()

    def __init__(self, path: str | Path | None = None, lock_timeout: float = 60.0,
                 shards: str | Path | None = None):
        self.path = Path(path) if path else settings.store_path()
        self.lock_timeout = lock_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.shards: sh.ShardLocation | None = None  # set from the store's record by _init_schema
        self.migration_backup: Path | None = None  # the previous file, when this open upgraded the schema
        requested = str(shards) if shards is not None else settings.shard_location()
        self._init_schema(requested)

    @property
    def ingest_lock(self) -> threading.Lock:
        key = str(self.path.resolve())
        with StoreBase._locks_guard:
            return StoreBase._ingest_locks.setdefault(key, threading.Lock())

    # -- connections -------------------------------------------------------------------------
    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; retries while another process holds the lock."""
        deadline = time.monotonic() + self.lock_timeout
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path))
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower() or time.monotonic() > deadline:
                    raise StoreError(f"cannot open {self.path}: {e}") from e
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
        try:
            if self.shards is not None and self.shards.remote:
                self._load_httpfs(con)
            yield con
        except duckdb.IOException as e:
            if "No files found" not in str(e):
                raise
            raise StoreError(f"{self.path}: a recorded activation shard file is missing at {self.shards.root} "
                             "(store.missing_shard_files() lists them; remove_run_shards(run) drops a run): "
                             f"{e}") from e
        finally:
            con.close()

    def _load_httpfs(self, con) -> None:
        try:
            con.execute("LOAD httpfs")
        except duckdb.Error as e:
            con.close()
            raise StoreError(f"{self.path} keeps its activation shards at {self.shards.root}, which DuckDB reads "
                             "through its httpfs extension; install it once (in DuckDB: INSTALL httpfs, or "
                             "INSTALL '<file>.duckdb_extension' offline) and set credentials (CREATE PERSISTENT "
                             f"SECRET ...): {e}") from e

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection inside BEGIN/COMMIT; rolled back on any error."""
        with self.connect() as con:
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    def _init_schema(self, requested: str | None) -> None:
        ddl = resources.files("igds.store").joinpath("schema.sql").read_text()
        with self.connect() as con:
            # Check the version before the DDL: an older schema may hold objects the DDL cannot create
            # over (version 1 had an examples table where there is now a view).
            has_meta = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' "
                                   "AND table_schema = current_schema()").fetchall()[0][0]
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall()) if has_meta else {}
            version = meta.get("schema_version")
            if version is not None and int(version) not in (SCHEMA_VERSION, *MIGRATABLE):
                raise StoreError(
                    f"{self.path} has schema version {version}, this IGDS expects {SCHEMA_VERSION}; "
                    "move the file aside to rebuild it"
                )
            if version is not None and int(version) != SCHEMA_VERSION:
                from igds.store.migrate import check_migratable

                check_migratable(self.path, con, int(version))
            recorded = meta.get("shard_location")
            if recorded is None:  # a new store, or one from before shards (its rows move out on migration)
                recorded = requested or sh.DEFAULT_LOCATION
            self.shard_location_recorded = recorded
            here, was_at, old_id = str(self.path.resolve()), meta.get("store_path"), meta.get("store_id")
            # a database file copied elsewhere (its original still there) gets its own store id, so that what
            # it writes never mixes with the original's files
            copied = bool(old_id and was_at and was_at != here and Path(was_at).exists())
            store_id = old_id if old_id and not copied else uuid.uuid4().hex[:16]
            try:
                self.shards = sh.ShardLocation.resolve(recorded, self.path, store_id)
                wanted = sh.ShardLocation.resolve(requested, self.path, store_id) if requested else self.shards
            except sh.ShardError as e:
                raise StoreError(f"{self.path}: {e}") from e
            if wanted != self.shards:
                raise StoreError(f"{self.path} keeps its activation shards at {self.shards.root} (recorded when it "
                                 f"was created); {wanted.root} was asked for (IGDS_SHARDS or shards=): unset it, "
                                 "or start a new store for the other location")
            if self.shards.remote:
                self._load_httpfs(con)
            migrating = version is not None and int(version) != SCHEMA_VERSION
            if migrating:  # the old file is copied aside before the DDL or the migration touches it
                from igds.store.migrate import backup

                self.migration_backup = backup(self.path, con, int(version))
            con.execute(ddl)
            if migrating:
                from igds.store.migrate import migrate

                con.execute("INSERT OR REPLACE INTO meta VALUES ('store_id', ?), ('store_path', ?), "
                            "('migration_backup', ?)", [store_id, here, str(self.migration_backup)])
                migrate(self, con, int(version))
                return
            if version is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            if "shard_location" not in meta:
                con.execute("INSERT OR REPLACE INTO meta VALUES ('shard_location', ?)", [recorded])
            defined = {r[0] for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                "AND table_name IN (?, ?)", [sh.ACTS_VIEW, sh.STATS_VIEW]).fetchall()}
            if was_at != here or store_id != old_id or len(defined) < 2:
                con.execute("BEGIN TRANSACTION")
                if was_at and was_at != here and not copied:
                    self._relocate(con, sh.ShardLocation.resolve(recorded, Path(was_at), store_id))
                con.execute("INSERT OR REPLACE INTO meta VALUES ('store_id', ?), ('store_path', ?)", [store_id, here])
                self._rebuild_views(con)
                con.execute("COMMIT")

    def _relocate(self, con, old: sh.ShardLocation) -> None:
        """The database file moved with its shard folder: point the rows whose files are missing at the same
        files under the new location."""
        if old == self.shards:
            return
        rows = con.execute("SELECT run_id, shard_key, acts_file, stats_file FROM shards").fetchall()
        moved = []
        for run_id, key, *files in rows:
            new = [self.shards.root + f[len(old.root):] if old.owns(f) and not sh.file_exists(f) else f
                   for f in files]
            if new != files and all(sh.file_exists(f) for f in new):
                moved.append((run_id, key, *new))
        if moved:
            con.register("moved_shards", pa.table(list(zip(*moved, strict=True)),
                                                  names=["run_id", "shard_key", "acts_file", "stats_file"]))
            con.execute("UPDATE shards s SET acts_file = m.acts_file, stats_file = m.stats_file FROM moved_shards m "
                        "WHERE m.run_id = s.run_id AND m.shard_key = s.shard_key")
            con.unregister("moved_shards")

    def compact(self) -> int:
        """Rewrite the database file without its free blocks (DuckDB reuses freed space but does not give it
        back, e.g. after a migration dropped the activation tables).

        The copy is made while this process holds the file and is swapped in with ``os.replace``; a process
        that opens the store meanwhile waits for the lock and then opens the new file. Run it when no
        other process is in the middle of work on the store.

        Returns:
            bytes saved.
        """
        with self.connect() as con:
            return self._compact(con)

    def _compact(self, con) -> int:
        before = self.path.stat().st_size
        tmp = self.path.with_name(".compact-" + self.path.name)
        tmp.unlink(missing_ok=True)
        con.execute("CHECKPOINT")
        name = con.execute("SELECT current_database()").fetchall()[0][0]
        quoted = '"' + name.replace('"', '""') + '"'
        con.execute("ATTACH ? AS igds_compact", [str(tmp)])
        try:
            con.execute(f"COPY FROM DATABASE {quoted} TO igds_compact")  # the open database's own name
        finally:
            con.execute("DETACH igds_compact")
        os.replace(tmp, self.path)
        return before - self.path.stat().st_size

    def _rebuild_views(self, con) -> None:
        """Point ``feature_acts`` / ``example_stats`` at exactly the recorded shard files, in ingest order (inside
        the caller's transaction: the views change with the ``shards`` rows they list)."""
        rows = con.execute("SELECT acts_file, stats_file FROM shards ORDER BY seq").fetchall()
        for view, schema, columns, i in ((sh.ACTS_VIEW, sh.ACTS_SCHEMA, sh.ACTS_COLUMNS, 0),
                                         (sh.STATS_VIEW, sh.STATS_SCHEMA, sh.STATS_COLUMNS, 1)):
            select = sh.view_select([r[i] for r in rows], columns) if rows else sh.empty_select(schema, columns)
            con.execute(f"CREATE OR REPLACE VIEW {view} AS {select}")  # view names are module constants

    def run_dir(self, run_id: str) -> Path:
        """Folder for a run's files (shards, adapters, exports), next to the database file."""
        return self.path.parent / RUNS_DIR / run_id

    # -- generic reads -----------------------------------------------------------------------
    def query_df(self, sql: str, params: Sequence | dict | None = None) -> pd.DataFrame:
        """Run a parameterized query and return a DataFrame."""
        with self.connect() as con:
            return con.execute(sql, params or []).fetch_df()

    def scalar(self, sql: str, params: Sequence | dict | None = None):
        """First column of the first row (or None)."""
        with self.connect() as con:
            rows = con.execute(sql, params or []).fetchall()  # fetch all: duckdb 2 refuses unfinished results
        return rows[0][0] if rows else None

    # -- examples ----------------------------------------------------------------------------
    def add_examples(self, examples: Sequence, dataset: str) -> int:
        """Store examples (objects with id/task/source/split/prompt/response/meta, ``prompt`` the content).

        Each example's record (content) is stored once per id; its membership (task, split) once per
        (task, id): a membership already brought by any dataset is kept as it is.

        Returns:
            number of new memberships (new rows of the ``examples`` view).
        """
        if not examples:
            return 0
        records = pa.table({
            "id": [e.id for e in examples],
            "source": [e.source for e in examples],
            "prompt": [e.prompt for e in examples],
            "response": [e.response for e in examples],
            "meta": [json.dumps(e.meta or {}, sort_keys=True) for e in examples],
        })
        members = pa.table({
            "dataset": [dataset] * len(examples),
            "task": [e.task for e in examples],
            "split": [e.split for e in examples],
            "example_id": [e.id for e in examples],
        })
        with self.transaction() as con:
            before = con.execute("SELECT count(*) FROM memberships").fetchall()[0][0]
            con.register("new_records", records)
            con.register("new_members", members)
            # An id given twice in one call (the same content in two tasks) is stored once: its first row.
            con.execute("INSERT INTO records SELECT id, first(source), first(prompt), first(response), first(meta) "
                        "FROM (SELECT *, row_number() OVER () AS n FROM new_records) "
                        "WHERE id NOT IN (SELECT id FROM records) GROUP BY id ORDER BY min(n)")
            con.execute("INSERT INTO memberships SELECT dataset, task, first(split), example_id FROM new_members n "
                        "WHERE NOT EXISTS (SELECT 1 FROM memberships m WHERE m.task = n.task "
                        "AND m.example_id = n.example_id) GROUP BY dataset, task, example_id")
            con.unregister("new_records")
            con.unregister("new_members")
            return con.execute("SELECT count(*) FROM memberships").fetchall()[0][0] - before

    def sync_dataset(self, examples: Sequence, dataset: str) -> tuple[int, int]:
        """Make the stored ``dataset`` equal ``examples``: add new memberships, drop those no longer in it.

        Records no membership and no dataset row refers to any more are dropped too. Activations of dropped
        examples stay in their runs but no pool includes them any more.

        Returns:
            ``(added, removed)`` memberships.
        """
        added = self.add_examples(examples, dataset)
        keep = pa.table({"task": pa.array([e.task for e in examples], pa.string()),
                         "example_id": pa.array([e.id for e in examples], pa.string())})
        with self.transaction() as con:
            con.register("keep_members", keep)
            before = con.execute("SELECT count(*) FROM memberships").fetchall()[0][0]
            con.execute("DELETE FROM memberships m WHERE m.dataset = ? AND NOT EXISTS (SELECT 1 FROM keep_members k "
                        "WHERE k.task = m.task AND k.example_id = m.example_id)", [dataset])
            removed = before - con.execute("SELECT count(*) FROM memberships").fetchall()[0][0]
            self._drop_orphan_records(con)
            con.unregister("keep_members")
        return added, removed

    # -- models / SAEs / runs ----------------------------------------------------------------
    def register_model(self, model_key: str, identity: dict, spec: dict | None = None) -> None:
        """Record a model identity (idempotent) and the spec it loads from (``ModelSpec`` dict), which lets
        any process load it again for a run that names it."""
        with self.connect() as con:
            con.execute(
                "INSERT INTO models (model_key, name, family, n_layers, d_model, n_params, identity, spec) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (model_key) DO UPDATE SET "
                "spec = coalesce(excluded.spec, models.spec)",
                [model_key, identity["name"], identity["family"], identity["n_layers"], identity["d_model"],
                 identity["n_params"], json.dumps(identity, sort_keys=True),
                 json.dumps(spec, sort_keys=True) if spec else None],
            )

    def register_sae(self, sae_key: str, info: dict, quality: dict | None, spec: dict | None = None) -> None:
        """Record an SAE with its quality figures and the spec it loads from (``SaeSpec`` dict; replaces an
        earlier row with the same key)."""
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO saes (sae_key, name, source, path, site, d_in, d_sae, architecture, quality, "
                "neuronpedia_id, spec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [sae_key, info["name"], info["source"], info.get("path"), info["site"], info["d_in"],
                 info["d_sae"], info["architecture"], json.dumps(quality or {}, sort_keys=True),
                 info.get("neuronpedia_id"), json.dumps(spec, sort_keys=True) if spec else None],
            )

    def identity_specs(self, model_key: str | None, sae_key: str | None) -> tuple[dict | None, dict | None]:
        """The stored specs (``ModelSpec`` / ``SaeSpec`` dicts) of a model and an SAE key (None where unknown)."""
        m = self.scalar("SELECT spec FROM models WHERE model_key = ?", [model_key])
        s = self.scalar("SELECT spec FROM saes WHERE sae_key = ?", [sae_key])
        return (json.loads(m) if m else None), (json.loads(s) if s else None)

    def start_run(self, run_id: str, stage: str, config: dict, model_key: str | None = None,
                  sae_key: str | None = None, n_total: int = 0, keep_done: bool = False) -> None:
        """Create a run row, or mark an existing one running again (resume).

        Args:
            keep_done: a finished run stays ``done`` (it is only marked as the latest one read): for runs whose
                config and upstream key fix every row, such as a filter run, which is then read back, not resumed.
        """
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (run_id, stage, config, model_key, sae_key, status, n_total, igds_version) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "status = CASE WHEN ? AND runs.status = 'done' THEN 'done' ELSE 'running' END, "
                "n_total = excluded.n_total, updated = now()",
                [run_id, stage, json.dumps(config, sort_keys=True), model_key, sae_key, n_total, __version__,
                 keep_done],
            )

    def update_run(self, run_id: str, *, status: str | None = None, n_done: int | None = None,
                   message: str | None = None) -> None:
        """Update a run's status, progress counter or message."""
        with self.connect() as con:
            con.execute(
                "UPDATE runs SET status = coalesce(?, status), n_done = coalesce(?, n_done), "
                "message = coalesce(?, message), updated = now() WHERE run_id = ?",
                [status, n_done, message, run_id],
            )

    def set_run_dropped(self, run_id: str, example_ids) -> None:
        """Record the examples a run dropped for their length (never cut), in its config's ``dropped``."""
        run = self.run(run_id)
        if run is None:
            return
        config = {**run["config"], "dropped": sorted({*run["config"].get("dropped", []), *map(str, example_ids)})}
        with self.connect() as con:
            con.execute("UPDATE runs SET config = ? WHERE run_id = ?", [json.dumps(config, sort_keys=True), run_id])

    def run_dropped(self, run_id: str) -> set[str]:
        """The examples a run dropped for their length (:meth:`set_run_dropped`)."""
        run = self.run(run_id)
        return set(run["config"].get("dropped", [])) if run else set()

    def run(self, run_id: str) -> dict | None:
        """One run row as a dict (config parsed), or None."""
        df = self.query_df("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if df.empty:
            return None
        row = df.iloc[0].to_dict()
        row["config"] = json.loads(row["config"])
        return row




    def summary(self) -> dict:
        """Row counts of the main tables (for ``igds store info`` and the overview page)."""
        with self.connect() as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]  # noqa: S608 - fixed names
                    for t in ("examples", "models", "saes", "runs", "shards", "example_stats", "feature_acts")}
