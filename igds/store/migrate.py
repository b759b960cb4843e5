"""In-place upgrade of an older store file (schema 3: activation rows inside DuckDB) to shards in place.

The rows of the old ``feature_acts`` / ``example_stats`` tables are written out as one Parquet pair per
recorded shard (rows in the order the tables held them), then one transaction records the files, drops the
two tables, creates the views and sets the schema version. A crash while writing leaves the old store
untouched (the written files are listed nowhere, and the next open writes them again under fresh names); a
crash in the transaction rolls it back. The file is then compacted (``StoreBase.compact``), which gives the
dropped tables' space back.

Before anything is written, the old file is copied beside it as ``<name>.v<version>.bak`` (e.g.
``igds.duckdb.v3.bak``; ``.v3.1.bak`` and so on when that name is taken), so an upgrade never loses the only
copy: an older IGDS opens the backup as it was. The backup's path is logged and recorded in ``meta``
(``migration_backup``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pyarrow as pa

from igds.constants import SCHEMA_VERSION
from igds.store import shards as sh

log = logging.getLogger(__name__)


def check_migratable(path, con, version: int) -> None:
    """Refuse, before anything is written, a store this module cannot upgrade."""
    from igds.store.errors import StoreError

    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' AND table_name IN (?, ?)", [sh.ACTS_VIEW, sh.STATS_VIEW]).fetchall()}
    if version != 3 or tables != {sh.ACTS_VIEW, sh.STATS_VIEW}:
        raise StoreError(f"{path} has schema version {version}, this IGDS expects {SCHEMA_VERSION}; move the file "
                         "aside to rebuild it (only a version-3 store with its activation tables is upgraded in place)")


def backup_path(path: Path, version: int) -> Path:
    """A free name beside ``path`` for its schema-``version`` backup: ``<name>.v<version>.bak``, then
    ``<name>.v<version>.1.bak``, ..."""
    candidate = path.with_name(f"{path.name}.v{version}.bak")
    n = 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.v{version}.{n}.bak")
    return candidate


def backup(path: Path, con, version: int) -> Path:
    """Copy the store file (its pending WAL folded in first) beside it before a migration; returns the copy.

    Raises:
        StoreError: when the file system has no room for the copy (nothing is written).
    """
    from igds.store.errors import StoreError

    con.execute("CHECKPOINT")  # the file alone then holds every committed change
    target = backup_path(path, version)
    size, free = path.stat().st_size, shutil.disk_usage(path.parent).free
    if free < size:
        raise StoreError(f"{path} needs an upgrade from schema version {version}, which first copies it to {target} "
                         f"({size:,} bytes), but only {free:,} bytes are free there; free some space, or move the "
                         "file aside to rebuild it")
    tmp = target.with_name(f".tmp-{target.name}")
    try:
        shutil.copy2(path, tmp)
        tmp.replace(target)  # never a half-written backup under the final name
    finally:
        tmp.unlink(missing_ok=True)
    log.warning("upgrading %s from schema version %d: the previous file is kept as %s", path, version, target)
    return target


def migrate(store, con, version: int) -> None:
    """Upgrade the open store ``con`` (of ``store``) from ``version`` to the current schema."""
    from igds.store.errors import StoreError

    check_migratable(store.path, con, version)
    orphans = con.execute("SELECT count(*) FROM feature_acts fa WHERE NOT EXISTS (SELECT 1 FROM example_stats es "
                          "WHERE es.run_id = fa.run_id AND es.example_id = fa.example_id)").fetchall()[0][0]
    if orphans:
        raise StoreError(f"{store.path}: {orphans} activation rows have no example_stats row, so no shard to move "
                         "them to; this store cannot be upgraded in place (move it aside to rebuild it)")
    # shards in the order their rows were inserted (first stats row), each with the files it gets
    shard_rows = con.execute("SELECT run_id, shard_key, count(*), min(rowid) AS first FROM example_stats "
                             "GROUP BY run_id, shard_key ORDER BY first").fetchall()
    published: list[str] = []
    in_tx = False
    try:
        files = {}
        for run_id in dict.fromkeys(r[0] for r in shard_rows):
            files.update(_export_run(store, con, run_id, published))
        con.execute("BEGIN TRANSACTION")
        in_tx = True
        con.execute("CREATE TEMP TABLE migrated (run_id VARCHAR, shard_key VARCHAR, seq BIGINT, n_examples INTEGER, "
                    "n_rows BIGINT, acts_file VARCHAR, stats_file VARCHAR)")
        rows = [(run, key, seq, n_ex, files[(run, key)][2], files[(run, key)][0], files[(run, key)][1])
                for seq, (run, key, n_ex, _) in enumerate(shard_rows, start=1)]
        con.register("migrated_rows", pa.table(list(zip(*rows, strict=True)) if rows else [[]] * 7,
                                               names=["run_id", "shard_key", "seq", "n_examples", "n_rows",
                                                      "acts_file", "stats_file"]))
        con.execute("INSERT INTO migrated SELECT * FROM migrated_rows")
        con.unregister("migrated_rows")
        # a shard row of the old schema without stats rows holds no rows: nothing to keep
        con.execute("DELETE FROM shards s WHERE NOT EXISTS (SELECT 1 FROM migrated m WHERE m.run_id = s.run_id "
                    "AND m.shard_key = s.shard_key)")
        con.execute("UPDATE shards s SET seq = m.seq, n_examples = m.n_examples, n_rows = m.n_rows, "
                    "acts_file = m.acts_file, stats_file = m.stats_file FROM migrated m "
                    "WHERE m.run_id = s.run_id AND m.shard_key = s.shard_key")
        con.execute("INSERT INTO shards (run_id, shard_key, n_examples, n_rows, seq, acts_file, stats_file) "
                    "SELECT run_id, shard_key, n_examples, n_rows, seq, acts_file, stats_file FROM migrated m "
                    "WHERE NOT EXISTS (SELECT 1 FROM shards s WHERE s.run_id = m.run_id "
                    "AND s.shard_key = m.shard_key)")
        con.execute("DROP TABLE migrated")
        con.execute("DROP TABLE feature_acts")
        con.execute("DROP TABLE example_stats")
        store._rebuild_views(con)
        con.execute("INSERT OR REPLACE INTO meta VALUES ('shard_location', ?)", [store.shard_location_recorded])
        con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])
        con.execute("COMMIT")
    except BaseException:
        if in_tx:
            con.execute("ROLLBACK")
        for rel in published:
            store.shards.remove(rel)
        raise
    store._compact(con)  # give the dropped tables' space back


def _export_run(store, con, run_id: str, published: list[str]) -> dict[tuple[str, str], tuple[str, str, int]]:
    """Write one run's shards; ``{(run, shard key): (acts file, stats file, acts rows)}``. One sorted pass
    over the run's rows: shards in insertion order, each shard's rows in table order (a run's rows are held in
    memory once: about 50 bytes a row)."""
    order = ("SELECT shard_key, row_number() OVER (ORDER BY min(rowid)) AS shard_no FROM example_stats "
             "WHERE run_id = ? GROUP BY shard_key")
    keys = dict(con.execute(f"SELECT shard_no, shard_key FROM ({order})", [run_id]).fetchall())  # noqa: S608
    stats = con.sql(
        f"SELECT o.shard_no, es.example_id, es.n_tokens, es.n_positions, es.n_sinks FROM example_stats es "  # noqa: S608
        f"JOIN ({order}) o USING (shard_key) WHERE es.run_id = ? ORDER BY o.shard_no, es.rowid",
        params=[run_id, run_id]).to_arrow_table()
    acts = con.sql(
        f"SELECT m.shard_no, fa.example_id, fa.feature, fa.max_act, fa.sum_act, fa.n_active FROM feature_acts fa "  # noqa: S608
        f"JOIN (SELECT es.example_id, o.shard_no FROM example_stats es JOIN ({order}) o USING (shard_key) "
        "WHERE es.run_id = ?) m USING (example_id) WHERE fa.run_id = ? ORDER BY m.shard_no, fa.rowid",
        params=[run_id, run_id, run_id]).to_arrow_table()
    out = {}
    bounds = {}
    for name, table in (("stats", stats), ("acts", acts)):
        no = table.column("shard_no").to_numpy()
        starts = no.searchsorted(sorted(keys), side="left")
        ends = no.searchsorted(sorted(keys), side="right")
        bounds[name] = {k: (int(s), int(e)) for k, s, e in zip(sorted(keys), starts, ends, strict=True)}
    for no in sorted(keys):
        key = keys[no]
        rel_dir = sh.partition_dir(run_id, key)
        part = {}
        for name, table, schema in (("acts", acts, sh.ACTS_SCHEMA), ("stats", stats, sh.STATS_SCHEMA)):
            s, e = bounds[name][no]
            rows = sh.conform(table.slice(s, e - s), schema, f"{name} of shard {key}")
            part[name] = (store.shards.publish(rel_dir, name, rows, None), rows.num_rows)
            published.append(part[name][0])
        out[(run_id, key)] = (part["acts"][0], part["stats"][0], part["acts"][1])
    return out
