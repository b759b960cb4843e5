"""``ActivationStore``: the one class that owns the DuckDB file.

Process model: DuckDB lets one process hold a read-write handle, and while it does no other
process can open the file at all. So nobody keeps a connection open: every call opens, works and
closes (``connect()``), retrying briefly when another process holds the lock. A background job and
the dashboard therefore interleave short transactions instead of blocking each other, and a
killed job loses only its unfinished transaction. Bulk rows always arrive as Arrow tables; every
query is parameterized.
"""

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


class StoreError(RuntimeError):
    """A store that cannot be opened or has an incompatible schema."""


class ActivationStore:
    """Owner of the DuckDB activation store at ``path`` (default ``cache/igds.duckdb``).

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
            con.execute(ddl)
            rows = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
            row = rows[0] if rows else None
            if row is None:
                con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            elif int(row[0]) != SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path} has schema version {row[0]}, this IGDS expects {SCHEMA_VERSION}; "
                    "move the file aside to rebuild it"
                )

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
        """Insert examples (objects with id/task/source/split/prompt/response/meta); skip known ids.

        Returns:
            number of newly inserted rows.
        """
        if not examples:
            return 0
        table = pa.table({
            "id": [e.id for e in examples],
            "task": [e.task for e in examples],
            "source": [e.source for e in examples],
            "split": [e.split for e in examples],
            "prompt": [e.prompt for e in examples],
            "response": [e.response for e in examples],
            "meta": [json.dumps(e.meta or {}, sort_keys=True) for e in examples],
            "dataset": [dataset] * len(examples),
        })
        with self.transaction() as con:
            before = con.execute("SELECT count(*) FROM examples").fetchall()[0][0]
            con.register("new_examples", table)
            con.execute("INSERT INTO examples SELECT * FROM new_examples "
                        "WHERE id NOT IN (SELECT id FROM examples)")
            con.unregister("new_examples")
            return con.execute("SELECT count(*) FROM examples").fetchall()[0][0] - before

    def sync_dataset(self, examples: Sequence, dataset: str) -> tuple[int, int]:
        """Make the stored ``dataset`` equal ``examples``: add new ids, drop ids no longer in it.

        Activations of dropped examples stay in their runs but no pool includes them any more.

        Returns:
            ``(added, removed)``.
        """
        added = self.add_examples(examples, dataset)
        keep = pa.table({"id": pa.array([e.id for e in examples], pa.string())})
        with self.transaction() as con:
            con.register("keep_ids", keep)
            removed = con.execute("SELECT count(*) FROM examples WHERE dataset = ? AND id NOT IN "
                                  "(SELECT id FROM keep_ids)", [dataset]).fetchall()[0][0]
            con.execute("DELETE FROM examples WHERE dataset = ? AND id NOT IN (SELECT id FROM keep_ids)", [dataset])
            con.unregister("keep_ids")
        return added, removed

    # -- models / SAEs / runs ----------------------------------------------------------------
    def register_model(self, model_key: str, identity: dict) -> None:
        """Record a model identity (idempotent)."""
        with self.connect() as con:
            con.execute(
                "INSERT OR IGNORE INTO models (model_key, name, family, n_layers, d_model, n_params, identity) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [model_key, identity["name"], identity["family"], identity["n_layers"], identity["d_model"],
                 identity["n_params"], json.dumps(identity, sort_keys=True)],
            )

    def register_sae(self, sae_key: str, info: dict, quality: dict | None) -> None:
        """Record an SAE with its quality figures (replaces an earlier row with the same key)."""
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO saes (sae_key, name, source, path, site, d_in, d_sae, architecture, quality, "
                "neuronpedia_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [sae_key, info["name"], info["source"], info.get("path"), info["site"], info["d_in"],
                 info["d_sae"], info["architecture"], json.dumps(quality or {}, sort_keys=True),
                 info.get("neuronpedia_id")],
            )

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

    # -- extraction shards -------------------------------------------------------------------
    def done_example_ids(self, run_id: str) -> set[str]:
        """Examples whose aggregates are already stored for ``run_id``."""
        df = self.query_df("SELECT example_id FROM example_stats WHERE run_id = ?", [run_id])
        return set(df["example_id"])

    def ingest_shard(self, run_id: str, shard_key: str, acts: pa.Table, stats: pa.Table,
                     path: str | None = None) -> bool:
        """Insert one shard's rows and its bookkeeping in a single transaction.

        A second ingest of the same shard is a no-op, so a crash between writing the shard file and
        ingesting it can never duplicate rows.

        Returns:
            True if rows were inserted, False if the shard was already present.
        """
        with self.transaction() as con:
            if con.execute("SELECT count(*) FROM shards WHERE run_id = ? AND shard_key = ?",
                           [run_id, shard_key]).fetchall()[0][0]:
                return False
            con.register("shard_acts", acts)
            con.register("shard_stats", stats)
            con.execute("INSERT INTO feature_acts SELECT ?, example_id, feature, max_act, sum_act, n_active "
                        "FROM shard_acts", [run_id])
            con.execute("INSERT INTO example_stats SELECT ?, example_id, n_tokens, n_positions, n_sinks, ? "
                        "FROM shard_stats", [run_id, shard_key])
            con.execute("INSERT INTO shards (run_id, shard_key, n_examples, n_rows, path) VALUES (?, ?, ?, ?, ?)",
                        [run_id, shard_key, stats.num_rows, acts.num_rows, path])
            con.unregister("shard_acts")
            con.unregister("shard_stats")
        return True

    def feature_stats(self, run_id: str, example_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Per-feature statistics over a run (optionally a subset of examples).

        Columns: feature, n_examples (examples where it fired), n_active (tokens), sum_act,
        max_act, mean_act_firing (mean activation over the tokens where it fired).
        """
        sql = ("SELECT fa.feature, count(*) AS n_examples, sum(fa.n_active) AS n_active, "
               "sum(fa.sum_act) AS sum_act, max(fa.max_act) AS max_act, "
               "sum(fa.sum_act) / sum(fa.n_active) AS mean_act_firing FROM feature_acts fa ")
        with self.connect() as con:
            if example_ids is not None:
                # a join with an Arrow table of ids scales where list_contains over a long list does not
                con.register("subset_ids", pa.table({"example_id": pa.array(list(example_ids), pa.string())}))
                sql += "JOIN subset_ids USING (example_id) "
            return con.execute(sql + "WHERE fa.run_id = ? GROUP BY fa.feature ORDER BY fa.feature",
                               [run_id]).fetch_df()

    def summary(self) -> dict:
        """Row counts of the main tables (for ``igds store info`` and the overview page)."""
        with self.connect() as con:
            return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]  # noqa: S608 - fixed names
                    for t in ("examples", "models", "saes", "runs", "shards", "example_stats", "feature_acts")}
