"""The first run, end to end, least first: corpus → model → shipped SAE → extraction of what recall reads (probe,
reference, dev) → recall → top-activating contexts of every candidate → a quick look at the strongest candidates →
extraction of the task's pool → the full filter (F*) → extraction of the general records (the mixed pool) → contexts
over the whole run. So the dashboard opens on recalled features with contexts within minutes, on a quick look at
their effects soon after, and on a live task-only selection as soon as F* is stored, on any CPU; the rest follows.
The vetting queue's token highlights are a job of their own, offered on the Selection page. Every step is cached by
content key: a second run is a no-op and an interrupted one resumes.

The run announces its :data:`STAGES` (:func:`igds.progress.begin_stage`) and, after each, the stages still to come
with their estimated durations (:func:`igds.progress.report_plan`), from rates it measured itself: extraction tokens
per second in the first extraction, seconds per edit in the quick look. So every page can say what is still being
prepared and when it will be ready."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from igds import settings
from igds.method.intervene import null_plan
from igds.modeling.encoding import encode_examples
from igds.progress import ProgressFn, begin_stage, null_progress, report_plan
from igds.store import ActivationStore
from igds.workflow.explore import ensure_contexts, refresh_contexts
from igds.workflow.stages import candidates_of, run_interventions, run_quick_look, run_recall
from igds.workflow.workspace import (
    GENERAL_POOL,
    LOOK,
    TASK_POOL,
    BootstrapConfig,
    extract_tasks,
    extraction_groups,
    open_workspace,
    workspace_config,
)

MODEL, RECALL, CONTEXTS, QUICK_LOOK, FILTER, ALL_CONTEXTS = ("model and SAE", "recall", "contexts", "quick look",
                                                              "interventions", "contexts (whole run)")


def extraction_stage(group: str) -> str:
    return f"extraction ({group})"


STAGES = (MODEL, extraction_stage(LOOK), RECALL, CONTEXTS, QUICK_LOOK, extraction_stage(TASK_POOL), FILTER,
          extraction_stage(GENERAL_POOL), ALL_CONTEXTS)
"""The first run's stages, in order (without ``method_stages``: the model and one extraction)."""


@dataclass
class Rates:
    """What the first run measured of itself, to estimate the stages still to come: extraction seconds per token,
    the filter's fixed cost (dev prefix, attribution screen) and seconds per edit (one null element or one
    (feature, kind, α) job on every dev item), and each context stage's seconds per feature."""

    tokens_left: dict[str, int] = field(default_factory=dict)
    s_per_token: float | None = None
    filter_fixed_s: float | None = None
    s_per_edit: float | None = None
    filter_edits: int | None = None
    s_per_context: float | None = None
    n_contexts: int = 0

    def estimate(self, stage: str) -> float | None:
        """Estimated seconds of ``stage`` (None while its rate is not measured)."""
        for group, tokens in self.tokens_left.items():
            if stage == extraction_stage(group):
                return None if self.s_per_token is None else tokens * self.s_per_token
        if stage == FILTER and None not in (self.filter_fixed_s, self.s_per_edit, self.filter_edits):
            return self.filter_fixed_s + self.s_per_edit * self.filter_edits
        if stage == ALL_CONTEXTS and self.s_per_context is not None:
            return self.s_per_context * self.n_contexts
        return None

    def tell(self, progress: ProgressFn, after: str) -> None:
        """Report the stages after ``after`` (the one beginning) with their estimates."""
        later = STAGES[STAGES.index(after) + 1:]
        report_plan(progress, [(s, self.estimate(s)) for s in later])


class _EditClock:
    """A progress callback wrapper that times the quick look: when its first null element or feature is stored
    (the fixed cost before it: the dev prefix, the attribution screen) and how many edits followed."""

    def __init__(self, progress: ProgressFn):
        self.progress, self.t0, self.first, self.edits = progress, time.perf_counter(), None, 0

    def __call__(self, done: int, total: int, message: str) -> None:
        if message.startswith(("intervene: null", "intervene: feature")):
            self.edits += 1
            self.first = self.first or time.perf_counter()
        self.progress(done, total, message)

    def stage(self, name: str, index: int = 0, of: int = 0) -> None:
        begin_stage(self.progress, name, index, of)

    def rates(self) -> tuple[float, float] | None:
        """(fixed seconds, seconds per edit after the first), or None with fewer than two edits timed."""
        if self.first is None or self.edits < 2:
            return None
        return self.first - self.t0, (time.perf_counter() - self.first) / (self.edits - 1)


def _stage(progress: ProgressFn, name: str, n_stages: int) -> ProgressFn:
    begin_stage(progress, name, STAGES.index(name) + 1, n_stages)
    return progress


def bootstrap(cfg: BootstrapConfig | None = None, store: ActivationStore | None = None,
              progress: ProgressFn | None = None) -> dict:
    """Prepare the workspace for ``cfg.tasks`` (default: its chosen model and SAE, :func:`workspace_config`);
    cached steps are skipped.

    With ``cfg.method_stages`` (default) the first task gets :data:`STAGES` in order: what recall reads is extracted
    first, the full filter runs once the task's own pool is extracted (so a task-only selection is live when F* is
    stored), the general records (every other task's pool, when ``mixed``) last. ``progress`` gets each stage's own
    counts; a callback with a stage notion (a job's) is told each stage as it begins and the estimates of the stages
    after it. Without ``method_stages`` every example is extracted in one stage after the model.

    Returns:
        a summary dict (keys, counts, timings per stage, SAE quality, per-task |C|, the quick look and |F*|).
    """
    store = store or ActivationStore()
    cfg = cfg or workspace_config(store)
    progress = progress or null_progress
    settings.apply_offline_env()
    t0 = time.perf_counter()
    staged = bool(cfg.method_stages and cfg.tasks)
    n_stages = len(STAGES) if staged else 2
    ws = open_workspace(cfg, store, _stage(progress, MODEL, n_stages))
    summary = {"examples_added": ws.examples_added, "model_key": ws.model_key, "sae_key": ws.sae_key,
               "site": ws.site, "sae_quality": {k: v for k, v in ws.sae_info["quality"].items() if k != "config"},
               "stages": {}, "tasks": {}}
    if not staged:
        res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting,
                            _stage(progress, extraction_stage(LOOK), n_stages))
        summary.update(_extraction_summary(res))
        progress(1, 1, "bootstrap: done")
        summary["seconds"] = round(time.perf_counter() - t0, 1)
        return summary
    task = cfg.tasks[0]
    rates = Rates(tokens_left=_tokens_left(ws, cfg))
    clock: dict[str, float] = {}

    def begin(name: str) -> ProgressFn:
        clock[name] = time.perf_counter()
        _stage(progress, name, n_stages)
        rates.tell(progress, name)  # the stages after this one, estimated from what is measured so far
        return progress

    def end(name: str) -> None:
        summary["stages"][name] = round(time.perf_counter() - clock[name], 1)

    extracted = []

    def extract(group: str):
        name = extraction_stage(group)
        res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting, begin(name), groups=(group,))
        extracted.append(res)
        if res.tokens and res.n_new and rates.s_per_token is None:
            rates.s_per_token = res.seconds / res.tokens  # measured once, on the first extraction that computed
        rates.tokens_left[group] = 0
        end(name)
        return res

    res = extract(LOOK)
    begin(RECALL)(0, 1, f"recall: {task}")
    recall = run_recall(ws, task, cfg.recall, cfg.extract)
    progress(1, 1, f"recall: {len(recall.candidates)} candidates of {task}")
    rates.filter_edits = _filter_edits(recall, int(ws.sae.cfg.d_sae), cfg)
    end(RECALL)
    ensure_contexts(ws, res.run_id, recall.candidates, progress=begin(CONTEXTS))
    rates.n_contexts = len(recall.candidates)
    rates.s_per_context = (time.perf_counter() - clock[CONTEXTS]) / max(1, len(recall.candidates))
    end(CONTEXTS)
    edit_clock = _EditClock(begin(QUICK_LOOK))
    look = run_quick_look(ws, task, recall, cfg.intervene, cfg.quick_look, edit_clock)
    if timed := edit_clock.rates():
        rates.filter_fixed_s, rates.s_per_edit = timed
    end(QUICK_LOOK)
    extract(TASK_POOL)
    effects = run_interventions(ws, task, recall, cfg.intervene, begin(FILTER))
    end(FILTER)
    res = extract(GENERAL_POOL)
    refresh_contexts(ws, res.run_id, recall.candidates, progress=begin(ALL_CONTEXTS))
    end(ALL_CONTEXTS)
    summary.update(_extraction_summary(*extracted))
    summary["tasks"][task] = {"recall_id": recall.recall_id, "candidates": len(recall.candidates),
                              "quick_look": look.effect_id, "quick_look_features": look.table.feature.tolist(),
                              "detectable": round(look.detectable, 5), "effect_id": effects.effect_id,
                              "validated": effects.kept}
    progress(1, 1, "bootstrap: done")
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    return summary


def _extraction_summary(*parts) -> dict:
    """One extraction run's summary over the stages that extracted it."""
    return {"run_id": parts[0].run_id, "extracted_examples": sum(r.n_examples for r in parts),
            "new_examples": sum(r.n_new for r in parts), "rows": sum(r.n_rows for r in parts),
            "extract_seconds": round(sum(r.seconds for r in parts), 1)}


def _tokens_left(ws, cfg: BootstrapConfig) -> dict[str, int]:
    """Tokens of each extraction group that the workspace's run has not stored yet."""
    run_id = ws.extraction_run_id(cfg.extract)
    out = {}
    for group, examples in extraction_groups(ws.store, cfg.tasks, cfg.pool_setting).items():
        stored = set(ws.store.token_counts(run_id, [e.id for e in examples]).example_id)
        todo = [e for e in examples if e.id not in stored]
        out[group] = sum(len(it.input_ids) for it in encode_examples(ws.tokenizer, todo, cfg.extract.max_length))
    return out


def _filter_edits(recall, d_sae: int, cfg: BootstrapConfig) -> int:
    """Edits the full filter measures: its null elements and, per candidate, each α (every α for the ``sweep_top``
    ones, α = 1 for the rest) and its ablation."""
    icfg = cfg.intervene
    cands = candidates_of(recall, d_sae)
    n_null = len(null_plan(cands.features, cands.density, icfg)) if icfg.null_size else 0
    n = len(cands.features)
    swept = min(icfg.sweep_top, n)
    return int(n_null + swept * len(icfg.alphas) + (n - swept) + (n if icfg.ablate else 0))
