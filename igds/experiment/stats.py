"""The grid's statistics: per cell group, means with 95% hierarchical bootstrap intervals (seeds and
test items resampled) and the paired difference to Random at the same pool; per task, the correlation
between feature amplification and the gain over the base model. Written to the store and read back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from igds.experiment.cells import base_eval_id, experiment_cells, experiment_config
from igds.experiment.grid import METHOD_ORDER, ExperimentConfig
from igds.store import ActivationStore
from igds.training.correlate import correlate

RESULT_COLUMNS = ["experiment_id", "task", "pool_setting", "method", "ratio", "n_runs", "n_train", "n_eval", "metric",
                  "score", "score_lo", "score_hi", "d_score", "d_score_lo", "d_score_hi", "nll", "nll_lo", "nll_hi",
                  "d_nll", "d_nll_lo", "d_nll_hi", "amplification", "base_score", "base_nll"]
CORRELATION_COLUMNS = ["experiment_id", "task", "y_name", "n", "pearson", "pearson_lo", "pearson_hi", "spearman",
                       "spearman_lo", "spearman_hi"]


def boot_means(mat: np.ndarray, items: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of a seeds × items matrix: seeds resampled per draw, items by ``items`` (B × n).

    Sharing ``items`` between two matrices makes their difference paired over test items.
    """
    per_seed = np.nanmean(mat[:, items], axis=2)                       # seeds × B
    pick = rng.integers(0, mat.shape[0], size=(items.shape[0], mat.shape[0]))
    return np.take_along_axis(per_seed.T, pick, axis=1).mean(axis=1)  # B


def _ci(samples: np.ndarray) -> tuple[float, float]:
    lo, hi = np.nanpercentile(samples, [2.5, 97.5])
    return float(lo), float(hi)


def _matrix(store: ActivationStore, eval_ids: list[str], order: list[str], column: str) -> np.ndarray:
    """Per-item values of ``column``: one row per evaluation, items in ``order`` (NaN where missing)."""
    rows = []
    for eid in eval_ids:
        out = store.eval_outputs(eid).set_index("example_id")[column]
        rows.append(out.reindex(order).to_numpy(dtype=float))
    return np.vstack(rows)


def _stored_base_eval_id(store: ActivationStore, cfg: ExperimentConfig, task: str,
                         cells: pd.DataFrame) -> str | None:
    """The base evaluation paired with a task's cells: same model, items and settings."""
    eid = base_eval_id(cfg, task, store.eval_model_key(cells.eval_id.iloc[0]))
    return eid if store.has_eval(eid) else None


def summarize(store: ActivationStore, exp_id: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (task, pool, method, ratio): means with 95% CIs, differences to Random, amplification;
    per task: the amplification–gain correlations. Both are written to the store and returned (groups)."""
    cfg = experiment_config(store, exp_id)
    cells = experiment_cells(store, exp_id)
    cells = cells[cells.status == "done"]
    groups, corr = [], []
    for task, tcells in cells.groupby("task", sort=False):
        base_id = _stored_base_eval_id(store, cfg, task, tcells)
        base = store.eval_outputs(base_id).set_index("example_id") if base_id else None
        if base is None or base.empty:
            continue
        order = list(base.index)
        rng = np.random.default_rng(seed)
        items = rng.integers(0, len(order), size=(n_boot, len(order)))
        mats = {}
        for key, g in tcells.groupby(["pool_setting", "method", "ratio"], sort=False):
            ids = list(g.eval_id)
            mats[key] = {c: _matrix(store, ids, order, c) for c in ("score", "nll")}
        base_mean = {c: float(np.nanmean(base[c].to_numpy(dtype=float))) for c in ("score", "nll")}
        for (pool, method, ratio), m in mats.items():
            g = tcells[(tcells.pool_setting == pool) & (tcells.method == method) & (tcells.ratio == ratio)]
            row = {"experiment_id": exp_id, "task": task, "pool_setting": pool, "method": method, "ratio": ratio,
                   "n_runs": len(g), "n_train": float(g.n_train.mean()), "n_eval": len(order),
                   "metric": g.metric.iloc[0], "amplification": float(g.amplification.mean()),
                   "base_score": base_mean["score"], "base_nll": base_mean["nll"]}
            ref = mats.get((pool, "random", cfg.ratio))
            for c in ("score", "nll"):
                bm = boot_means(m[c], items, np.random.default_rng(seed + 1))
                row[c] = float(np.nanmean(m[c]))
                row[f"{c}_lo"], row[f"{c}_hi"] = _ci(bm)
                if ref is not None and not (method == "random" and ratio == cfg.ratio):
                    diff = bm - boot_means(ref[c], items, np.random.default_rng(seed + 2))
                    row[f"d_{c}"] = row[c] - float(np.nanmean(ref[c]))
                    row[f"d_{c}_lo"], row[f"d_{c}_hi"] = _ci(diff)
            groups.append(row)
        pts = with_gains(tcells, base_mean["score"], base_mean["nll"])
        # all cells mix training-set sizes (ρ = 0.25 … 1, and mixed pools are twice as large), which move
        # both axes; one pool at the main ratio asks whether amplification tracks the gain at a fixed
        # number of training examples
        subsets = [("", pts)] + [(f" at ρ={cfg.ratio:g}, {pool}", pts[(pts.ratio == cfg.ratio) &
                                                                       (pts.pool_setting == pool)])
                                 for pool in cfg.pool_settings]
        for subset, p in subsets:
            for y in ("metric_gain", "nll_gain"):
                corr.append({"experiment_id": exp_id, "task": task, "y_name": y + subset,
                             **correlate(p.amplification.astype(float), p[y].astype(float), n_boot=n_boot,
                                         seed=seed)})
    out = pd.DataFrame(groups, columns=RESULT_COLUMNS)
    store.replace_experiment_summary(exp_id, out, pd.DataFrame(corr, columns=CORRELATION_COLUMNS))
    return out


def with_gains(cells: pd.DataFrame, base_score: float, base_nll: float) -> pd.DataFrame:
    """Cells with their gain over the base model: metric gain, and NLL gain (positive: NLL went down)."""
    return cells.assign(metric_gain=cells.score - base_score, nll_gain=base_nll - cells.nll)


def results_table(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Summarized groups of an experiment: per task, task-only before mixed, the main ratio's methods
    (IGDS, then the baselines in registry order, Full last) before the other IGDS ratios."""
    res = store.experiment_results(exp_id)
    main = experiment_config(store, exp_id).ratio
    res = res.assign(_o=res.method.map(METHOD_ORDER).fillna(len(METHOD_ORDER)),
                     _x=(res.ratio != main) & (res.method != "full"))
    return res.sort_values(["task", "pool_setting", "_x", "_o", "ratio"], ascending=[True, False, True, True, True]
                           ).drop(columns=["_o", "_x"]).reset_index(drop=True)


def correlation_rows(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """The amplification–gain correlations of an experiment, by task and gain."""
    return store.experiment_correlations(exp_id)


def experiment_points(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Finished cells with their gains over the task's base evaluation (one point per fine-tune)."""
    cells = experiment_cells(store, exp_id)
    base = results_table(store, exp_id).groupby("task")[["base_score", "base_nll"]].first()
    cells = cells[(cells.status == "done") & cells.task.isin(base.index)]
    return pd.concat([with_gains(g, *base.loc[t]) for t, g in cells.groupby("task")]) if len(cells) else cells
