"""The reproduction grid's tables: ``experiments``, ``experiment_cells``, ``experiment_results``,
``experiment_correlations``; plus the reads of ``finetunes``, ``evals`` and the selection tables that the
grid's time estimate, resume check and report need."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa


class ExperimentQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- experiments -------------------------------------------------------------------------
    def save_experiment(self, experiment_id: str, preset: str, config_json: str, command: str,
                        versions: dict, provenance_json: str | None = None) -> None:
        """Create or refresh an experiment row (its ``updated`` time becomes now)."""
        with self.connect() as con:
            con.execute("INSERT OR REPLACE INTO experiments (experiment_id, preset, config, command, versions, "
                        "provenance, updated) VALUES (?, ?, ?, ?, ?, ?, current_timestamp)",
                        [experiment_id, preset, config_json, command, json.dumps(versions, sort_keys=True),
                         provenance_json])

    def experiment_row(self, experiment_id: str) -> dict | None:
        """One experiment: experiment_id, preset, config (JSON string), command, versions (JSON string),
        created, updated; None when unknown."""
        df = self.query_df("SELECT * FROM experiments WHERE experiment_id = ?", [experiment_id])
        return None if df.empty else df.iloc[0].to_dict()

    def list_experiments(self) -> pd.DataFrame:
        """Stored experiments, newest first: experiment_id, preset, command, updated, cells_done."""
        return self.query_df(
            "SELECT x.experiment_id, x.preset, x.command, x.updated, count(c.task) FILTER (WHERE c.status = 'done') "
            "AS cells_done FROM experiments x LEFT JOIN experiment_cells c USING (experiment_id) "
            "GROUP BY ALL ORDER BY x.updated DESC")

    # -- cells -------------------------------------------------------------------------------
    def record_experiment_cell(self, experiment_id: str, key: tuple, *, selection_id: str | None = None,
                               run_id: str | None = None, eval_id: str | None = None, status: str | None = None,
                               seconds: float | None = None, note: str | None = None) -> None:
        """Write (or overwrite) one cell row.

        Args:
            key: ``(task, pool_setting, method, ratio, seed)``.
        """
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO experiment_cells (experiment_id, task, pool_setting, method, ratio, seed, "
                "selection_id, run_id, eval_id, status, seconds, note, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp)",
                [experiment_id, *key, selection_id, run_id, eval_id, status, seconds, note])

    def experiment_cell_rows(self, experiment_id: str) -> pd.DataFrame:
        """An experiment's cells joined with their evaluation (metric, score, nll, n_eval), fine-tune
        (n_train, train_seconds) and amplification, in key order."""
        return self.query_df(
            "SELECT c.*, e.metric, e.score, e.nll, e.n AS n_eval, f.n_train, f.n_dropped, f.train_seconds, "
            "a.amplification, a.control_amplification, s.n_selected "
            "FROM experiment_cells c LEFT JOIN evals e ON e.eval_id = c.eval_id "
            "LEFT JOIN selections s ON s.selection_id = c.selection_id "
            "LEFT JOIN finetunes f ON f.run_id = c.run_id LEFT JOIN amplification a ON a.eval_id = c.eval_id "
            "WHERE c.experiment_id = ? ORDER BY c.task, c.pool_setting, c.method, c.ratio, c.seed", [experiment_id])

    def experiment_cell_status(self, experiment_id: str) -> dict[tuple, str]:
        """Recorded status (running, done, empty) of each cell, by its key."""
        rows = self.query_df("SELECT task, pool_setting, method, ratio, seed, status FROM experiment_cells "
                             "WHERE experiment_id = ?", [experiment_id])
        return {tuple(r[:5]): r[5] for r in rows.itertuples(index=False, name=None)}

    def empty_experiment_cells(self, experiment_id: str, task: str) -> pd.DataFrame:
        """A task's cells recorded as ``empty``: pool_setting, method, ratio, seed, note."""
        return self.query_df("SELECT pool_setting, method, ratio, seed, note FROM experiment_cells "
                             "WHERE experiment_id = ? AND task = ? AND status = 'empty' "
                             "ORDER BY pool_setting DESC, ratio, seed", [experiment_id, task])

    def experiment_last_update(self, experiment_id: str):
        """Time the last cell was recorded (None before the first)."""
        return self.scalar("SELECT max(updated) FROM experiment_cells WHERE experiment_id = ?", [experiment_id])

    # -- summaries ---------------------------------------------------------------------------
    def replace_experiment_summary(self, experiment_id: str, results: pd.DataFrame,
                                   correlations: pd.DataFrame) -> None:
        """Replace an experiment's summarized groups and correlations in one transaction (columns by name)."""
        with self.transaction() as con:
            con.execute("DELETE FROM experiment_results WHERE experiment_id = ?", [experiment_id])
            con.execute("DELETE FROM experiment_correlations WHERE experiment_id = ?", [experiment_id])
            con.register("new_results", pa.Table.from_pandas(results, preserve_index=False))
            con.register("new_correlations", pa.Table.from_pandas(correlations, preserve_index=False))
            con.execute("INSERT INTO experiment_results BY NAME SELECT * FROM new_results")
            con.execute("INSERT INTO experiment_correlations BY NAME SELECT * FROM new_correlations")
            con.unregister("new_results")
            con.unregister("new_correlations")

    def experiment_results(self, experiment_id: str) -> pd.DataFrame:
        """An experiment's summarized groups, unordered."""
        return self.query_df("SELECT * FROM experiment_results WHERE experiment_id = ?", [experiment_id])

    def experiment_correlations(self, experiment_id: str) -> pd.DataFrame:
        """An experiment's amplification–gain correlations, by task and y_name."""
        return self.query_df("SELECT * FROM experiment_correlations WHERE experiment_id = ? ORDER BY task, y_name",
                             [experiment_id])

    def experiment_selection_diagnostics(self, experiment_id: str) -> pd.DataFrame:
        """Per selection of the experiment's finished cells: n_selected, task_share (share of members from
        the cell's task: one count per member, however many tasks share its record) and mean_tokens (mean tokens of
        its members: as a results-of-record file brought them, else from the extraction)."""
        return self.query_df(
            "SELECT c.task, c.pool_setting, c.method, c.ratio, any_value(s.n_selected) AS n_selected, "
            "avg((EXISTS (SELECT 1 FROM memberships t WHERE t.example_id = m.example_id AND t.task = c.task))::INT) "
            "AS task_share, avg(coalesce(m.n_tokens, es.n_tokens)) AS mean_tokens "
            "FROM (SELECT DISTINCT task, pool_setting, method, ratio, selection_id FROM experiment_cells "
            "      WHERE experiment_id = ? AND status = 'done') c "
            "JOIN selections s USING (selection_id) JOIN selection_members m USING (selection_id) "
            "LEFT JOIN (SELECT example_id, any_value(n_tokens) AS n_tokens FROM example_stats GROUP BY example_id) es "
            "ON es.example_id = m.example_id "
            "GROUP BY c.task, c.pool_setting, c.method, c.ratio, c.selection_id "
            "ORDER BY c.task, c.pool_setting, c.method, c.ratio, c.selection_id", [experiment_id])

    # -- evaluations and fine-tunes the grid reads -------------------------------------------
    def has_eval(self, eval_id: str) -> bool:
        """Whether an evaluation with this id is stored."""
        return bool(self.scalar("SELECT count(*) FROM evals WHERE eval_id = ?", [eval_id]))

    def eval_model_key(self, eval_id: str) -> str | None:
        """The model key an evaluation ran on (None when unknown)."""
        return self.scalar("SELECT model_key FROM evals WHERE eval_id = ?", [eval_id])

    def finetune_seconds_per_pair(self, profile: str) -> dict[str, float]:
        """Median training seconds per pair by task over the finished fine-tunes of a profile
        (``cpu`` | ``default``); tasks without one are absent."""
        df = self.query_df("SELECT task, median(train_seconds / n_train) AS s FROM finetunes WHERE status = 'done' "
                           "AND n_train > 0 AND json_extract_string(config, '$.profile') = ? GROUP BY task", [profile])
        return dict(zip(df.task, df.s.astype(float), strict=True))

    def eval_seconds_per_item(self, exclude_run_id: str) -> dict[str, float]:
        """Median evaluation seconds per test item by task, over every run but ``exclude_run_id``."""
        df = self.query_df("SELECT task, median(seconds / n) AS s FROM evals WHERE run_id <> ? AND n > 0 "
                           "AND seconds IS NOT NULL GROUP BY task", [exclude_run_id])
        return dict(zip(df.task, df.s.astype(float), strict=True))
