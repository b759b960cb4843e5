"""Extraction shards and the per-(example, feature) aggregates: ``feature_acts``, ``example_stats``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa


class ActivationQueries:
    """Queries on the activation tables (mixed into :class:`igds.store.ActivationStore`)."""

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
