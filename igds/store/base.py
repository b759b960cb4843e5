"""Connections, schema, examples and run bookkeeping: the base of :class:`igds.store.ActivationStore`
(its docstring states the process model)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from igds import __version__, settings
from igds.constants import RUNS_DIR, SCHEMA_VERSION


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


class StoreError(RuntimeError):
    """A store that cannot be opened or has an incompatible schema."""


class StoreBase:
    """Connections, schema, examples and run bookkeeping of the store at ``path`` (``cache/igds.duckdb``).

    Args:
        path: database file; created with the schema on first use.
        lock_timeout: seconds to keep retrying while another process holds the file lock.
    """

    def __init__(self, path: str | Path | None = None, lock_timeout: float = 60.0):
        self.path = Path(path) if path else settings.store_path()
        self.lock_timeout = lock_timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._init_schema()

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
            yield con
        finally:
            con.close()

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

    def _init_schema(self) -> None:
        ddl = resources.files("igds.store").joinpath("schema.sql").read_text()
        with self.connect() as con:
            # Check the version before the DDL: an older schema may hold objects the DDL cannot create
            # over (version 1 had an examples table where there is now a view).
            has_meta = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta' "
                                   "AND table_schema = current_schema()").fetchall()[0][0]
            rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() if has_meta else []
            row = rows[0] if rows else None
            if row is not None and int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {row[0]}, this IGDS expects {SCHEMA_VERSION}; "
                    "move the file aside to rebuild it"
                )
            con.execute(ddl)
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])

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
                  sae_key: str | None = None, n_total: int = 0) -> None:
        """Create a run row, or mark an existing one running again (resume)."""
        with self.connect() as con:
            con.execute(
                "INSERT INTO runs (run_id, stage, config, model_key, sae_key, status, n_total, igds_version) "
                "VALUES (?, ?, ?, ?, ?, 'running', ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                "status = 'running', n_total = excluded.n_total, updated = now()",
                [run_id, stage, json.dumps(config, sort_keys=True), model_key, sae_key, n_total, __version__],
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
