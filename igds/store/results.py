"""Fine-tunes, evaluations and their per-example outputs, amplification, correlations and the
base-model NLL cache: ``finetunes``, ``evals``, ``eval_outputs``, ``amplification``, ``correlations``,
``example_nll``."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from igds.constants import NLL_PROCEDURE

NLL_COLUMNS = ["model_key", "example_id", "nll_cond", "nll_uncond"]


def nll_cache_key(model_key: str) -> str:
    """The key NLL rows of a model are cached under: the model key and :data:`NLL_PROCEDURE`, so rows
    an earlier procedure computed (a bare start token before the prompt-free response) are never read."""
    suffix = f"|{NLL_PROCEDURE}"
    return model_key if model_key.endswith(suffix) else model_key + suffix


class ResultQueries:
    """Queries on these tables (mixed into :class:`igds.store.ActivationStore`)."""

    # -- evaluations -------------------------------------------------------------------------
    def replace_eval(self, eval_id: str, *, run_id: str, model_key: str | None, task: str, split: str,
                     metric: str | None, score: float | None, nll: float | None, n: int, slice_scores: str,
                     config: str, seconds: float | None, outputs: pa.Table) -> None:
        """Store one evaluation and its per-example outputs in one transaction, replacing an earlier
        evaluation with the same id.

        Args:
            eval_id: the evaluation's content id.
            slice_scores, config: JSON strings.
            outputs: ``eval_outputs`` rows (eval_id, example_id, prediction, reference, score, nll).
        """
        with self.transaction() as con:
            con.execute("DELETE FROM eval_outputs WHERE eval_id = ?", [eval_id])
            con.execute("DELETE FROM evals WHERE eval_id = ?", [eval_id])
            con.execute(
                "INSERT INTO evals (eval_id, run_id, model_key, task, split, metric, score, nll, n, slice_scores, "
                "config, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [eval_id, run_id, model_key, task, split, metric, score, nll, n, slice_scores, config, seconds],
            )
            con.register("new_eval_outputs", outputs)
            con.execute("INSERT INTO eval_outputs SELECT * FROM new_eval_outputs")
            con.unregister("new_eval_outputs")

    def eval_outputs(self, eval_id: str) -> pd.DataFrame:
        """Per-example outputs of one evaluation (example_id, prediction, reference, score, nll), by example id."""
        return self.query_df("SELECT example_id, prediction, reference, score, nll FROM eval_outputs "
                             "WHERE eval_id = ? ORDER BY example_id", [eval_id])

    # -- base-model NLL cache ----------------------------------------------------------------
    def example_nll(self, model_key: str) -> pd.DataFrame:
        """Cached base-model response NLL of a model: example_id, nll_cond, nll_uncond (store order).

        Only rows of the current procedure are read (see :func:`nll_cache_key`)."""
        return self.query_df("SELECT example_id, nll_cond, nll_uncond FROM example_nll WHERE model_key = ?",
                             [nll_cache_key(model_key)])

    def add_example_nll(self, rows: pd.DataFrame) -> None:
        """Append rows to the NLL cache (columns ``NLL_COLUMNS``; the examples must not be cached yet).

        The rows' ``model_key`` is stored as :func:`nll_cache_key` of it."""
        rows = rows.assign(model_key=rows["model_key"].map(nll_cache_key))
        with self.transaction() as con:
            con.register("nll_rows", pa.Table.from_pandas(rows[NLL_COLUMNS], preserve_index=False))
            con.execute("INSERT INTO example_nll SELECT * FROM nll_rows")
            con.unregister("nll_rows")
