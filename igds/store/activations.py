"""Extraction shards and the per-(example, feature) aggregates: ``feature_acts``, ``example_stats``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from igds.store.base import id_table


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
            "ORDER BY fa.max_act DESC LIMIT ?", [run_id, int(feature), task, k])

    def feature_max_acts(self, run_id: str, feature: int) -> pd.DataFrame:
        """Max activation of a feature on every example of a run where it fires, with the example's
        task (max_act, task; store order)."""
        return self.query_df("SELECT fa.max_act, e.task FROM feature_acts fa JOIN examples e ON e.id = fa.example_id "
                             "WHERE fa.run_id = ? AND fa.feature = ?", [run_id, int(feature)])
