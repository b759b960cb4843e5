"""The first run, end to end: corpus → model → shipped SAE → extraction → recall → interventions →
top-activating contexts of every candidate, so the dashboard opens on recalled and validated features and a
live selection without a click. The vetting queue's token highlights are a job of their own, offered on the
Selection page (they would double the first run on 2 cores). Every step is cached by content key: a second run
is a no-op and an interrupted one resumes.

The run announces its :data:`STAGES` (:func:`igds.progress.begin_stage`), and each stage reports progress in its own
units, so a job shows "stage 4 of 5: interventions, feature 12/32, about 6 min left" from the rate measured in
that stage, and its log records when each stage started and ended."""

from __future__ import annotations

import time

from igds import settings
from igds.progress import ProgressFn, begin_stage, null_progress
from igds.store import ActivationStore
from igds.workflow.explore import ensure_contexts
from igds.workflow.stages import run_interventions, run_recall
from igds.workflow.workspace import BootstrapConfig, extract_tasks, open_workspace, workspace_config

STAGES = ("model and SAE", "extraction", "recall", "interventions", "contexts")


def _stage(progress: ProgressFn, name: str, n_stages: int) -> ProgressFn:
    begin_stage(progress, name, STAGES.index(name) + 1, n_stages)
    return progress


def bootstrap(cfg: BootstrapConfig | None = None, store: ActivationStore | None = None,
              progress: ProgressFn | None = None) -> dict:
    """Prepare the workspace for ``cfg.tasks`` (default: its chosen model and SAE, :func:`workspace_config`);
    cached steps are skipped.

    With ``cfg.method_stages`` (default) recall, interventions (null included) and the contexts of every
    candidate run for the first task, after the extraction of every task. ``progress`` gets each stage's own
    counts; a callback with a stage notion (a job's) is told each of :data:`STAGES` as it begins (the first two
    only without ``method_stages``).

    Returns:
        a summary dict (keys, counts, timings, SAE quality, per-task |C| and |F*|).
    """
    store = store or ActivationStore()
    cfg = cfg or workspace_config(store)
    progress = progress or null_progress
    settings.apply_offline_env()
    t0 = time.perf_counter()
    n_stages = len(STAGES) if cfg.method_stages and cfg.tasks else 2
    ws = open_workspace(cfg, store, _stage(progress, "model and SAE", n_stages))
    res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting, _stage(progress, "extraction", n_stages))
    summary = {"examples_added": ws.examples_added, "model_key": ws.model_key, "sae_key": ws.sae_key,
               "site": ws.site, "run_id": res.run_id, "extracted_examples": res.n_examples, "new_examples": res.n_new,
               "rows": res.n_rows, "extract_seconds": round(res.seconds, 1),
               "sae_quality": {k: v for k, v in ws.sae_info["quality"].items() if k != "config"}, "tasks": {}}
    if cfg.method_stages and cfg.tasks:
        task = cfg.tasks[0]
        t1 = time.perf_counter()
        _stage(progress, "recall", n_stages)(0, 1, f"recall: {task}")
        recall = run_recall(ws, task, cfg.recall, cfg.extract)
        progress(1, 1, f"recall: {len(recall.candidates)} candidates of {task}")
        effects = run_interventions(ws, task, recall, cfg.intervene, _stage(progress, "interventions", n_stages))
        ensure_contexts(ws, res.run_id, recall.candidates, progress=_stage(progress, "contexts", n_stages))
        summary["tasks"][task] = {"recall_id": recall.recall_id, "candidates": len(recall.candidates),
                                  "effect_id": effects.effect_id, "validated": effects.kept,
                                  "seconds": round(time.perf_counter() - t1, 1)}
    progress(1, 1, "bootstrap: done")
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary
