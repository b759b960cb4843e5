"""Running the grid: per task the shared setup (validated features, base evaluation), per cell select,
LoRA fine-tune and evaluate; a rerun skips every cell whose evaluation is stored, then the summary and
the report are rewritten."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from igds import settings
from igds.experiment.cells import base_eval_id, cell_status, record_cell, register_experiment
from igds.experiment.estimate import estimate_seconds, format_duration
from igds.experiment.grid import (
    STRATIFIED_METHODS,
    TASK_FIRST,
    TOKEN_METHODS,
    Cell,
    ExperimentConfig,
    experiment_id,
    plan_cells,
    preset_of,
    quartile_of,
)
from igds.experiment.record import import_grid_records
from igds.experiment.report import write_report
from igds.experiment.stats import summarize
from igds.method.config import ExtractConfig
from igds.method.presets import DEFAULT_PRESET
from igds.progress import ProgressFn, null_progress, scaled
from igds.store import ActivationStore
from igds.training.config import EvalConfig
from igds.training.results import BASE_RUN, make_eval_id


@dataclass
class TaskSetup:
    """What every cell of a task shares."""

    extract_cfg: object       # the extraction IGDS scores and Longest / Shortest count tokens on
    extract_run: str
    effects: dict            # method preset → EffectResult
    eval_cfg: EvalConfig
    features: list[int]      # the default preset's F* (after overrides): amplification is measured on it
    control: list[int]       # a density-matched random feature set of the same size: the control
    max_length: dict         # pool setting → data-driven sequence length
    provenance: dict


def prepare_task(ws, cfg: ExperimentConfig, task: str, extract_cfg, progress: ProgressFn) -> TaskSetup:
    """Everything the task's cells share: each method preset's recall and interventions (read back when
    stored), the amplification features and their control, the pools' sequence lengths, and the base
    evaluation when missing."""
    from igds.method.intervene import density_matched_features
    from igds.method.pool import pool_records
    from igds.method.presets import method_preset
    from igds.method.selection import SelectionConfig, load_overrides
    from igds.modeling.load import model_key_of
    from igds.training.batches import full_lengths, quantile_length
    from igds.workflow.stages import prepare_method, selection_pool, token_density_vector
    from igds.workflow.tune import EvalTarget, Measured, evaluate_and_record

    n = len(cfg.method_presets)
    effects = {p: prepare_method(ws, task, method_preset(p), extract_cfg, scaled(progress, 70 * i, 70, 100 * n))
               for i, p in enumerate(cfg.method_presets)}
    default = effects.get(DEFAULT_PRESET)
    overrides = load_overrides(ws.store, task, ws.sae_key)
    features = overrides.apply_to_features(default.kept) if default else []
    control = []
    if features:
        from igds.method.recall import load_recall

        recall = load_recall(ws.store, ws.store.run(default.effect_id)["config"]["recall_id"])
        density = token_density_vector(recall, int(ws.sae.cfg.d_sae))
        control = density_matched_features(features, density, exclude=recall.candidates, seed=0)
    lengths, dropped = {}, {}
    for pool in cfg.pool_settings:
        examples = pool_records(selection_pool(ws.store, task, SelectionConfig(pool_setting=pool,
                                                                               pool_limit=cfg.pool_limit)))
        full = full_lengths(ws.tokenizer, examples)  # tokenized once: the length and what it leaves out
        lengths[pool] = quantile_length(full, cfg.length_quantile, cfg.length_cap)
        dropped[pool] = sum(length > lengths[pool] for length in full)
    ev = cfg.evaluation(task)
    model_key = model_key_of(ws.model)
    if not ws.store.has_eval(base_eval_id(cfg, task, model_key)):
        evaluate_and_record(ws.store, EvalTarget(BASE_RUN, ws.loaded(), model_key, ws.sae_key), task, ev,
                            Measured(features, scope=extract_cfg.scope), scaled(progress, 70, 30, 100))
    provenance = method_provenance(effects, overrides, features, control)
    provenance |= {"max_length": lengths, "pool_over_length": dropped}
    return TaskSetup(extract_cfg=extract_cfg, extract_run=ws.extraction_run_id(extract_cfg), effects=effects,
                     eval_cfg=ev, features=features, control=control, max_length=lengths, provenance=provenance)


def method_provenance(effects: dict, overrides, features: list[int], control: list[int]) -> dict:
    """A task's method identity, recorded with the experiment (``method`` is what its id covers): per
    method preset its configs, intervention run and F*; the task's overrides; the amplification features
    and their control set."""
    from igds.method.presets import method_preset

    per = {p: {"config": method_preset(p).to_dict(), "effect_id": e.effect_id, "fstar": [int(f) for f in e.kept],
               "n_candidates": int(len(e.summary.feature.unique())) if len(e.summary) else 0,
               "fstar_effects": {int(f): float(v) for f, v in zip(e.amplification.feature, e.amplification.effect,
                                                                    strict=True) if int(f) in set(e.kept)}}
           for p, e in effects.items()}
    return {"method": {"presets": {p: {k: v[k] for k in ("config", "effect_id", "fstar")} for p, v in per.items()},
                       "overrides": overrides.to_dict()},
            "presets": per, "features": features, "control": control}


def stored_provenance(store: ActivationStore, cfg: ExperimentConfig, task: str) -> dict | None:
    """A task's method identity from the store alone (for ``--dry-run``): None unless every method preset's
    intervention run with exactly the preset's configs is finished."""
    from igds.method.presets import method_preset
    from igds.method.selection import load_overrides
    from igds.workflow.stages import latest_effects, latest_run

    effects = {}
    for p in cfg.method_presets:
        mp = method_preset(p)
        run = latest_run(store, "intervene", task, p)
        recall = store.run(run["config"]["recall_id"]) if run else None
        if (not run or run.get("status") != "done" or not recall
                or _canonical(run["config"]["intervene"]) != _canonical(mp.intervene.to_dict())
                or _canonical(recall["config"]["recall"]) != _canonical(mp.recall.to_dict())):
            return None
        effects[p] = latest_effects(store, task, p)
    sae_key = store.run(effects[next(iter(effects))].effect_id).get("sae_key")
    overrides = load_overrides(store, task, sae_key)
    default = effects.get(DEFAULT_PRESET)
    return method_provenance(effects, overrides, overrides.apply_to_features(default.kept) if default else [], [])


def _canonical(d: dict) -> str:
    return json.dumps(d, sort_keys=True, default=list)


def cell_selection(ws, cfg: ExperimentConfig, cell: Cell, setup: TaskSetup, progress: ProgressFn) -> str:
    """Select the cell's training set (idempotent: the same inputs give the same stored selection)."""
    from igds.method.controls import token_budget
    from igds.method.presets import method_preset
    from igds.method.selection import SelectionConfig
    from igds.workflow.stages import select_baseline, select_igds, select_task_first, selection_pool

    seed = cell.seed if cell.method in ("random", "random-tokens", TASK_FIRST) else 0
    mp = preset_of(cell.method)
    base = cell.method.removesuffix("-tokens")
    sel = SelectionConfig(method="igds" if mp else base, ratio=cell.ratio, pool_setting=cell.pool_setting, seed=seed,
                          pool_limit=cfg.pool_limit)
    name = f"exp-{cell.method}-{cell.task}-{cell.ratio:g}-{cell.pool_setting}" + (f"-s{seed}" if seed else "")
    if cell.method == TASK_FIRST:
        return select_task_first(ws, cell.task, sel, name=name, extract_cfg=setup.extract_cfg)
    if cell.method in TOKEN_METHODS:  # IGDS and Random at one token budget: ρ of the pool's content tokens
        pool = selection_pool(ws.store, cell.task, sel, setup.extract_run)
        sel = dataclasses.replace(sel, token_budget=token_budget(pool, cell.ratio))
    if mp is not None:
        return select_igds(ws.store, setup.extract_run, cell.task, setup.effects[mp], sel, method_preset(mp).resonance,
                           ws.sae_key, name=name, preset=mp, quartile=quartile_of(cell.method),
                           stratified=cell.method in STRATIFIED_METHODS)
    return select_baseline(ws, cell.task, sel, name=name, progress=progress, extract_cfg=setup.extract_cfg)


def run_cell(ws, cfg: ExperimentConfig, exp_id: str, cell: Cell, setup: TaskSetup, progress: ProgressFn,
             load_workspace=None) -> dict:
    """Run one cell unless its evaluation is already stored; record it either way. An IGDS cell of a task
    without validated features is recorded as ``empty`` with the reason (a rerun checks it again)."""
    from igds.modeling.load import model_key_of
    from igds.workflow.stages import NoValidatedFeatures
    from igds.workflow.tune import Measured, finetune_run_id, finetune_selection

    try:
        sid = cell_selection(ws, cfg, cell, setup, scaled(progress, 0, 5, 100))
    except NoValidatedFeatures as e:
        record_cell(ws.store, exp_id, cell, status="empty", note=str(e))
        return {"cell": cell, "skipped": False, "empty": str(e)}
    ft = cfg.finetune(cell.seed, setup.max_length[cell.pool_setting])
    run_id = finetune_run_id(sid, ft)
    eval_id = make_eval_id(run_id, cell.task, "test", model_key_of(ws.model), setup.eval_cfg.to_dict())
    done = ws.store.has_eval(eval_id)
    t0 = time.perf_counter()
    if not done:
        record_cell(ws.store, exp_id, cell, selection_id=sid, run_id=run_id, status="running")
        res = finetune_selection(ws.store, sid, ft, setup.eval_cfg, scaled(progress, 5, 95, 100),
                                 load_workspace=load_workspace,
                                 measured=Measured(setup.features, setup.control, setup.extract_cfg.scope))
        if res.get("status") != "done" or res.get("eval_id") != eval_id:
            raise RuntimeError(f"cell {cell.label} did not finish: {res}")
    record_cell(ws.store, exp_id, cell, selection_id=sid, run_id=run_id, eval_id=eval_id, status="done",
                seconds=None if done else time.perf_counter() - t0)
    return {"cell": cell, "skipped": done, "eval_id": eval_id}


def plan_experiment(cfg: ExperimentConfig, store: ActivationStore) -> dict:
    """What ``--dry-run`` prints: the cells, the experiment id where every task's method runs are stored (else the
    latest recorded experiment of this grid, :func:`recorded_experiment`; None when there is none: it is fixed once
    they are), the tasks whose method stages still run, and the estimate."""
    import_grid_records(store, strict=False)  # the committed cells of record count as done
    prov = {t: stored_provenance(store, cfg, t) for t in cfg.tasks}
    known = all(p is not None for p in prov.values())
    exp_id = experiment_id(cfg, prov) if known else recorded_experiment(store, cfg)
    status = cell_status(store, exp_id) if exp_id else {}
    cells = plan_cells(cfg)
    todo = [c for c in cells if status.get(c.key) != "done"]
    costly = [c for c in todo if not _known_empty(prov.get(c.task), c)]
    need_default = sum(1 for t in cfg.tasks if prov[t] is None and DEFAULT_PRESET in cfg.method_presets
                       and not _has_effects(store, t))
    others = sum(p != DEFAULT_PRESET for p in cfg.method_presets)
    pending = [t for t in cfg.tasks if prov[t] is None]
    return {"experiment_id": exp_id, "cells": cells, "todo": todo, "pending_tasks": pending,
            "seconds": estimate_seconds(cfg, costly, store, need_default, others * len(pending))}


def recorded_experiment(store: ActivationStore, cfg: ExperimentConfig) -> str | None:
    """The latest stored experiment of this grid config (e.g. one imported from the grid's results of record,
    :mod:`igds.experiment.record`), for a ``--dry-run`` before the method stages have run here; None if none."""
    want = _canonical(cfg.to_dict())
    rows = store.query_df("SELECT experiment_id, config FROM experiments ORDER BY updated DESC")
    return next((r.experiment_id for r in rows.itertuples() if _canonical(json.loads(r.config)) == want), None)


def _known_empty(provenance: dict | None, cell: Cell) -> bool:
    """Whether an IGDS cell will be empty (its method preset's stored F* is empty): it costs nothing."""
    preset = preset_of(cell.method)
    if provenance is None or preset is None:
        return False
    fstar = provenance["presets"][preset]["fstar"]
    return not fstar and (preset != DEFAULT_PRESET or not provenance["features"])


def run_experiment(cfg: ExperimentConfig, store: ActivationStore | None = None, progress: ProgressFn | None = None,
                   log: Callable[[str], None] = print, command: str = "", max_cells: int | None = None,
                   report: str | Path | None = "docs/results.md", load_workspace=None, extract_cfg=None,
                   max_minutes: float | None = None) -> dict:
    """Run (or continue) every cell of the grid, then summarize into the store and the report.

    Every task's method stages run first (read back where stored), because the experiment id covers
    what they produce: each method preset's F* and the overrides (:func:`igds.experiment.grid.experiment_id`).

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
        max_minutes: start no new cell after this many minutes (a rerun continues).

    Returns:
        experiment id, cells run / skipped / empty / left, seconds.
    """
    from igds.workflow.workspace import default_workspace

    progress = progress or null_progress
    extract_cfg = extract_cfg or ExtractConfig()
    store = store or ActivationStore()
    settings.apply_offline_env()
    t0 = time.perf_counter()
    load_workspace = load_workspace or (lambda: default_workspace(store, tasks=tuple(cfg.tasks)))
    ws = load_workspace()
    import_grid_records(store, strict=False)  # the committed cells of record are not run again
    setups = {}
    for i, task in enumerate(cfg.tasks):
        log(f"{task}: method presets {', '.join(cfg.method_presets)} (recall, interventions; read back where "
            "stored), sequence lengths, base evaluation")
        setups[task] = prepare_task(ws, cfg, task, extract_cfg, scaled(progress, i, 1, 20 * len(cfg.tasks)))
    provenance = {t: s.provenance for t, s in setups.items()}
    exp_id = register_experiment(store, cfg, command, provenance)
    cells = plan_cells(cfg)
    status = cell_status(store, exp_id)
    todo = [c for c in cells if status.get(c.key) != "done"]
    est = estimate_seconds(cfg, [c for c in todo if status.get(c.key) != "empty"], store)
    log(f"experiment {exp_id}: {len(cells)} cells, {len(cells) - len(todo)} recorded as done, {len(todo)} to check "
        f"or run; estimated {format_duration(est)} on this machine (cells already in the store are skipped)")
    ran, skipped, empty, t_cells = 0, 0, 0, time.perf_counter()
    for i, cell in enumerate(todo):
        elapsed = time.perf_counter() - t0
        if (max_cells is not None and ran >= max_cells) or (max_minutes is not None and elapsed > 60 * max_minutes):
            break
        left = estimate_seconds(cfg, todo[i:], store)
        prog = scaled(progress, len(cfg.tasks) + 19 * len(cfg.tasks) * i // max(len(todo), 1), 1,
                      20 * len(cfg.tasks))
        prog(0, 1, f"cell {i + 1}/{len(todo)} {cell.label} · {format_duration(elapsed)} elapsed, "
                   f"~{format_duration(left)} left")
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
            "seconds": time.perf_counter() - t0, "cell_seconds": time.perf_counter() - t_cells,
            "estimate_seconds": est, "groups": len(summary)}


def _has_effects(store: ActivationStore, task: str) -> bool:
    from igds.workflow.stages import latest_run

    run = latest_run(store, "intervene", task)
    return bool(run and run.get("status") == "done")
