"""Running the grid: per task the shared setup (validated features, base evaluation), per cell select,
LoRA fine-tune and evaluate; a rerun skips every cell whose evaluation is stored, then the summary and
the report are rewritten."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from igds import settings
from igds.experiment.cells import base_eval_id, cell_status, record_cell, register_experiment
from igds.experiment.estimate import estimate_seconds, format_duration
from igds.experiment.grid import Cell, ExperimentConfig, plan_cells
from igds.experiment.report import write_report
from igds.experiment.stats import summarize
from igds.progress import ProgressFn, null_progress, scaled
from igds.store import ActivationStore
from igds.training.evaluate import EvalConfig
from igds.training.results import BASE_RUN, make_eval_id


@dataclass
class TaskSetup:
    """What every cell of a task shares."""

    extract_run: str
    effects: object
    eval_cfg: EvalConfig


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
    if not ws.store.has_eval(base_eval_id(cfg, task, model_key)):
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
    done = ws.store.has_eval(eval_id)
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
    from igds.workflow.workspace import default_workspace

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
    load_workspace = load_workspace or (lambda: default_workspace(store, tasks=tuple(cfg.tasks)))
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
