"""Intervention effects: ``effects``, ``effect_summary``, ``attribution`` and the null (``null_effects``,
``null_summary``)."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from igds.store.base import insert_arrow

EFFECT_COLUMNS = ["effect_id", "feature", "kind", "alpha", "example_id", "nll_base", "nll_int"]
SUMMARY_COLUMNS = ["effect_id", "feature", "kind", "alpha", "n", "n_fired", "effect", "ci_low", "ci_high", "p_value",
                   "seconds"]
ATTRIBUTION_COLUMNS = ["effect_id", "feature", "mean_act", "est_amplify", "est_ablate"]
NULL_EFFECT_COLUMNS = ["effect_id", "null_id", "example_id", "nll_base", "nll_int"]
NULL_SUMMARY_COLUMNS = ["effect_id", "null_id", "kind", "feature", "matched", "edit_norm", "n", "n_fired", "effect",
                        "ci_low", "ci_high", "p_value", "seconds"]


def _arrow(df: pd.DataFrame, columns: list[str]) -> pa.Table:
    return pa.Table.from_pandas(df[columns], preserve_index=False)


class EffectQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- attribution screen ------------------------------------------------------------------
    def has_attribution(self, effect_id: str) -> bool:
        """Whether the attribution screen of an intervention run is stored."""
        return bool(self.scalar("SELECT count(*) FROM attribution WHERE effect_id = ?", [effect_id]))

    def write_attribution(self, rows: pd.DataFrame) -> None:
        """Store an attribution screen: one row per SAE feature with columns ``ATTRIBUTION_COLUMNS``."""
        with self.transaction() as con:
            insert_arrow(con, {"attribution": _arrow(rows, ATTRIBUTION_COLUMNS)})

    def attribution(self, effect_id: str) -> pd.DataFrame:
        """The attribution screen of an intervention run (``ATTRIBUTION_COLUMNS``), by feature."""
        return self.query_df("SELECT * FROM attribution WHERE effect_id = ? ORDER BY feature", [effect_id])

    # -- exact effects -----------------------------------------------------------------------
    def write_feature_effects(self, effects: pd.DataFrame, summary: pd.DataFrame) -> None:
        """Store one feature's per-example NLLs and their summaries in one transaction, so an
        interrupted run never keeps half a feature.

        Args:
            effects: one row per (job, dev example), columns ``EFFECT_COLUMNS``.
            summary: one row per job (kind, alpha), columns ``SUMMARY_COLUMNS``.
        """
        with self.transaction() as con:
            for r in summary.itertuples():  # a later look's summary replaces the earlier one
                con.execute("DELETE FROM effect_summary WHERE effect_id = ? AND feature = ? AND kind = ? "
                            "AND alpha = ?", [r.effect_id, int(r.feature), r.kind, float(r.alpha)])
            insert_arrow(con, {"effects": _arrow(effects, EFFECT_COLUMNS),
                               "effect_summary": _arrow(summary, SUMMARY_COLUMNS)})

    def measured_rows(self, effect_id: str) -> pd.DataFrame:
        """Dev items stored per job of an intervention run: feature, kind, alpha, n_rows."""
        return self.query_df("SELECT feature, kind, alpha, count(*) AS n_rows FROM effects WHERE effect_id = ? "
                             "GROUP BY feature, kind, alpha", [effect_id])

    def feature_rows(self, effect_id: str, feature: int) -> pd.DataFrame:
        """One feature's stored per-example rows (``EFFECT_COLUMNS``)."""
        return self.query_df("SELECT * FROM effects WHERE effect_id = ? AND feature = ?", [effect_id, int(feature)])

    def effect_summary(self, effect_id: str) -> pd.DataFrame:
        """Summaries of an intervention run (``SUMMARY_COLUMNS``), by feature, kind and alpha."""
        return self.query_df("SELECT * FROM effect_summary WHERE effect_id = ? ORDER BY feature, kind, alpha",
                             [effect_id])

    def measured_features(self, effect_id: str) -> set[int]:
        """Features of an intervention run whose effects are stored."""
        df = self.query_df("SELECT DISTINCT feature FROM effect_summary WHERE effect_id = ?", [effect_id])
        return {int(f) for f in df.feature}

    def effect_deltas(self, effect_id: str) -> pd.DataFrame:
        """Per-example NLL change of every job of an intervention run.

        Returns:
            feature, kind, alpha, example_id, delta = nll_base − nll_int (positive: the edit lowered
            the NLL), in store order.
        """
        return self.query_df("SELECT feature, kind, alpha, example_id, nll_base - nll_int AS delta FROM effects "
                             "WHERE effect_id = ?", [effect_id])

    # -- the null ----------------------------------------------------------------------------
    def write_null_effect(self, effects: pd.DataFrame, summary: pd.DataFrame) -> None:
        """Store one null element's per-example NLLs and its summary in one transaction.

        Args:
            effects: one row per dev example, columns ``NULL_EFFECT_COLUMNS``.
            summary: one row, columns ``NULL_SUMMARY_COLUMNS``.
        """
        with self.transaction() as con:
            for r in summary.itertuples():  # a later look's summary replaces the earlier one
                con.execute("DELETE FROM null_summary WHERE effect_id = ? AND null_id = ?",
                            [r.effect_id, int(r.null_id)])
            insert_arrow(con, {"null_effects": _arrow(effects, NULL_EFFECT_COLUMNS),
                               "null_summary": _arrow(summary, NULL_SUMMARY_COLUMNS)})

    def measured_null_rows(self, effect_id: str) -> dict[int, int]:
        """Dev items stored per null element of an intervention run."""
        df = self.query_df("SELECT null_id, count(*) AS n_rows FROM null_effects WHERE effect_id = ? GROUP BY null_id",
                           [effect_id])
        return {int(i): int(n) for i, n in zip(df.null_id, df.n_rows, strict=True)}

    def null_rows(self, effect_id: str, null_id: int) -> pd.DataFrame:
        """One null element's stored per-example rows (``NULL_EFFECT_COLUMNS``)."""
        return self.query_df("SELECT * FROM null_effects WHERE effect_id = ? AND null_id = ?",
                             [effect_id, int(null_id)])

    def null_summary(self, effect_id: str) -> pd.DataFrame:
        """The null of an intervention run (``NULL_SUMMARY_COLUMNS``), by null id."""
        return self.query_df("SELECT * FROM null_summary WHERE effect_id = ? ORDER BY null_id", [effect_id])

    def measured_nulls(self, effect_id: str) -> set[int]:
        """Null elements of an intervention run whose effects are stored."""
        df = self.query_df("SELECT null_id FROM null_summary WHERE effect_id = ?", [effect_id])
        return {int(i) for i in df.null_id}

    def null_deltas(self, effect_id: str) -> pd.DataFrame:
        """Per-example NLL change of every null element of an intervention run.

        Returns:
            null_id, example_id, delta = nll_base − nll_int (positive: the edit lowered the NLL).
        """
        return self.query_df("SELECT null_id, example_id, nll_base - nll_int AS delta FROM null_effects "
                             "WHERE effect_id = ? ORDER BY null_id, example_id", [effect_id])
