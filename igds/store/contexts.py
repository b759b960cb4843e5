"""Top-activating contexts of features: which examples to recompute (``feature_acts``) and the cached token
windows (``feature_contexts``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
import pyarrow as pa

from igds.store.base import feature_table

_LIST_COLUMNS = ("tokens", "acts", "in_scope")
_TYPES = {"run_id": pa.string(), "sae_key": pa.string(), "feature": pa.int32(), "k": pa.int32(),
          "half_window": pa.int32(), "rank": pa.int32(), "example_id": pa.string(), "task": pa.string(),
          "source": pa.string(), "max_act": pa.float32(), "stored_max": pa.float32(), "max_pos": pa.int32(),
          "max_token": pa.string(), "start_pos": pa.int32(), "n_positions": pa.int32(),
          "tokens": pa.list_(pa.string()), "acts": pa.list_(pa.float32()), "in_scope": pa.list_(pa.bool_())}
CONTEXT_COLUMNS = tuple(_TYPES)
"""Columns of ``feature_contexts`` a writer supplies (``created`` is filled in)."""


class ContextQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    def run_top_examples(self, run_id: str, features: Sequence[int], k: int) -> pd.DataFrame:
        """The ``k`` examples of an extraction run where each feature fires most strongly, whatever their
        task or split (examples whose record left the store are skipped).

        Each example comes with the task it is rendered through: its first non-``general`` membership by
        name, else ``general`` (extraction renders a record through the task that brought it).

        Returns:
            feature, rank (0 = strongest), example_id, max_act (stored), task, source, prompt, response;
            ordered by feature and rank; ties broken by example id.
        """
        if not features:
            return pd.DataFrame(columns=["feature", "rank", "example_id", "max_act", "task", "source", "prompt",
                                         "response"])
        with self.connect() as con:
            con.register("ctx_feats", feature_table(features))
            df = con.execute(
                "WITH top AS (SELECT fa.feature, fa.example_id, fa.max_act, row_number() OVER (PARTITION BY "
                "fa.feature ORDER BY fa.max_act DESC, fa.example_id) - 1 AS rank FROM feature_acts fa "
                "JOIN ctx_feats USING (feature) JOIN records r ON r.id = fa.example_id WHERE fa.run_id = ? "
                "QUALIFY rank < ?), "
                "task_of AS (SELECT example_id, task FROM memberships WHERE example_id IN (SELECT example_id FROM top) "
                "QUALIFY row_number() OVER (PARTITION BY example_id ORDER BY task = 'general', task) = 1) "
                "SELECT top.feature, top.rank, top.example_id, top.max_act, t.task, r.source, r.prompt, r.response "
                "FROM top JOIN records r ON r.id = top.example_id JOIN task_of t USING (example_id) "
                "ORDER BY top.feature, top.rank", [run_id, int(k)]).fetch_df()
            con.unregister("ctx_feats")
        df["feature"] = df["feature"].astype(int)
        df["rank"] = df["rank"].astype(int)
        return df

    def write_contexts(self, rows: Mapping[str, Sequence]) -> None:
        """Store contexts, one list per column of :data:`CONTEXT_COLUMNS`, replacing those of the same
        (run, feature, k, half_window) in one transaction."""
        table = pa.table({c: pa.array(rows[c], t) for c, t in _TYPES.items()})
        keys = table.select(["run_id", "feature", "k", "half_window"])
        cols = ", ".join(CONTEXT_COLUMNS)
        with self.transaction() as con:
            con.register("ctx_rows", table)
            con.register("ctx_keys", keys)
            con.execute("DELETE FROM feature_contexts fc WHERE EXISTS (SELECT 1 FROM ctx_keys c WHERE "
                        "c.run_id = fc.run_id AND c.feature = fc.feature AND c.k = fc.k "
                        "AND c.half_window = fc.half_window)")
            con.execute(f"INSERT INTO feature_contexts ({cols}) SELECT {cols} FROM ctx_rows")  # noqa: S608 - fixed names
            con.unregister("ctx_rows")
            con.unregister("ctx_keys")

    def feature_contexts(self, run_id: str, k: int, half_window: int,
                         features: Sequence[int] | None = None) -> pd.DataFrame:
        """Cached contexts of a run (optionally only ``features``), ordered by feature and rank.

        Returns:
            the :data:`CONTEXT_COLUMNS` but run_id, k and half_window; ``tokens``, ``acts`` and ``in_scope``
            as Python lists.
        """
        cols = ", ".join(f"fc.{c}" for c in CONTEXT_COLUMNS if c not in ("run_id", "k", "half_window"))
        sql = f"SELECT {cols} FROM feature_contexts fc "  # noqa: S608 - fixed names
        with self.connect() as con:
            if features is not None:
                con.register("ctx_feats", feature_table(features))
                sql += "JOIN ctx_feats USING (feature) "
            df = con.execute(sql + "WHERE fc.run_id = ? AND fc.k = ? AND fc.half_window = ? "
                             "ORDER BY fc.feature, fc.rank", [run_id, int(k), int(half_window)]).fetch_df()
        for c in _LIST_COLUMNS:
            df[c] = df[c].map(list)
        return df

    def drop_contexts(self, run_id: str, features: Sequence[int], k: int, half_window: int) -> None:
        """Forget the cached contexts of ``features`` of a run at (k, half_window) (e.g. once the run grew)."""
        if not features:
            return
        with self.transaction() as con:
            con.register("ctx_feats", feature_table(features))
            con.execute("DELETE FROM feature_contexts WHERE run_id = ? AND k = ? AND half_window = ? AND feature IN "
                        "(SELECT feature FROM ctx_feats)", [run_id, int(k), int(half_window)])
            con.unregister("ctx_feats")

    def context_features(self, run_id: str, k: int, half_window: int) -> set[int]:
        """Features whose contexts are cached for a run at (k, half_window)."""
        df = self.query_df("SELECT DISTINCT feature FROM feature_contexts WHERE run_id = ? AND k = ? "
                           "AND half_window = ?", [run_id, int(k), int(half_window)])
        return {int(f) for f in df["feature"]}
