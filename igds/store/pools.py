"""The candidate pool's rows and its activations, read for scoring: ``examples``, ``example_stats``,
``feature_acts``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pandas as pd
import pyarrow as pa

from igds.store.base import feature_table, id_table, insert_arrow


class PoolQueries:
    """Queries behind :func:`igds.method.pool.pool_frame` and the resonance matrix."""

    def pool_examples(self, task: str, with_general: bool) -> pd.DataFrame:
        """A task's ``train`` examples, plus every ``general`` record when ``with_general``.

        Returns:
            example_id, task, source, split, prompt, response (unordered).
        """
        return self.query_df("SELECT id AS example_id, task, source, split, prompt, response FROM examples "
                             "WHERE split = 'train' AND (task = ? OR (? AND task = 'general'))", [task, with_general])

    def noisy_pool_examples(self, task: str) -> pd.DataFrame:
        """The task's noisy pool (:mod:`igds.data.noise`), as :meth:`pool_examples` returns a pool; empty until
        :meth:`write_noisy_pool`."""
        return self.query_df("SELECT e.id AS example_id, e.task, e.source, e.split, e.prompt, e.response "
                             "FROM examples e JOIN noisy_pool n ON n.task = e.task AND n.example_id = e.id "
                             "WHERE e.task = ?", [task])

    def noisy_build_key(self, task: str) -> str | None:
        """The build key of the task's stored noisy pool, or None."""
        return self.scalar("SELECT any_value(build_key) FROM noisy_pool WHERE task = ?", [task])

    def write_noisy_pool(self, task: str, build_key: str, corrupted: Sequence, member_ids: Sequence[str],
                         labels: pd.DataFrame) -> None:
        """Replace the task's noisy pool: the corrupted items (memberships of dataset ``noise:<task>``), the members
        and, apart, the labels (``example_id``, ``kind``, ``source_id``)."""
        self.sync_dataset(list(corrupted), f"noise:{task}")
        members = pa.table({"task": [task] * len(member_ids), "example_id": list(member_ids),
                            "build_key": [build_key] * len(member_ids)})
        lab = pa.table({"task": [task] * len(labels), "example_id": list(labels.example_id),
                        "kind": list(labels.kind), "source_id": list(labels.source_id)})
        with self.transaction() as con:
            con.execute("DELETE FROM noisy_pool WHERE task = ?", [task])
            con.execute("DELETE FROM corruption_labels WHERE task = ?", [task])
            insert_arrow(con, {"noisy_pool": members, "corruption_labels": lab})

    def corruption_labels(self, task: str) -> pd.DataFrame:
        """The labels of the task's noisy pool: example_id, kind, source_id (for the report only)."""
        return self.query_df("SELECT example_id, kind, source_id FROM corruption_labels WHERE task = ? "
                             "ORDER BY example_id", [task])

    def token_counts(self, run_id: str, example_ids: Sequence[str]) -> pd.DataFrame:
        """``n_tokens`` and ``n_positions`` of the given examples in an extraction run (those it covers)."""
        with self.connect() as con:
            con.register("stat_ids", id_table(example_ids))
            return con.execute("SELECT es.example_id, es.n_tokens, es.n_positions FROM example_stats es "
                               "JOIN stat_ids USING (example_id) WHERE es.run_id = ?", [run_id]).fetch_df()

    def iter_pool_activations(self, run_id: str, example_ids: Sequence[str], features: Sequence[int],
                              chunk_rows: int = 1_000_000) -> Iterator[dict]:
        """The (example, feature) aggregates of ``features`` on ``example_ids``, in chunks of rows.

        Yields:
            dicts of numpy arrays ``example_id``, ``feature``, ``sum_act``, ``max_act``.
        """
        with self.connect() as con:
            con.register("act_ids", id_table(example_ids))
            con.register("act_feats", feature_table(features))
            reader = con.sql("SELECT fa.example_id, fa.feature, fa.sum_act, fa.max_act FROM feature_acts fa "
                             "JOIN act_feats USING (feature) JOIN act_ids USING (example_id) WHERE fa.run_id = ?",
                             params=[run_id]).to_arrow_reader(chunk_rows)
            for batch in reader:
                yield {name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names}
