"""Stage 5 — the reproduction: the paper's comparison in miniature, cell by cell, resumable.

A *cell* is one (task, pool setting, method, ratio, seed): select from the pool, LoRA fine-tune on the
selection, evaluate on the held-out test split. Every stage underneath is content-addressed
(selections, fine-tune runs, evaluations), so a rerun finds finished cells in the store and skips them,
and a smaller preset (``quick``) shares its cells with the larger one (``demo``).

The summary gives, per cell group, the mean test metric and reference NLL over seeds with a 95%
hierarchical bootstrap interval (seeds and test items resampled), the paired difference to Random at
the same pool, and per task the correlation between feature amplification and the gain.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from igds import settings
from igds.config import ConfigBase
from igds.data.corpus import POOL_SETTINGS
from igds.method.baselines import BASELINE_METHODS as ALL_BASELINES
from igds.progress import ProgressFn, null_progress, scaled
from igds.store import ActivationStore
from igds.training.correlate import correlate
from igds.training.evaluate import EvalConfig
from igds.training.finetune import FinetuneConfig
from igds.training.results import BASE_RUN, eval_outputs, make_eval_id

METHOD_ORDER = {"igds": 0, "random": 1, "loss": 2, "ifd": 3, "zip": 4, "full": 5}  # rows of the tables
BASELINE_METHODS = tuple(m for m in ALL_BASELINES if m != "full")  # Full is always run, at ρ = 1
PACKAGES = ("torch", "transformers", "peft", "sae-lens", "duckdb", "datasets", "streamlit")


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig(ConfigBase):
    """The grid of cells and the settings every cell shares.

    Args:
        preset: label of the preset the values came from.
        tasks: tasks to run, in order.
        pool_settings: ``task-only`` (the task's training set) and/or ``mixed`` (plus the general set).
        pool_limit: task examples in the pool (and general examples added in the mixed setting).
        ratio: the selection share of the main comparison (IGDS vs. the baselines).
        igds_ratios: extra IGDS shares, for the amplification–gain correlation.
        baselines: baselines run at ``ratio`` (Full is always run).
        seeds: fine-tune seeds of IGDS and Random at ``ratio`` (Random also reselects per seed);
            every other cell uses the first seed.
        n_eval: held-out test items per task (the first N of the test split).
        finetune_profile: ``cpu`` (r=16 on attention, 1 epoch) or ``default`` (the paper's, for GPUs).
        finetune_overrides: ``FinetuneConfig`` fields replacing the profile's (e.g. ``{"epochs": 2}``).
        eval_overrides: ``EvalConfig`` fields (besides ``n_examples``) for every evaluation.
    """

    preset: str = field(default="demo", metadata={"help": "preset label"})
    tasks: tuple[str, ...] = field(default=("summarization", "translation", "math"), metadata={"help": "tasks"})
    pool_settings: tuple[str, ...] = field(default=POOL_SETTINGS, metadata={"help": "task-only | mixed"})
    pool_limit: int = field(default=300, metadata={"help": "task examples per pool (and general ones in mixed)"})
    ratio: float = field(default=0.5, metadata={"help": "share of the main comparison"})
    igds_ratios: tuple[float, ...] = field(default=(0.25, 0.75), metadata={"help": "extra IGDS shares"})
    baselines: tuple[str, ...] = field(default=BASELINE_METHODS, metadata={"help": "baselines at the ratio"})
    seeds: tuple[int, ...] = field(default=(0, 1, 2), metadata={"help": "seeds of IGDS and Random at the ratio"})
    n_eval: dict[str, int] = field(default_factory=lambda: {"summarization": 100, "translation": 100, "math": 50},
                                   metadata={"help": "test items per task"})
    finetune_profile: str = field(default="cpu", metadata={"help": "cpu | default"})
    finetune_overrides: dict = field(default_factory=dict, metadata={"help": "FinetuneConfig fields to override"})
    eval_overrides: dict = field(default_factory=dict, metadata={"help": "EvalConfig fields to override"})

    def __post_init__(self):
        if not set(self.pool_settings) <= set(POOL_SETTINGS) or not self.pool_settings:
            raise ValueError(f"pool_settings must be a non-empty subset of {POOL_SETTINGS}")
        if not set(self.baselines) <= set(BASELINE_METHODS):
            raise ValueError(f"baselines must be a subset of {BASELINE_METHODS}")
        if not self.seeds or self.pool_limit < 0 or not 0 < self.ratio <= 1:
            raise ValueError("need at least one seed, pool_limit >= 0 and ratio in (0, 1]")
        if self.finetune_profile not in ("cpu", "default"):
            raise ValueError("finetune_profile must be cpu or default")

    def finetune(self, seed: int) -> FinetuneConfig:
        """The fine-tune config of a cell."""
        base = FinetuneConfig.cpu_profile() if self.finetune_profile == "cpu" else FinetuneConfig()
        return FinetuneConfig.from_dict({**base.to_dict(), **self.finetune_overrides, "seed": seed})

    def evaluation(self, task: str) -> EvalConfig:
        """The evaluation config of a task."""
        return EvalConfig.from_dict({**self.eval_overrides, "n_examples": int(self.n_eval.get(task, 100))})


PRESETS: dict[str, ExperimentConfig] = {
    # one task, one pool, one seed; its cells are the first cells of "demo", which reuses them
    "quick": ExperimentConfig(preset="quick", tasks=("summarization",), pool_settings=("task-only",), seeds=(0,)),
    "demo": ExperimentConfig(),
    "gpu": ExperimentConfig(preset="gpu", pool_limit=1200, finetune_profile="default",
                            n_eval={"summarization": 400, "translation": 400, "math": 400}),
}


def preset(name: str, **overrides) -> ExperimentConfig:
    """A named preset with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


@dataclass(frozen=True)
class Cell:
    """One fine-tune of the grid."""

    task: str
    pool_setting: str
    method: str
    ratio: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.task}/{self.pool_setting}/{self.method}@{self.ratio:g}/seed {self.seed}"

    @property
    def key(self) -> tuple:
        """The cell's primary key in ``experiment_cells`` (after the experiment id)."""
        return (self.task, self.pool_setting, self.method, self.ratio, self.seed)


def plan_cells(cfg: ExperimentConfig) -> list[Cell]:
    """Every cell, in run order: per task and pool, one seed of each method first, then the other seeds."""
    cells = []
    for task in cfg.tasks:
        for pool in cfg.pool_settings:
            s0 = cfg.seeds[0]
            cells += [Cell(task, pool, "igds", cfg.ratio, s0), Cell(task, pool, "random", cfg.ratio, s0)]
            cells += [Cell(task, pool, m, cfg.ratio, s0) for m in cfg.baselines if m != "random"]
            cells.append(Cell(task, pool, "full", 1.0, s0))
            cells += [Cell(task, pool, "igds", r, s0) for r in cfg.igds_ratios if r != cfg.ratio]
            for s in cfg.seeds[1:]:
                cells += [Cell(task, pool, "igds", cfg.ratio, s)]
                if "random" in cfg.baselines:
                    cells.append(Cell(task, pool, "random", cfg.ratio, s))
    return cells


def experiment_id(cfg: ExperimentConfig) -> str:
    return f"{cfg.preset}-{cfg.stage_key()[:8]}"


# ----------------------------------------------------------------------------------------------- timing

# measured on the 2-core reference machine (CPU profile, bf16 autocast); replaced by the store's own
# figures as soon as it has finished runs
DEFAULT_SECONDS_PER_PAIR = 0.33
DEFAULT_SECONDS_PER_EVAL_ITEM = {"summarization": 0.45, "translation": 0.6, "math": 1.6}
CELL_OVERHEAD_SECONDS = 15.0
INTERVENTION_SECONDS = 460.0


def pool_size(cfg: ExperimentConfig, pool_setting: str) -> int:
    """Examples in a cell's pool (the general set is larger than any demo limit)."""
    n = cfg.pool_limit or 1200
    return 2 * n if pool_setting == "mixed" else n


def n_train(cfg: ExperimentConfig, cell: Cell) -> int:
    return math.ceil(cell.ratio * pool_size(cfg, cell.pool_setting))


def measured_rates(store: ActivationStore) -> tuple[float, dict[str, float]]:
    """Seconds per training pair and per evaluated test item, from the store's finished runs."""
    ft = store.query_df("SELECT train_seconds / n_train AS s FROM finetunes WHERE status = 'done' AND n_train > 0 "
                        "AND json_extract_string(config, '$.profile') = 'cpu'")
    per_pair = float(ft.s.median()) if len(ft) else DEFAULT_SECONDS_PER_PAIR
    ev = store.query_df("SELECT task, median(seconds / n) AS s FROM evals WHERE run_id <> ? AND n > 0 "
                        "AND seconds IS NOT NULL GROUP BY task", [BASE_RUN])
    per_item = {**DEFAULT_SECONDS_PER_EVAL_ITEM, **dict(zip(ev.task, ev.s.astype(float), strict=True))}
    return per_pair, per_item


def estimate_seconds(cfg: ExperimentConfig, cells: list[Cell], store: ActivationStore,
                     tasks_needing_interventions: int = 0) -> float:
    """Expected wall time of ``cells`` on this machine (training + evaluation + overhead)."""
    per_pair, per_item = measured_rates(store)
    if cfg.finetune_profile != "cpu":
        per_pair = DEFAULT_SECONDS_PER_PAIR  # no measured figure for the profile; a GPU is far faster
    total = tasks_needing_interventions * INTERVENTION_SECONDS
    for c in cells:
        epochs = cfg.finetune(c.seed).epochs
        total += n_train(cfg, c) * epochs * per_pair + cfg.evaluation(c.task).n_examples * per_item[c.task]
        total += CELL_OVERHEAD_SECONDS
    return total


def format_duration(seconds: float) -> str:
    m = round(seconds / 60)
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


# ------------------------------------------------------------------------------------------------ store

def register_experiment(store: ActivationStore, cfg: ExperimentConfig, command: str) -> str:
    """Create (or refresh) the experiment row; returns its id."""
    eid = experiment_id(cfg)
    versions = {p: _version(p) for p in PACKAGES} | {"python": platform.python_version()}
    with store.connect() as con:
        con.execute("INSERT OR REPLACE INTO experiments (experiment_id, preset, config, command, versions, updated) "
                    "VALUES (?, ?, ?, ?, ?, current_timestamp)",
                    [eid, cfg.preset, cfg.to_json(), command, json.dumps(versions, sort_keys=True)])
    return eid


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def record_cell(store: ActivationStore, exp_id: str, cell: Cell, **values) -> None:
    cols = ["selection_id", "run_id", "eval_id", "status", "seconds", "note"]
    with store.connect() as con:
        con.execute(
            f"INSERT OR REPLACE INTO experiment_cells (experiment_id, task, pool_setting, method, ratio, seed, "
            f"{', '.join(cols)}, updated) VALUES (?, ?, ?, ?, ?, ?, {', '.join('?' * len(cols))}, current_timestamp)",
            [exp_id, *cell.key, *(values.get(c) for c in cols)])


def experiment_config(store: ActivationStore, exp_id: str) -> ExperimentConfig:
    raw = store.scalar("SELECT config FROM experiments WHERE experiment_id = ?", [exp_id])
    if raw is None:
        raise ValueError(f"no experiment {exp_id!r}")
    return ExperimentConfig.from_dict(json.loads(raw))


def experiments(store: ActivationStore) -> pd.DataFrame:
    """Stored experiments, newest first, with their finished cell counts."""
    return store.query_df(
        "SELECT x.experiment_id, x.preset, x.command, x.updated, count(c.task) FILTER (WHERE c.status = 'done') "
        "AS cells_done FROM experiments x LEFT JOIN experiment_cells c USING (experiment_id) "
        "GROUP BY ALL ORDER BY x.updated DESC")


def experiment_cells(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Cells of an experiment joined with their evaluation, base evaluation and amplification."""
    return store.query_df(
        "SELECT c.*, e.metric, e.score, e.nll, e.n AS n_eval, f.n_train, f.train_seconds, a.amplification "
        "FROM experiment_cells c LEFT JOIN evals e ON e.eval_id = c.eval_id "
        "LEFT JOIN finetunes f ON f.run_id = c.run_id LEFT JOIN amplification a ON a.eval_id = c.eval_id "
        "WHERE c.experiment_id = ? ORDER BY c.task, c.pool_setting, c.method, c.ratio, c.seed", [exp_id])


# ---------------------------------------------------------------------------------------------- running

@dataclass
class TaskSetup:
    """What every cell of a task shares."""

    extract_run: str
    effects: object
    eval_cfg: EvalConfig


def _eval_stored(store: ActivationStore, eval_id: str) -> bool:
    return bool(store.scalar("SELECT count(*) FROM evals WHERE eval_id = ?", [eval_id]))


def base_eval_id(cfg: ExperimentConfig, task: str, model_key: str | None) -> str:
    """Id of the base evaluation a task's cells are compared with: same model, items and settings."""
    return make_eval_id(BASE_RUN, task, "test", model_key, cfg.evaluation(task).to_dict())


def prepare_task(ws, cfg: ExperimentConfig, task: str, extract_cfg, progress: ProgressFn) -> TaskSetup:
    """The task's validated features (its latest intervention run, as vetted on the dashboard; recall and
    interventions with the default configs when it has none) and the base evaluation when missing."""
    from igds.method.intervene import InterventionConfig
    from igds.modeling.load import model_key_of
    from igds.workflow.stages import current_recall, latest_effects, run_interventions
    from igds.workflow.tune import evaluate_and_record

    if _has_effects(ws.store, task):
        effects = latest_effects(ws.store, task)
    else:
        recall = current_recall(ws, task, extract_cfg)
        effects = run_interventions(ws, task, recall, InterventionConfig(), scaled(progress, 0, 80, 100))
    ev = cfg.evaluation(task)
    model_key = model_key_of(ws.model)
    if not _eval_stored(ws.store, base_eval_id(cfg, task, model_key)):
        evaluate_and_record(ws.store, BASE_RUN, task, ws.model, ws.tokenizer, ws.sae, ws.site, effects.kept, ev,
                            model_key, scaled(progress, 80, 20, 100))
    return TaskSetup(extract_run=ws.extraction_run_id(extract_cfg), effects=effects, eval_cfg=ev)


def cell_selection(ws, cfg: ExperimentConfig, cell: Cell, setup: TaskSetup, progress: ProgressFn) -> str:
    """Select the cell's training set (idempotent: the same inputs give the same stored selection)."""
    from igds.method.resonance import ResonanceConfig
    from igds.method.selection import SelectionConfig
    from igds.workflow.stages import select_baseline, select_igds

    seed = cell.seed if cell.method == "random" else 0
    sel = SelectionConfig(method=cell.method, ratio=cell.ratio, pool_setting=cell.pool_setting, seed=seed,
                          pool_limit=cfg.pool_limit)
    name = f"exp-{cell.method}-{cell.task}-{cell.ratio:g}-{cell.pool_setting}" + (f"-s{seed}" if seed else "")
    if cell.method == "igds":
        return select_igds(ws.store, setup.extract_run, cell.task, setup.effects, sel, ResonanceConfig(), ws.sae_key,
                           name=name)
    return select_baseline(ws, cell.task, sel, name=name, progress=progress)


def run_cell(ws, cfg: ExperimentConfig, exp_id: str, cell: Cell, setup: TaskSetup, progress: ProgressFn,
             load_workspace=None) -> dict:
    """Run one cell unless its evaluation is already stored; record it either way. An IGDS cell of a task
    without validated features is recorded as ``empty`` with the reason (a rerun checks it again)."""
    from igds.modeling.load import model_key_of
    from igds.workflow.stages import NoValidatedFeatures
    from igds.workflow.tune import finetune_run_id, finetune_selection

    try:
        sid = cell_selection(ws, cfg, cell, setup, scaled(progress, 0, 5, 100))
    except NoValidatedFeatures as e:
        record_cell(ws.store, exp_id, cell, status="empty", note=str(e))
        return {"cell": cell, "skipped": False, "empty": str(e)}
    ft = cfg.finetune(cell.seed)
    run_id = finetune_run_id(sid, ft)
    eval_id = make_eval_id(run_id, cell.task, "test", model_key_of(ws.model), setup.eval_cfg.to_dict())
    done = _eval_stored(ws.store, eval_id)
    t0 = time.perf_counter()
    if not done:
        record_cell(ws.store, exp_id, cell, selection_id=sid, run_id=run_id, status="running")
        res = finetune_selection(ws.store, sid, ft, setup.eval_cfg, scaled(progress, 5, 95, 100),
                                 load_workspace=load_workspace)
        if res.get("status") != "done" or res.get("eval_id") != eval_id:
            raise RuntimeError(f"cell {cell.label} did not finish: {res}")
    record_cell(ws.store, exp_id, cell, selection_id=sid, run_id=run_id, eval_id=eval_id, status="done",
                seconds=None if done else time.perf_counter() - t0)
    return {"cell": cell, "skipped": done, "eval_id": eval_id}


def run_experiment(cfg: ExperimentConfig, store: ActivationStore | None = None, progress: ProgressFn | None = None,
                   log: Callable[[str], None] = print, command: str = "", max_cells: int | None = None,
                   report: str | Path | None = "docs/results.md", load_workspace=None, extract_cfg=None) -> dict:
    """Run (or continue) every cell of the grid, then summarize into the store and the report.

    Args:
        cfg: the grid.
        store: the activation store (default: the workspace's).
        progress: ``progress(done, total, message)`` over the whole run.
        log: one-line messages (the plan, the estimate, each finished cell).
        command: the command line, kept with the results.
        max_cells: stop after running this many new cells (a rerun continues).
        report: markdown file to (re)write (relative paths from the repository root); None writes none.
        load_workspace: ``() -> Workspace`` giving a fresh workspace (default: the default model and SAE).
        extract_cfg: the extraction whose activations IGDS scores (default: ``ExtractConfig()``).

    Returns:
        experiment id, cells run / skipped / left, seconds.
    """
    from igds.method.extract import ExtractConfig
    from igds.workflow.workspace import BootstrapConfig, open_workspace

    progress = progress or null_progress
    extract_cfg = extract_cfg or ExtractConfig()
    store = store or ActivationStore()
    settings.apply_offline_env()
    exp_id = register_experiment(store, cfg, command)
    cells = plan_cells(cfg)
    status = cell_status(store, exp_id)
    todo = [c for c in cells if status.get(c.key) != "done"]
    no_effects = sum(1 for t in cfg.tasks if not _has_effects(store, t))
    # cells found empty before (IGDS without validated features) are checked again but cost nothing
    est = estimate_seconds(cfg, [c for c in todo if status.get(c.key) != "empty"], store, no_effects)
    log(f"experiment {exp_id}: {len(cells)} cells, {len(cells) - len(todo)} recorded as done, {len(todo)} to check "
        f"or run; estimated {format_duration(est)} on this machine (cells already in the store are skipped)")
    load_workspace = load_workspace or (lambda: open_workspace(BootstrapConfig(tasks=tuple(cfg.tasks)), store))
    ws = load_workspace()
    t0, ran, skipped, empty, setups = time.perf_counter(), 0, 0, 0, {}
    for i, cell in enumerate(todo):
        if max_cells is not None and ran >= max_cells:
            break
        elapsed = time.perf_counter() - t0
        left = estimate_seconds(cfg, todo[i:], store)
        prog = scaled(progress, i, 1, len(todo))
        prog(0, 1, f"cell {i + 1}/{len(todo)} {cell.label} · {format_duration(elapsed)} elapsed, "
                   f"~{format_duration(left)} left")
        if cell.task not in setups:
            log(f"{cell.task}: recall, interventions and base evaluation (skipped where stored)")
            setups[cell.task] = prepare_task(ws, cfg, cell.task, extract_cfg, prog)
        out = run_cell(ws, cfg, exp_id, cell, setups[cell.task], prog, load_workspace)
        if "empty" in out:
            empty += 1
            log(f"[{i + 1}/{len(todo)}] {cell.label}: empty ({out['empty']})")
            continue
        ran, skipped = ran + (not out["skipped"]), skipped + out["skipped"]
        log(f"[{i + 1}/{len(todo)}] {cell.label}: {'already in the store' if out['skipped'] else 'done'}")
    summary = summarize(store, exp_id)
    if report:
        write_report(store, exp_id, settings.REPO_ROOT / report)
    left = len(todo) - ran - skipped - empty
    progress(1, 1, f"experiment {exp_id}: {ran} run, {skipped} reused, {empty} empty, {left} left")
    return {"experiment_id": exp_id, "ran": ran, "reused": skipped, "empty": empty, "left": left,
            "seconds": time.perf_counter() - t0, "groups": len(summary)}


def _has_effects(store: ActivationStore, task: str) -> bool:
    from igds.workflow.stages import latest_run

    run = latest_run(store, "intervene", task)
    return bool(run and run.get("status") == "done")


# -------------------------------------------------------------------------------------------- summaries

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
    rows = []
    for eid in eval_ids:
        out = eval_outputs(store, eid).set_index("example_id")[column]
        rows.append(out.reindex(order).to_numpy(dtype=float))
    return np.vstack(rows)


def summarize(store: ActivationStore, exp_id: str, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per (task, pool, method, ratio): means with 95% CIs, differences to Random, amplification;
    per task: the amplification–gain correlations. Both are written to the store and returned (groups)."""
    cfg = experiment_config(store, exp_id)
    cells = experiment_cells(store, exp_id)
    cells = cells[cells.status == "done"]
    groups, corr = [], []
    for task, tcells in cells.groupby("task", sort=False):
        base_id = _base_eval_id(store, cfg, task, tcells)
        base = eval_outputs(store, base_id).set_index("example_id") if base_id else None
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
    corr_df = pd.DataFrame(corr, columns=CORRELATION_COLUMNS)
    with store.transaction() as con:
        for table, df in (("experiment_results", out), ("experiment_correlations", corr_df)):
            con.execute(f"DELETE FROM {table} WHERE experiment_id = ?", [exp_id])
            con.register("new_rows", pa.Table.from_pandas(df, preserve_index=False))
            con.execute(f"INSERT INTO {table} ({', '.join(df.columns)}) SELECT * FROM new_rows")
            con.unregister("new_rows")
    return out


def with_gains(cells: pd.DataFrame, base_score: float, base_nll: float) -> pd.DataFrame:
    """Cells with their gain over the base model: metric gain, and NLL gain (positive: NLL went down)."""
    return cells.assign(metric_gain=cells.score - base_score, nll_gain=base_nll - cells.nll)


def experiment_points(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Finished cells with their gains over the task's base evaluation (one point per fine-tune)."""
    cells = experiment_cells(store, exp_id)
    base = results_table(store, exp_id).groupby("task")[["base_score", "base_nll"]].first()
    cells = cells[(cells.status == "done") & cells.task.isin(base.index)]
    return pd.concat([with_gains(g, *base.loc[t]) for t, g in cells.groupby("task")]) if len(cells) else cells


RESULT_COLUMNS = ["experiment_id", "task", "pool_setting", "method", "ratio", "n_runs", "n_train", "n_eval", "metric",
                  "score", "score_lo", "score_hi", "d_score", "d_score_lo", "d_score_hi", "nll", "nll_lo", "nll_hi",
                  "d_nll", "d_nll_lo", "d_nll_hi", "amplification", "base_score", "base_nll"]
CORRELATION_COLUMNS = ["experiment_id", "task", "y_name", "n", "pearson", "pearson_lo", "pearson_hi", "spearman",
                       "spearman_lo", "spearman_hi"]


def _base_eval_id(store: ActivationStore, cfg: ExperimentConfig, task: str, cells: pd.DataFrame) -> str | None:
    """The base evaluation paired with a task's cells: same model, items and settings."""
    model_key = store.scalar("SELECT model_key FROM evals WHERE eval_id = ?", [cells.eval_id.iloc[0]])
    eid = base_eval_id(cfg, task, model_key)
    return eid if _eval_stored(store, eid) else None


def results_table(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Summarized groups of an experiment: per task, task-only before mixed, the main ratio's methods
    (IGDS, Random, Loss, IFD, ZIP, Full) before the other IGDS ratios."""
    res = store.query_df("SELECT * FROM experiment_results WHERE experiment_id = ?", [exp_id])
    main = experiment_config(store, exp_id).ratio
    res = res.assign(_o=res.method.map(METHOD_ORDER).fillna(9), _x=(res.ratio != main) & (res.method != "full"))
    return res.sort_values(["task", "pool_setting", "_x", "_o", "ratio"], ascending=[True, False, True, True, True]
                           ).drop(columns=["_o", "_x"]).reset_index(drop=True)


def correlation_rows(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    return store.query_df("SELECT * FROM experiment_correlations WHERE experiment_id = ? ORDER BY task, y_name",
                          [exp_id])


def cell_status(store: ActivationStore, exp_id: str) -> dict[tuple, str]:
    """Recorded status (running, done, empty) of each cell, by :attr:`Cell.key`."""
    rows = store.query_df("SELECT task, pool_setting, method, ratio, seed, status FROM experiment_cells "
                          "WHERE experiment_id = ?", [exp_id])
    return {tuple(r[:5]): r[5] for r in rows.itertuples(index=False, name=None)}


def empty_cells(store: ActivationStore, exp_id: str, task: str) -> pd.DataFrame:
    """A task's cells that could not run, with the reason (IGDS without validated features)."""
    return store.query_df("SELECT pool_setting, method, ratio, seed, note FROM experiment_cells "
                          "WHERE experiment_id = ? AND task = ? AND status = 'empty' "
                          "ORDER BY pool_setting DESC, ratio, seed", [exp_id, task])


def selection_diagnostics(store: ActivationStore, exp_id: str) -> pd.DataFrame:
    """Per selection of the experiment: share of task examples and mean tokens of its members."""
    return store.query_df(
        "SELECT c.task, c.pool_setting, c.method, c.ratio, any_value(s.n_selected) AS n_selected, "
        "avg((e.task = c.task)::INT) AS task_share, avg(es.n_tokens) AS mean_tokens "
        "FROM (SELECT DISTINCT task, pool_setting, method, ratio, selection_id FROM experiment_cells "
        "      WHERE experiment_id = ? AND status = 'done') c "
        "JOIN selections s USING (selection_id) JOIN selection_members m USING (selection_id) "
        "JOIN examples e ON e.id = m.example_id "
        "LEFT JOIN (SELECT example_id, any_value(n_tokens) AS n_tokens FROM example_stats GROUP BY example_id) es "
        "ON es.example_id = m.example_id "
        "GROUP BY c.task, c.pool_setting, c.method, c.ratio, c.selection_id "
        "ORDER BY c.task, c.pool_setting, c.method, c.ratio, c.selection_id", [exp_id])


# ----------------------------------------------------------------------------------------------- report

def _fmt(v, lo, hi, digits: int, signed: bool = False) -> str:
    """``v [lo, hi]`` (``–`` for a missing value; no interval when it is missing)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    sign = "+" if signed else ""
    ci = "" if lo is None or math.isnan(lo) else f" [{lo:{sign}.{digits}f}, {hi:{sign}.{digits}f}]"
    return f"{v:{sign}.{digits}f}{ci}"


def verdict(lo: float, hi: float, higher_is_better: bool = True) -> str:
    """'better' / 'worse' than Random when the 95% interval excludes 0, else 'n.s.'."""
    if lo is None or hi is None or math.isnan(lo):
        return ""
    if lo > 0:
        return "better" if higher_is_better else "worse"
    if hi < 0:
        return "worse" if higher_is_better else "better"
    return "n.s."


def report_markdown(store: ActivationStore, exp_id: str) -> str:
    """The results page: the command, versions, one table per task, correlations, diagnostics."""
    x = store.query_df("SELECT * FROM experiments WHERE experiment_id = ?", [exp_id]).iloc[0]
    cfg = experiment_config(store, exp_id)
    versions = json.loads(x.versions)
    res = results_table(store, exp_id)
    corr = correlation_rows(store, exp_id)
    planned = plan_cells(cfg)
    status = cell_status(store, exp_id)
    empties = {task: empty_cells(store, exp_id, task) for task in cfg.tasks}
    n_done = sum(status.get(c.key) == "done" for c in planned)
    n_empty = sum(status.get(c.key) == "empty" for c in planned)
    updated = store.scalar("SELECT max(updated) FROM experiment_cells WHERE experiment_id = ?", [exp_id]) or x.updated
    lines = [
        "# Results: the paper's comparison in miniature",
        "",
        "Generated by `igds.experiment.write_report` from the store; rerunning the command continues the grid and "
        "rewrites this file.",
        "",
        f"- **Command:** `{x.command or 'python -m igds experiment --preset ' + cfg.preset}`",
        f"- **Experiment:** `{exp_id}` · {n_done} of {len(planned)} cells finished"
        + (f", {n_empty} empty (IGDS without validated features; the reason is under the task)" if n_empty else "")
        + f" · last cell recorded {pd.Timestamp(updated):%Y-%m-%d %H:%M} UTC",
        "- **Versions:** " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())),
        f"- **Grid:** tasks {', '.join(cfg.tasks)}; pools {', '.join(cfg.pool_settings)} of {cfg.pool_limit} task "
        f"examples (+{cfg.pool_limit} general in `mixed`); IGDS at ρ = "
        f"{', '.join(f'{r:g}' for r in (cfg.ratio, *cfg.igds_ratios))}; baselines {', '.join(cfg.baselines)} at "
        f"ρ = {cfg.ratio:g} and Full; seeds "
        f"{', '.join(map(str, cfg.seeds))} for IGDS and Random at ρ = {cfg.ratio:g}.",
        f"- **Fine-tune:** {_ft_text(cfg)}",
        f"- **Evaluation:** the first {', '.join(f'{n} ({t})' for t, n in cfg.n_eval.items() if t in cfg.tasks)} "
        "held-out test items; greedy decoding; reference NLL = mean per-token NLL of the reference response.",
        "- **Intervals:** 95% bootstrap (2,000 draws) resampling seeds and test items; Δ vs. Random is paired on "
        "test items. *better/worse* means the interval of the difference excludes 0; *n.s.* means it does not.",
        "",
    ]
    for task in cfg.tasks:
        lines += [f"## {task}", ""]
        t, empty = res[res.task == task], empties[task]
        if not empty.empty:
            lines += [f"Empty ({len(empty)} cells: "
                      + ", ".join(f"{r.pool_setting} {r.method}@{r.ratio:g} seed {r.seed}" for r in empty.itertuples())
                      + "). " + " ".join(f"{n[0].upper()}{n[1:]}." for n in empty.note.unique()), ""]
        if t.empty:
            lines += ["No finished cell yet: rerun the command to continue the grid.", ""]
            continue
        metric = t.metric.iloc[0]
        lines += [f"Base model: {metric} {t.base_score.iloc[0]:.4f}, reference NLL {t.base_nll.iloc[0]:.3f} "
                  f"({int(t.n_eval.iloc[0])} test items).", ""]
        lines += [f"| pool | method | ρ | runs | pairs | {metric} [95% CI] | Δ vs Random | | NLL [95% CI] | "
                  "Δ NLL vs Random | | amplification |", "|" + "---|" * 12]
        for r in t.itertuples():
            lines.append(
                f"| {r.pool_setting} | {r.method} | {r.ratio:g} | {r.n_runs} | {r.n_train:.0f} | "
                f"{_fmt(r.score, r.score_lo, r.score_hi, 4)} | "
                f"{_fmt(r.d_score, r.d_score_lo, r.d_score_hi, 4, signed=True)} | "
                f"{verdict(r.d_score_lo, r.d_score_hi)} | "
                f"{_fmt(r.nll, r.nll_lo, r.nll_hi, 3)} | "
                f"{_fmt(r.d_nll, r.d_nll_lo, r.d_nll_hi, 3, signed=True)} | "
                f"{verdict(r.d_nll_lo, r.d_nll_hi, False)} | "
                f"{_fmt(r.amplification, None, None, 3, signed=True)} |")
        missing = [c for c in planned if c.task == task and status.get(c.key) not in ("done", "empty")]
        if missing:
            lines += ["", f"Not yet run ({len(missing)} cells; rerun the command to continue): "
                      + ", ".join(f"{c.pool_setting} {c.method}@{c.ratio:g} seed {c.seed}" for c in missing)]
        lines.append("")
    lines += ["## Feature amplification vs. gain", "",
              "One point per finished cell of the task (both pools): amplification of the task's validated features "
              "on the test prompts against the gain over the base model. Rows marked *at ρ, pool* use only that pool's "
              "cells at the main ratio, where every fine-tune saw the same number of examples.", "",
              "| task | gain | points | Pearson [95% CI] | Spearman [95% CI] |", "|---|---|---|---|---|"]
    for task, tc in corr.groupby("task", sort=True):
        if (tc.n == 0).all():
            why = ("not defined: the task has no validated features, so there is no amplification to measure"
                   if not empties[task].empty else "no finished cell yet")
            lines.append(f"| {task} | – | 0 | {why} | |")
            continue
        lines += [f"| {r.task} | {r.y_name} | {r.n} | "
                  f"{_fmt(r.pearson, r.pearson_lo, r.pearson_hi, 2, signed=True)} | "
                  f"{_fmt(r.spearman, r.spearman_lo, r.spearman_hi, 2, signed=True)} |" for r in tc.itertuples()]
    diag = selection_diagnostics(store, exp_id)
    if not diag.empty:
        lines += ["", "## What the selections contain", "",
                  "| task | pool | method | ρ | selected | task share | mean tokens |", "|---|---|---|---|---|---|---|"]
        for r in diag.itertuples():
            lines.append(f"| {r.task} | {r.pool_setting} | {r.method} | {r.ratio:g} | {r.n_selected} | "
                         f"{r.task_share:.0%} | {r.mean_tokens:.0f} |")
    lines += ["", "The dashboard's Results page shows the same tables and the plots "
              "(`docs/screenshots/results.png`).", ""]
    return "\n".join(lines)


def _ft_text(cfg: ExperimentConfig) -> str:
    ft = cfg.finetune(cfg.seeds[0])
    return (f"LoRA r = {ft.r} on {', '.join(ft.target_modules)}, {ft.epochs:g} epoch(s), lr {ft.learning_rate:g}, "
            f"batch {ft.batch_size}, max length {ft.max_length}, precision {ft.precision} "
            f"(profile `{cfg.finetune_profile}`).")


def write_report(store: ActivationStore, exp_id: str, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report_markdown(store, exp_id), encoding="utf-8")
    return path
