"""Feature labels and notes, activation quantiles and the reads behind selection diffs and the text lens (issue 16):
``feature_labels`` (owned here), and exploration reads of ``feature_acts``, ``example_stats``, ``feature_contexts``
and ``feature_info``."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pyarrow as pa

from igds.store.base import feature_table, id_table

LABEL_COLUMNS = ["feature", "label", "note", "author", "updated"]

# the task an example is shown under: its first non-general membership by name, else general (as extraction)
_TASK_OF = ("task_of AS (SELECT example_id, task FROM memberships WHERE example_id IN (SELECT example_id FROM picked) "
            "QUALIFY row_number() OVER (PARTITION BY example_id ORDER BY task = 'general', task) = 1)")


def _like(text: str) -> str:
    """An ILIKE pattern that matches ``text`` literally anywhere (``%``, ``_`` and ``\\`` escaped)."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class LensQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- labels and notes --------------------------------------------------------------------
    def set_feature_label(self, sae_key: str, feature: int, label: str, note: str = "", author: str = "") -> None:
        """Store (replace) the label and note of one SAE feature; an empty label and note remove it."""
        label, note = (label or "").strip(), (note or "").strip()
        with self.transaction() as con:
            con.execute("DELETE FROM feature_labels WHERE sae_key = ? AND feature = ?", [sae_key, int(feature)])
            if label or note:
                con.execute("INSERT INTO feature_labels (sae_key, feature, label, note, author) VALUES (?, ?, ?, ?, ?)",
                            [sae_key, int(feature), label, note, author or None])

    def feature_labels(self, sae_key: str | None, features: Sequence[int] | None = None) -> pd.DataFrame:
        """Labels of an SAE's features (``LABEL_COLUMNS``), by feature; only ``features`` when given."""
        sql = "SELECT l.feature, l.label, l.note, l.author, l.updated FROM feature_labels l "
        with self.connect() as con:
            if features is not None:
                con.register("label_feats", feature_table(features))
                sql += "JOIN label_feats USING (feature) "
            df = con.execute(sql + "WHERE l.sae_key = ? ORDER BY l.feature", [sae_key]).fetch_df()
        df["feature"] = df["feature"].astype(int)
        return df

    def search_feature_labels(self, sae_key: str | None, query: str, limit: int = 50) -> pd.DataFrame:
        """Labelled features whose label or note contains ``query`` (case-insensitive), label matches first."""
        pat = _like(query)
        return self.query_df("SELECT feature, label, note, author, updated FROM feature_labels WHERE sae_key = ? "
                             "AND (label ILIKE ? ESCAPE '\\' OR note ILIKE ? ESCAPE '\\') "
                             "ORDER BY label NOT ILIKE ? ESCAPE '\\', feature LIMIT ?",
                             [sae_key, pat, pat, pat, int(limit)])

    # -- one feature over an extraction run --------------------------------------------------
    def run_totals(self, run_id: str) -> tuple[int, int]:
        """``(examples, kept tokens)`` of an extraction run: the denominators of a feature's density."""
        with self.connect() as con:
            row = con.execute("SELECT count(*), coalesce(sum(n_tokens), 0) FROM example_stats WHERE run_id = ?",
                              [run_id]).fetchall()[0]
        return int(row[0]), int(row[1])

    def feature_density(self, run_id: str, feature: int) -> pd.DataFrame:
        """Every example of a run a feature fires on: example_id, task (the example's task, see
        :meth:`run_top_examples`), n_active (tokens it fires on), n_tokens (kept tokens), density
        (n_active / n_tokens), max_act and mean_act (over the tokens it fires on)."""
        return self.query_df(
            "WITH picked AS (SELECT fa.example_id, fa.n_active, es.n_tokens, fa.max_act, fa.sum_act "
            "FROM feature_acts fa JOIN example_stats es ON es.run_id = fa.run_id AND es.example_id = fa.example_id "
            f"WHERE fa.run_id = ? AND fa.feature = ?), {_TASK_OF} "
            "SELECT p.example_id, coalesce(t.task, '?') AS task, p.n_active, p.n_tokens, "
            "p.n_active / greatest(p.n_tokens, 1) AS density, p.max_act, "
            "p.sum_act / greatest(p.n_active, 1) AS mean_act FROM picked p LEFT JOIN task_of t USING (example_id) "
            "ORDER BY p.max_act DESC, p.example_id",
            [run_id, int(feature)])

    def quantile_examples(self, run_id: str, feature: int, quantiles: Sequence[float] = (1.0, 0.9, 0.75, 0.5),
                          per: int = 2) -> pd.DataFrame:
        """Examples from several quantiles of a feature's per-example max activation over the run (the
        Neuronpedia / SAEDashboard "activation intervals").

        For a quantile ``q`` the ``per`` examples at and below position ``round((1 − q) · (n − 1))`` of the
        ``n`` examples it fires on, strongest first, are taken (``q = 1``: the top ones); an example is listed
        once, under the highest quantile that reaches it.

        Returns:
            quantile, position (0 = the strongest example), n (examples it fires on), example_id, max_act,
            mean_act (over the tokens it fires on), n_active, task, source, prompt, response.
        """
        qs = pa.table({"quantile": pa.array([float(q) for q in quantiles], pa.float64())})
        with self.connect() as con:
            con.register("act_quantiles", qs)
            df = con.execute(
                "WITH ranked AS (SELECT example_id, max_act, sum_act / greatest(n_active, 1) AS mean_act, n_active, "
                "row_number() OVER (ORDER BY max_act DESC, example_id) - 1 AS position, count(*) OVER () AS n "
                "FROM feature_acts WHERE run_id = ? AND feature = ?), "
                "hits AS (SELECT q.quantile, r.* FROM act_quantiles q JOIN ranked r "
                "ON r.position >= round((1 - q.quantile) * (r.n - 1)) AND r.position < round((1 - q.quantile) * "
                "(r.n - 1)) + ? QUALIFY row_number() OVER (PARTITION BY r.example_id ORDER BY q.quantile DESC) = 1), "
                f"picked AS (SELECT example_id FROM hits), {_TASK_OF} "
                "SELECT h.quantile, h.position, h.n, h.example_id, h.max_act, h.mean_act, h.n_active, "
                "coalesce(t.task, '?') AS task, r.source, r.prompt, r.response FROM hits h "
                "JOIN records r ON r.id = h.example_id LEFT JOIN task_of t USING (example_id) "
                "ORDER BY h.quantile DESC, h.position", [run_id, int(feature), int(per)]).fetch_df()
            con.unregister("act_quantiles")
        return df

    def example_feature_acts(self, run_id: str, example_id: str, features: Sequence[int] | None = None) -> pd.DataFrame:
        """The stored aggregates of one example in a run: feature, max_act, mean_act (over the tokens it fires on),
        n_active, by max_act descending; only ``features`` when given."""
        sql = ("SELECT fa.feature, fa.max_act, fa.sum_act / greatest(fa.n_active, 1) AS mean_act, fa.n_active "
               "FROM feature_acts fa ")
        with self.connect() as con:
            if features is not None:
                con.register("ex_feats", feature_table(features))
                sql += "JOIN ex_feats USING (feature) "
            return con.execute(sql + "WHERE fa.run_id = ? AND fa.example_id = ? ORDER BY fa.max_act DESC, fa.feature",
                               [run_id, example_id]).fetch_df()

    # -- selections --------------------------------------------------------------------------
    def fire_counts(self, run_id: str, example_ids: Sequence[str], features: Sequence[int]) -> pd.DataFrame:
        """For each of ``features``: on how many of ``example_ids`` it fires in a run (feature, n_fired; 0 where
        it fires on none), and how many of the examples the run covers (n_covered, the same on every row)."""
        with self.connect() as con:
            con.register("fire_ids", id_table(sorted(set(example_ids))))
            con.register("fire_feats", feature_table(features))
            df = con.execute(
                "SELECT f.feature, count(fa.example_id) AS n_fired, (SELECT count(*) FROM example_stats es "
                "JOIN fire_ids USING (example_id) WHERE es.run_id = ?) AS n_covered FROM fire_feats f "
                "LEFT JOIN (SELECT fa.feature, fa.example_id FROM feature_acts fa JOIN fire_ids USING (example_id) "
                "WHERE fa.run_id = ?) fa USING (feature) GROUP BY f.feature ORDER BY f.feature",
                [run_id, run_id]).fetch_df()
        df["feature"] = df["feature"].astype(int)
        return df

    # -- search ------------------------------------------------------------------------------
    def search_logit_lens(self, sae_key: str | None, token: str, limit: int = 200) -> pd.DataFrame:
        """Features whose stored logit lens promotes a token containing ``token`` (case-insensitive):
        feature, top_tokens, bottom_tokens (JSON lists); the caller ranks them."""
        return self.query_df("SELECT feature, top_tokens, bottom_tokens FROM feature_info WHERE sae_key = ? "
                             "AND top_tokens ILIKE ? ESCAPE '\\' ORDER BY feature LIMIT ?",
                             [sae_key, _like(token), int(limit)])

    def search_contexts(self, run_id: str, text: str, limit: int = 50) -> pd.DataFrame:
        """Features whose cached top-activating contexts (any k and window) contain ``text`` (case-insensitive):
        feature, n_max (contexts whose max token contains it), n_window (contexts whose window does), max_act,
        example (one matching context's example id); features matching on the max token first."""
        pat = _like(text)
        return self.query_df(
            "SELECT feature, count(DISTINCT example_id) FILTER (WHERE max_token ILIKE ? ESCAPE '\\') AS n_max, "
            "count(DISTINCT example_id) AS n_window, max(max_act) AS max_act, "
            "arg_max(example_id, max_act) AS example FROM feature_contexts WHERE run_id = ? "
            "AND (max_token ILIKE ? ESCAPE '\\' OR array_to_string(tokens, '') ILIKE ? ESCAPE '\\') "
            "GROUP BY feature ORDER BY n_max DESC, n_window DESC, max_act DESC, feature LIMIT ?",
            [pat, run_id, pat, pat, int(limit)])
