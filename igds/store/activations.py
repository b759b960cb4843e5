"""Extraction shards and the per-(example, feature) aggregates: ``feature_acts``, ``example_stats``.

Both are views over the shards' Parquet files (:mod:`igds.store.shards`); ``ingest_shard`` records a shard
and rebuilds the views in one transaction, so readers see a shard whole or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from igds.store import shards as sh
from igds.store.base import id_table


class ActivationQueries:
    """Queries on the activation tables (mixed into :class:`igds.store.ActivationStore`)."""

    def done_example_ids(self, run_id: str) -> set[str]:
        """Examples whose aggregates are already stored for ``run_id``."""
        df = self.query_df("SELECT example_id FROM example_stats WHERE run_id = ?", [run_id])
        return set(df["example_id"])

    def ingest_shard(self, run_id: str, shard_key: str, acts: pa.Table | None = None, stats: pa.Table | None = None,
                     path: str | Path | None = None) -> bool:
        """Add one extraction shard to the store, exactly once.

        The rows come from the worker's files when ``path`` names an existing ``acts-<key>.parquet`` with its
        ``stats-<key>.parquet`` beside it (hard-linked into the shard location, no copy, when they are already
        in the canonical schema), else from the ``acts`` / ``stats`` tables. Either way they end up as a
        Parquet pair under the store's shard location, and the shard's ``shards`` row and the views that list
        its files commit in one transaction: a shard is visible whole or not at all, and a second ingest of
        the same shard, or one after a crash, never duplicates a row.

        Args:
            run_id: the extraction run.
            shard_key: the shard's content key (letters, digits, ``_.-``).
            acts: example_id, feature, max_act, sum_act, n_active (cast to int32 / float32).
            stats: example_id, n_tokens, n_positions, n_sinks (cast to int32); one row per example.
            path: the worker's ``acts-<key>.parquet``; recorded as the shard's provenance.

        Returns:
            True if the shard was added, False if it was already present.

        Raises:
            ShardError: no rows given, a malformed file or table, or examples already stored for the run.
        """
        src_acts = src_stats = None
        if path is not None:
            src_acts = Path(path)
            name = src_acts.name
            stats_name = "stats-" + name[len("acts-"):] if name.startswith("acts-") else None
            if stats_name and src_acts.is_file() and (src_acts.parent / stats_name).is_file():
                src_stats = src_acts.parent / stats_name
            else:
                src_acts = None
        if src_acts is None and (acts is None or stats is None):
            raise sh.ShardError(f"shard {shard_key} of run {run_id}: pass acts and stats, or the path of a written "
                                f"acts-<key>.parquet with its stats-<key>.parquet (got path={path!r})")
        return self._ingest(run_id, shard_key, acts, stats, src_acts, src_stats, str(path) if path else None)

    def ingest_shard_files(self, run_id: str, shard_key: str, acts_path: str | Path, stats_path: str | Path) -> bool:
        """:meth:`ingest_shard` from a worker's two written files (any local paths); same guarantees."""
        acts_path, stats_path = Path(acts_path), Path(stats_path)
        for f in (acts_path, stats_path):
            if not f.is_file():
                raise sh.ShardError(f"shard {shard_key} of run {run_id}: {f} does not exist")
        return self._ingest(run_id, shard_key, None, None, acts_path, stats_path, str(acts_path))

    def _ingest(self, run_id: str, shard_key: str, acts: pa.Table | None, stats: pa.Table | None,
                src_acts: Path | None, src_stats: Path | None, provenance: str | None) -> bool:
        rel_dir = sh.partition_dir(run_id, shard_key)  # validates both
        with self.ingest_lock:
            if self._shard_recorded(run_id, shard_key):
                return False
            if src_acts is not None:
                acts, n_rows = sh.read_source(src_acts, sh.ACTS_SCHEMA, "acts file")
                stats, n_examples = sh.read_source(src_stats, sh.STATS_SCHEMA, "stats file")
                ids = (stats if stats is not None else pq.read_table(src_stats, columns=["example_id"]))
            else:
                acts = sh.conform(acts, sh.ACTS_SCHEMA, f"acts of shard {shard_key}")
                stats = sh.conform(stats, sh.STATS_SCHEMA, f"stats of shard {shard_key}")
                n_rows, n_examples, ids = acts.num_rows, stats.num_rows, stats
            ids = ids.select(["example_id"])
            column = ids.column("example_id")
            if column.null_count or pc.count_distinct(column).as_py() != ids.num_rows:
                raise sh.ShardError(f"shard {shard_key} of run {run_id}: its stats repeat an example id (or lack one)")
            published = [self.shards.publish(rel_dir, "acts", acts, src_acts),
                         self.shards.publish(rel_dir, "stats", stats, src_stats)]
            try:
                with self.transaction() as con:
                    added = not con.execute("SELECT count(*) FROM shards WHERE run_id = ? AND shard_key = ?",
                                            [run_id, shard_key]).fetchall()[0][0]
                    if added:
                        con.register("shard_ids", ids)
                        again = con.execute("SELECT count(*) FROM example_stats es JOIN shard_ids USING (example_id) "
                                            "WHERE es.run_id = ?", [run_id]).fetchall()[0][0]
                        con.unregister("shard_ids")
                        if again:
                            raise sh.ShardError(f"shard {shard_key} of run {run_id}: {again} of its examples are "
                                                "already stored for the run (in another shard)")
                        con.execute("INSERT INTO shards (run_id, shard_key, n_examples, n_rows, path, seq, acts_file, "
                                    "stats_file) SELECT ?, ?, ?, ?, ?, coalesce(max(seq), 0) + 1, ?, ? FROM shards",
                                    [run_id, shard_key, n_examples, n_rows, provenance, *published])
                        self._rebuild_views(con)
            except BaseException:
                for rel in published:
                    self.shards.remove(rel)
                raise
            # the losing attempt removes its own files; the winner, files earlier attempts left behind
            stale = [r for r in self.shards.listdir(rel_dir) if r not in published] if added else published
            for rel in stale:
                self.shards.remove(rel)
        return added

    def _shard_recorded(self, run_id: str, shard_key: str) -> bool:
        return bool(self.scalar("SELECT count(*) FROM shards WHERE run_id = ? AND shard_key = ?", [run_id, shard_key]))

    def shard_files(self, run_id: str | None = None) -> pd.DataFrame:
        """The recorded shards (of one run, or all) in ingest order with their files' full paths or URIs.

        Returns:
            run_id, shard_key, n_examples, n_rows, acts_uri, stats_uri.
        """
        df = self.query_df("SELECT run_id, shard_key, n_examples, n_rows, acts_file, stats_file FROM shards "
                           "WHERE run_id = ? OR ? IS NULL ORDER BY seq", [run_id, run_id])
        return df.rename(columns={"acts_file": "acts_uri", "stats_file": "stats_uri"})

    def missing_shard_files(self) -> list[str]:
        """Recorded shard files that are not at the shard location (a moved or damaged workspace)."""
        rows = self.query_df("SELECT acts_file, stats_file FROM shards ORDER BY seq")
        return [f for pair in rows.itertuples(index=False) for f in pair if not sh.file_exists(f)]

    def remove_run_shards(self, run_id: str) -> int:
        """Drop an extraction run's activations: its ``shards`` rows (the views stop listing them in the same
        transaction), then its folder of shard files (files a copied store file shares with its original stay).
        Other tables that name the run are left as they are.

        Returns:
            number of shards removed.
        """
        with self.ingest_lock:
            with self.transaction() as con:
                n = con.execute("SELECT count(*) FROM shards WHERE run_id = ?", [run_id]).fetchall()[0][0]
                con.execute("DELETE FROM shards WHERE run_id = ?", [run_id])
                self._rebuild_views(con)
            self.shards.remove(self.shards.uri(f"run_id={quote(run_id, safe='')}"))  # its own files only
        return int(n)

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
                con.register("subset_ids", id_table(example_ids))
                sql += "JOIN subset_ids USING (example_id) "
            return con.execute(sql + "WHERE fa.run_id = ? GROUP BY fa.feature ORDER BY fa.feature",
                               [run_id]).fetch_df()

    def subset_token_count(self, run_id: str, example_ids: Sequence[str]) -> tuple[int, int]:
        """Kept tokens of a subset of examples in a run, and how many of them have no stats there.

        Returns:
            ``(n_tokens, n_missing)``: the summed ``n_tokens`` of the examples extracted in ``run_id``
            and the number of ``example_ids`` that were not.
        """
        with self.connect() as con:
            con.register("subset_ids", id_table(example_ids))
            n_tokens = con.execute("SELECT coalesce(sum(n_tokens), 0) FROM example_stats es JOIN subset_ids "
                                   "USING (example_id) WHERE es.run_id = ?", [run_id]).fetchall()[0][0]
            missing = con.execute("SELECT count(*) FROM subset_ids WHERE example_id NOT IN "
                                  "(SELECT example_id FROM example_stats WHERE run_id = ?)",
                                  [run_id]).fetchall()[0][0]
        return int(n_tokens), int(missing)

    def top_activating_examples(self, run_id: str, feature: int, task: str, k: int = 10) -> pd.DataFrame:
        """Train-split examples of ``task`` or of the general pool where a feature fires most strongly.

        Returns:
            at most ``k`` rows by descending max activation: example_id, max_act, mean_act (over kept
            tokens), n_active, task, source, prompt, response.
        """
        return self.query_df(
            "SELECT fa.example_id, fa.max_act, fa.sum_act / es.n_tokens AS mean_act, fa.n_active, e.task, e.source, "
            "e.prompt, e.response FROM feature_acts fa JOIN examples e ON e.id = fa.example_id "
            "JOIN example_stats es ON es.run_id = fa.run_id AND es.example_id = fa.example_id "
            "WHERE fa.run_id = ? AND fa.feature = ? AND e.split = 'train' AND (e.task = ? OR e.task = 'general') "
            "ORDER BY fa.max_act DESC, fa.example_id LIMIT ?", [run_id, int(feature), task, k])

    def feature_max_acts(self, run_id: str, feature: int) -> pd.DataFrame:
        """Max activation of a feature on every example of a run where it fires, with the example's
        task (max_act, task; store order)."""
        return self.query_df("SELECT fa.max_act, e.task FROM feature_acts fa JOIN examples e ON e.id = fa.example_id "
                             "WHERE fa.run_id = ? AND fa.feature = ?", [run_id, int(feature)])
