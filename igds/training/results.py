"""Store-level records of fine-tunes, evaluations, amplification and correlations, plus dashboard readers.

Writers take plain dicts/results from :mod:`igds.training.finetune` and :mod:`igds.training.evaluate`; bulk rows go
through Arrow, every query is parameterized. An adapter's evaluation is paired with the newest
``run_id='base'`` evaluation of the same task, split and base ``model_key``.
"""

from __future__ import annotations

import hashlib
import json
import math

import pandas as pd
import pyarrow as pa

from igds.store import ActivationStore
from igds.training.correlate import correlate

BASE_RUN = "base"
CORRELATION_PAIRS = (("amplification", "metric_gain"), ("amplification", "nll_gain"))


def _json(obj) -> str:
    # NaN is not valid JSON for most readers: store null instead.
    def clean(v):
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), sort_keys=True)


def _num(v) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def make_eval_id(run_id: str, task: str, split: str, model_key: str | None, config: dict | None = None) -> str:
    """Content id of an evaluation: the same model, data and settings give the same id (re-record replaces)."""
    parts = [run_id, task, split, model_key or "", json.dumps(config or {}, sort_keys=True)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def record_finetune(store: ActivationStore, run_id: str, task: str, result, config: dict,
                    selection_id: str | None = None, model_key: str | None = None,
                    status: str | None = None) -> None:
    """Insert or replace one fine-tune run.

    Args:
        store: the activation store.
        run_id: id of the run (its folder is ``store.run_dir(run_id)``).
        task: task trained for.
        result: a ``FinetuneResult`` or its ``to_dict()`` (``n_dropped``: examples left out for length;
            stored as NULL when absent).
        config: the ``FinetuneConfig`` as a dict.
        selection_id: the stored selection trained on (lineage).
        model_key: key of the base model.
        status: override the result's status (e.g. ``failed``).
    """
    r = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    with store.connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO finetunes (run_id, selection_id, task, config, model_key, adapter_path, device, "
            "precision, seed, n_train, global_step, train_seconds, final_loss, status, n_dropped) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [run_id, selection_id, task, json.dumps(config, sort_keys=True), model_key, r.get("adapter_dir"),
             r.get("device"), r.get("precision"), r.get("seed"), r.get("n_train"), r.get("global_step"),
             _num(r.get("train_seconds")), _num(r.get("final_loss")), status or r.get("status", "done"),
             r.get("n_dropped")],
        )


def record_eval(store: ActivationStore, run_id: str, result: dict, split: str = "test",
                model_key: str | None = None, config: dict | None = None, eval_id: str | None = None) -> str:
    """Store an :func:`igds.training.evaluate.evaluate_model` result and its per-example outputs.

    Args:
        store: the activation store.
        run_id: the fine-tune run evaluated, or ``"base"``.
        result: the evaluation dict.
        split: data split evaluated.
        model_key: key of the base model (pairs adapter and base evaluations).
        config: the ``EvalConfig`` as a dict.
        eval_id: explicit id; default :func:`make_eval_id`.

    Returns:
        The eval id (an existing evaluation with the same id is replaced).
    """
    eval_id = eval_id or make_eval_id(run_id, result["task"], split, model_key, config)
    n = len(result["example_ids"])
    nll = result.get("nll_per_example") or [math.nan] * n
    outputs = pa.table({
        "eval_id": pa.array([eval_id] * n, pa.string()),
        "example_id": pa.array(result["example_ids"], pa.string()),
        "prediction": pa.array(result.get("raw_outputs", result["predictions"]), pa.string()),
        "reference": pa.array(result["references"], pa.string()),
        "score": pa.array(result["per_example"], pa.float64()),
        "nll": pa.array([_num(v) for v in nll], pa.float64()),
    })
    store.replace_eval(eval_id, run_id=run_id, model_key=model_key, task=result["task"], split=split,
                       metric=result["metric"], score=_num(result["score"]), nll=_num(result.get("nll")),
                       n=result["n"], slice_scores=_json(result.get("slices", {})),
                       config=json.dumps(config or {}, sort_keys=True), seconds=_num(result.get("seconds")),
                       outputs=outputs)
    return eval_id


def record_amplification(store: ActivationStore, eval_id: str, run_id: str, task: str, a_model: dict,
                         a_base: dict, amp: dict, control: dict | None = None) -> None:
    """Store the feature amplification of an evaluated model.

    Args:
        store: the activation store.
        eval_id: the evaluation of the tuned model.
        run_id: the fine-tune run.
        task: task.
        a_model: :func:`igds.training.evaluate.feature_activation` of the tuned model.
        a_base: the same for the base model.
        amp: :func:`igds.training.evaluate.amplification` of the two.
        control: ``{"features": [...], "amplification": float}`` of a density-matched control set, or None.
    """
    control = control or {}
    with store.connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO amplification (eval_id, run_id, task, features, a_model, a_base, amplification, "
            "per_feature, control_features, control_amplification) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [eval_id, run_id, task, _json(list(a_model["features"])), _num(a_model["A"]), _num(a_base["A"]),
             _num(amp["amplification"]), _json(amp["per_feature"]),
             _json(control["features"]) if control else None, _num(control.get("amplification"))],
        )


_POINTS_SQL = """
WITH base AS (
    SELECT task, split, model_key, config, score AS base_score, nll AS base_nll,
           row_number() OVER (PARTITION BY task, split, model_key, config ORDER BY created DESC, eval_id) AS rk
    FROM evals WHERE run_id = ?
)
SELECT e.eval_id, e.run_id, f.selection_id, s.name AS selection, s.method, s.pool_setting,
       json_extract(s.lineage, '$.selection.ratio')::DOUBLE AS ratio,
       json_extract(s.lineage, '$.selection.seed')::INTEGER AS seed, f.seed AS train_seed,
       f.n_train, f.status, e.metric, e.score, e.nll,
       b.base_score, b.base_nll,
       e.score - b.base_score AS metric_gain,
       b.base_nll - e.nll AS nll_gain,          -- positive: the reference got more likely
       a.amplification, e.created
FROM evals e
LEFT JOIN base b ON b.task = e.task AND b.split = e.split
     AND b.model_key IS NOT DISTINCT FROM e.model_key AND b.config IS NOT DISTINCT FROM e.config AND b.rk = 1
LEFT JOIN finetunes f ON f.run_id = e.run_id
LEFT JOIN amplification a ON a.eval_id = e.eval_id
LEFT JOIN selections s ON s.selection_id = f.selection_id
WHERE e.task = ? AND e.split = ? AND e.run_id <> ?
ORDER BY e.created, e.eval_id
"""


def runs_table(store: ActivationStore, task: str, split: str = "test") -> pd.DataFrame:
    """Every evaluated fine-tune run of a task with its gains over the base model (its evaluation with the same
    settings: items, lengths, decoding) and amplification.

    Returns:
        Columns eval_id, run_id, selection_id, selection (name), method, pool_setting, ratio, seed,
        train_seed, n_train, status, metric, score, nll, base_score, base_nll, metric_gain,
        nll_gain (base NLL − run NLL), amplification, created.
    """
    return store.query_df(_POINTS_SQL, [BASE_RUN, task, split, BASE_RUN])


def finetune_runs(store: ActivationStore, selection_id: str) -> pd.DataFrame:
    """The fine-tunes of one selection, newest first, with what their length filter left out.

    Args:
        store: the activation store.
        selection_id: the selection trained on.

    Returns:
        Columns run_id, status, n_train, n_dropped (NaN for runs recorded before it was counted),
        n_selected (``n_train + n_dropped``), max_length, created, ``dropped`` (the line to show, see
        :func:`igds.training.batches.dropped_note`) and ``warn`` (more than 1% of the selection dropped).
    """
    from igds.training.batches import dropped_note

    df = store.query_df("SELECT run_id, status, n_train, n_dropped, config, created FROM finetunes "
                        "WHERE selection_id = ? ORDER BY created DESC, run_id", [selection_id])
    df["max_length"] = [json.loads(c or "{}").get("max_length") for c in df.config]
    df["n_selected"] = df.n_train + df.n_dropped
    notes = [dropped_note(None if pd.isna(d) else int(d), None if pd.isna(n) else int(n), m)
             for d, n, m in zip(df.n_dropped, df.n_selected, df.max_length, strict=True)]
    df["dropped"] = [t for t, _ in notes]
    df["warn"] = [w for _, w in notes]
    return df.drop(columns=["config"])[["run_id", "status", "n_train", "n_dropped", "n_selected", "max_length",
                                        "created", "dropped", "warn"]]


def base_eval(store: ActivationStore, task: str, split: str = "test", model_key: str | None = None) -> dict | None:
    """The newest base-model evaluation of a task (optionally for one model key), or None."""
    df = store.query_df(
        "SELECT * FROM evals WHERE run_id = ? AND task = ? AND split = ? AND (? IS NULL OR model_key = ?) "
        "ORDER BY created DESC, eval_id LIMIT 1", [BASE_RUN, task, split, model_key, model_key])
    if df.empty:
        return None
    row = df.iloc[0].to_dict()
    row["slice_scores"] = json.loads(row["slice_scores"] or "{}")
    return row


def eval_outputs(store: ActivationStore, eval_id: str) -> pd.DataFrame:
    """Per-example outputs of one evaluation (example_id, prediction, reference, score, nll)."""
    return store.eval_outputs(eval_id)


def compute_correlations(store: ActivationStore, task: str, split: str = "test", n_boot: int = 2000,
                         seed: int = 0) -> pd.DataFrame:
    """Correlate amplification with metric gain and NLL gain across a task's evaluated runs; store them.

    Each evaluated fine-tune run with an amplification and a base evaluation is one point.

    Args:
        store: the activation store.
        task: task.
        split: split the evaluations ran on.
        n_boot: bootstrap resamples.
        seed: bootstrap seed.

    Returns:
        One row per ``(x_name, y_name)`` with n, pearson(+CI), spearman(+CI); also written to
        the ``correlations`` table (replacing earlier rows of the task).
    """
    points = runs_table(store, task, split)
    rows = []
    for x_name, y_name in CORRELATION_PAIRS:
        x = points[x_name].astype(float).to_numpy() if not points.empty else []
        y = points[y_name].astype(float).to_numpy() if not points.empty else []
        rows.append({"task": task, "x_name": x_name, "y_name": y_name, **correlate(x, y, n_boot=n_boot, seed=seed)})
    df = pd.DataFrame(rows)
    cols = ["task", "x_name", "y_name", "n", "pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo",
            "spearman_hi"]
    table = pa.Table.from_pandas(df[cols], preserve_index=False)
    with store.transaction() as con:
        con.execute("DELETE FROM correlations WHERE task = ?", [task])
        con.register("new_correlations", table)
        con.execute(f"INSERT INTO correlations ({', '.join(cols)}) SELECT {', '.join(cols)} FROM new_correlations")
        con.unregister("new_correlations")
    return df


def correlations_table(store: ActivationStore, task: str) -> pd.DataFrame:
    """Stored correlations of a task (as written by :func:`compute_correlations`)."""
    return store.query_df("SELECT * FROM correlations WHERE task = ? ORDER BY x_name, y_name", [task])
