"""Recall candidates and the logit lens: ``recall``, ``feature_info``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa


class RecallQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- recall ------------------------------------------------------------------------------
    def write_recall(self, recall_id: str, rows: pd.DataFrame | pa.Table) -> None:
        """Replace the stored rows of one recall result, in one transaction.

        Args:
            recall_id: the recall's stage key.
            rows: one row per feature in ``recall`` column order (recall_id, task, feature, freq_task,
                freq_ref, tok_freq_task, tok_freq_ref, lift, mean_act_task, max_act_task, is_candidate, rank).
        """
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
        with self.transaction() as con:
            con.execute("DELETE FROM recall WHERE recall_id = ?", [recall_id])
            con.register("recall_rows", table)
            con.execute("INSERT INTO recall SELECT * FROM recall_rows")
            con.unregister("recall_rows")

    def recall_table(self, recall_id: str) -> pd.DataFrame:
        """Every row of one recall result (all ``recall`` columns), candidates in rank order first, then
        the other features by probe frequency; empty when the recall is unknown."""
        return self.query_df("SELECT * FROM recall WHERE recall_id = ? ORDER BY rank NULLS LAST, freq_task DESC",
                             [recall_id])

    def n_recall_candidates(self, recall_id: str) -> int:
        """Number of candidate features of one recall result (0 when unknown)."""
        return int(self.scalar("SELECT count(*) FROM recall WHERE recall_id = ? AND is_candidate",
                               [recall_id]) or 0)

    # -- logit lens --------------------------------------------------------------------------
    def has_logit_lens(self, sae_key: str) -> bool:
        """Whether the logit lens of ``sae_key`` is stored."""
        return bool(self.scalar("SELECT count(*) FROM feature_info WHERE sae_key = ?", [sae_key]))

    def write_logit_lens(self, rows: pd.DataFrame | pa.Table) -> None:
        """Append logit-lens rows (sae_key, feature, top_tokens, bottom_tokens; tokens as JSON lists)."""
        table = rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
        with self.transaction() as con:
            con.register("lens_rows", table)
            con.execute("INSERT INTO feature_info SELECT * FROM lens_rows")
            con.unregister("lens_rows")

    def logit_lens_table(self, sae_key: str, features: Sequence[int] | None = None) -> pd.DataFrame:
        """Stored logit lens of an SAE: feature, top_tokens, bottom_tokens (JSON lists), in store order.

        Args:
            sae_key: the SAE.
            features: only these features (default: all).
        """
        if features is None:
            return self.query_df("SELECT feature, top_tokens, bottom_tokens FROM feature_info WHERE sae_key = ?",
                                 [sae_key])
        return self.query_df("SELECT feature, top_tokens, bottom_tokens FROM feature_info WHERE sae_key = ? "
                             "AND list_contains(?, feature)", [sae_key, [int(f) for f in features]])
