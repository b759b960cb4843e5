"""The grid's statistics: per cell group, means with 95% hierarchical bootstrap intervals (seeds and
test items resampled) and the paired difference to Random at the same pool; per task, the correlation
between feature amplification and the gain over the base model. Written to the store and read back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from igds.experiment.cells import base_eval_id, experiment_cells, experiment_config
from igds.experiment.grid import ExperimentConfig, method_order
from igds.store import ActivationStore
from igds.training.correlate import correlate

RESULT_COLUMNS = ["experiment_id", "task", "pool_setting", "method", "ratio", "n_runs", "n_train", "n_eval", "metric",
                  "score", "score_lo", "score_hi", "d_score", "d_score_lo", "d_score_hi", "nll", "nll_lo", "nll_hi",
                  "d_nll", "d_nll_lo", "d_nll_hi", "amplification", "control_amplification", "n_dropped",
                  "n_selected", "base_score", "base_nll"]
CORRELATION_COLUMNS = ["experiment_id", "task", "y_name", "x_name", "subset", "partial", "n", "pearson", "pearson_lo",
                       "pearson_hi", "spearman", "spearman_lo", "spearman_hi"]
GAINS = ("metric_gain", "nll_gain")
AMPLIFICATIONS = ("amplification", "control_amplification")
MIN_GROUP_POINTS = 4  # a fixed-size correlation needs at least this many cells of that size


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
    """Per (task, pool, method, ratio): means with 95% CIs, the paired difference to Random **of the same
    size** (same pool and ratio; none where there is no such Random, e.g. Full), amplification and its
    control, dropped long examples; per task: the amplification–gain correlations. Both are written to
    the store and returned (groups)."""
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
                   "metric": g.metric.iloc[0], "amplification": _mean(g.amplification),
                   "control_amplification": _mean(g.control_amplification), "n_dropped": _mean(g.n_dropped),
                   "n_selected": _mean(g.n_selected), "base_score": base_mean["score"], "base_nll": base_mean["nll"]}
            ref = same_size_reference(mats, pool, method, ratio)
            for c in ("score", "nll"):
                bm = boot_means(m[c], items, np.random.default_rng(seed + 1))
                row[c] = float(np.nanmean(m[c]))
                row[f"{c}_lo"], row[f"{c}_hi"] = _ci(bm)
                if ref is not None:
                    diff = bm - boot_means(ref[c], items, np.random.default_rng(seed + 2))
                    row[f"d_{c}"] = row[c] - float(np.nanmean(ref[c]))
                    row[f"d_{c}_lo"], row[f"d_{c}_hi"] = _ci(diff)
            groups.append(row)
        corr += correlation_records(exp_id, task, with_gains(tcells, base_mean["score"], base_mean["nll"]),
                                    n_boot, seed)
    out = pd.DataFrame(groups, columns=RESULT_COLUMNS)
    store.replace_experiment_summary(exp_id, out, pd.DataFrame(corr, columns=CORRELATION_COLUMNS))
    return out


def _mean(values: pd.Series) -> float:
    v = pd.to_numeric(values, errors="coerce").astype(float)
    return float(v.mean()) if v.notna().any() else float("nan")


def same_size_reference(mats: dict, pool: str, method: str, ratio: float) -> dict | None:
    """The Random group a group's difference is taken against: Random in the same pool at the same ratio
    (the same number of training examples; at an equal token budget, ``random-tokens``: the same number of
    tokens); None for Random itself, for Full and wherever no Random of that size ran — a verdict is never drawn
    between different sizes."""
    if method in ("random", "full", "random-tokens"):
        return None
    return mats.get((pool, "random-tokens" if method == "igds-tokens" else "random", ratio))


def correlation_records(exp_id: str, task: str, pts: pd.DataFrame, n_boot: int, seed: int) -> list[dict]:
    """Amplification (and its control) against the gains: at each fixed training-set size (one pool and
    ratio with at least ``MIN_GROUP_POINTS`` cells), over all cells, and over all cells with log training
    size partialled out."""
    subsets = []
    for (pool, ratio), p in pts.groupby(["pool_setting", "ratio"], sort=True):
        if len(p) >= MIN_GROUP_POINTS:
            subsets.append((f"{pool} ρ={ratio:g}", p, None))
    subsets += [("all cells", pts, None), ("all cells", pts, "log n_train")]
    rows = []
    for subset, p, partial in subsets:
        cov = np.log(p.n_train.astype(float).clip(lower=1)) if partial else None
        for x in AMPLIFICATIONS:
            for y in GAINS:
                label = f"{y} ~ {x} | {subset}" + (f" | partial {partial}" if partial else "")
                rows.append({"experiment_id": exp_id, "task": task, "y_name": label, "x_name": x, "subset": subset,
                             "partial": partial, **correlate(p[x].astype(float), p[y].astype(float), n_boot=n_boot,
                                                             seed=seed, covariate=cov)})
    return rows


def with_gains(cells: pd.DataFrame, base_score: float, base_nll: float) -> pd.DataFrame:
    """Cells with their gain over the base model: metric gain, and NLL gain (positive: NLL went down)."""
    return cells.assign(metric_gain=cells.score - base_score, nll_gain=base_nll - cells.nll)


def results_table(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Summarized groups of an experiment: per task, task-only before mixed, the main ratio's methods
    (IGDS under each method preset, then the baselines in registry order, Full last) before other ratios."""
    res = store.experiment_results(exp_id)
    main = experiment_config(store, exp_id).ratio
    x = (res.ratio != main) & (res.method != "full")
    res = res.assign(_o=res.method.map(method_order), _x=x, _r=res.ratio.where(x, 0.0))
    return res.sort_values(["task", "pool_setting", "_x", "_r", "_o"], ascending=[True, False, True, False, True]
                           ).drop(columns=["_o", "_x", "_r"]).reset_index(drop=True)


def source_table(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Per task, group and test-item source (e.g. ``ding (de)``): the mean per-item metric and NLL over the
    group's runs, and the base model's; the test sample is stratified by source, so each source keeps its
    share of the test split."""
    from igds.data.corpus import source_label
    from igds.workflow.catalog import task_split

    cfg = experiment_config(store, exp_id)
    cells = experiment_cells(store, exp_id)
    cells = cells[cells.status == "done"]
    rows = []
    for task, tcells in cells.groupby("task", sort=True):
        base_id = _stored_base_eval_id(store, cfg, task, tcells)
        if base_id is None:
            continue
        label = {e.id: source_label(e) for e in task_split(store, task, "test")}
        groups = [("base", "base", 0.0, [base_id])] + [
            (pool, method, ratio, list(g.eval_id))
            for (pool, method, ratio), g in tcells.groupby(["pool_setting", "method", "ratio"], sort=False)]
        for pool, method, ratio, ids in groups:
            outs = pd.concat([store.eval_outputs(e) for e in ids])
            outs = outs.assign(source=outs.example_id.map(label))
            for src, o in outs.groupby("source", sort=True):
                rows.append({"task": task, "pool_setting": pool, "method": method, "ratio": ratio, "source": src,
                             "n_items": int(o.example_id.nunique()), "n_runs": len(ids),
                             "score": float(o.score.astype(float).mean()), "nll": float(o.nll.astype(float).mean())})
    return pd.DataFrame(rows, columns=["task", "pool_setting", "method", "ratio", "source", "n_items", "n_runs",
                                       "score", "nll"])


def correlation_rows(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """The amplification–gain correlations of an experiment, by task and gain."""
    return store.experiment_correlations(exp_id)


def experiment_points(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Finished cells with their gains over the task's base evaluation (one point per fine-tune)."""
    cells = experiment_cells(store, exp_id)
    base = results_table(store, exp_id).groupby("task")[["base_score", "base_nll"]].first()
    cells = cells[(cells.status == "done") & cells.task.isin(base.index)]
    return pd.concat([with_gains(g, *base.loc[t]) for t, g in cells.groupby("task")]) if len(cells) else cells
