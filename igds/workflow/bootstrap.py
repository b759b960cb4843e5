"""The first run, end to end, least first: corpus → model → shipped SAE → extraction of what recall reads (probe,
reference, dev) → recall → top-activating contexts of every candidate → a quick look at the strongest candidates →
extraction of the task's pool → the full filter (F*) → extraction of the general records (the mixed pool) → contexts
over the whole run. So the dashboard opens on recalled features with contexts within minutes, on a quick look at
their effects soon after, and on a live task-only selection as soon as F* is stored, on any CPU; the rest follows.
The vetting queue's token highlights are a job of their own, offered on the Selection page. Every step is cached by
content key: a second run is a no-op and an interrupted one resumes.

The run announces its :data:`STAGES` (:func:`igds.progress.begin_stage`) and, as each begins, the stages after it
with their estimated durations (:func:`igds.progress.report_plan`), from rates it measured itself: extraction tokens
per second in the first extraction, the filter's seconds per replayed dev row in the quick look. So every page can
say what is still being prepared and when it will be ready."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from igds import settings
from igds.method.intervene import InterventionConfig, null_plan
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
    the filter's fixed cost (dev prefix, attribution screen) and seconds per replayed dev row (an edit replays only
    the dev items it changes, so a rare feature costs a few rows and a random direction all of them; see
    :func:`filter_rows`), and the context stage's seconds per feature."""

    tokens_left: dict[str, int] = field(default_factory=dict)
    s_per_token: float | None = None
    filter_fixed_s: float | None = None
    s_per_row: float | None = None
    filter_rows: float | None = None
    s_per_context: float | None = None
    n_contexts: int = 0

    def estimate(self, stage: str) -> float | None:
        """Estimated seconds of ``stage`` (None while its rate is not measured)."""
        for group, tokens in self.tokens_left.items():
            if stage == extraction_stage(group):
                return None if self.s_per_token is None else tokens * self.s_per_token
        if stage == FILTER and None not in (self.filter_fixed_s, self.s_per_row, self.filter_rows):
            return self.filter_fixed_s + self.s_per_row * self.filter_rows
        if stage == ALL_CONTEXTS and self.s_per_context is not None:
            return self.s_per_context * self.n_contexts
        return None

    def tell(self, progress: ProgressFn, after: str) -> None:
        """Report the stages after ``after`` (the one beginning) with their estimates."""
        later = STAGES[STAGES.index(after) + 1:]
        report_plan(progress, [(s, self.estimate(s)) for s in later])


class _NullClock:
    """A progress callback wrapper that times an intervention run's two parts: its fixed cost (the dev prefix and the
    attribution screen, up to its first ``intervene: null`` report) and the edits after it."""

    def __init__(self, progress: ProgressFn):
        self.progress, self.t0, self.null_start = progress, time.perf_counter(), None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.null_start is None and message.startswith("intervene: null"):
            self.null_start = time.perf_counter()
        self.progress(done, total, message)

    def split(self) -> tuple[float, float] | None:
        """(fixed seconds, seconds of the edits), or None when the run measured no null (it was stored already)."""
        if self.null_start is None:
            return None
        return self.null_start - self.t0, time.perf_counter() - self.null_start


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
        begin_stage(progress, "extraction", 2, n_stages)  # every group at once
        res = extract_tasks(ws, cfg.tasks, cfg.extract, cfg.pool_setting, progress)
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
    end(RECALL)
    ensure_contexts(ws, res.run_id, recall.candidates, progress=begin(CONTEXTS))
    rates.n_contexts = len(recall.candidates)
    rates.s_per_context = (time.perf_counter() - clock[CONTEXTS]) / max(1, len(recall.candidates))
    end(CONTEXTS)
    null_clock = _NullClock(begin(QUICK_LOOK))
    look = run_quick_look(ws, task, recall, cfg.intervene, cfg.quick_look, null_clock)
    if timed := null_clock.split():
        look_rows, rates.filter_rows = filter_rows(ws.store, res.run_id, task, recall, look, cfg.intervene,
                                                   int(ws.sae.cfg.d_sae))
        rates.filter_fixed_s, rates.s_per_row = timed[0], timed[1] / max(1, look_rows)
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


def filter_rows(store: ActivationStore, run_id: str, task: str, recall, look, cfg: InterventionConfig,
                d_sae: int) -> tuple[int, float]:
    """Dev rows the quick look replayed, and an estimate of those the full filter will replay.

    Each element replays, on each look's items, the dev items its edit changes: a feature (null or candidate) and a
    placed direction the items where the feature (or its candidate) fires. The share of dev items each feature
    changes is measured for what the quick look ran and, for the rest, read from the store's aggregates (the dev
    items where it fires in the extraction's scope) scaled by the median ratio of the two among the features the
    quick look measured. Every element runs the first look; the later looks run the null features, and each
    candidate the quick look saw beyond its small null with its placed directions (the likely survivors of the
    futility looks); the kept features' sweep and ablation are counted for those survivors.

    Args:
        look: the quick look (:class:`igds.method.quicklook.QuickLook`).

    Returns:
        ``(quick look rows, full filter rows)``.
    """
    from igds.workflow.catalog import task_split

    null, summ = store.null_summary(look.effect_id), store.effect_summary(look.effect_id)
    n_look = max(look.n_items, 1)
    feats = null[null.kind == "feature"]
    share = {int(f): n / n_look for f, n in [*zip(feats.feature, feats.n_fired, strict=True),
                                             *zip(summ.feature, summ.n_fired, strict=True)]}
    cands = candidates_of(recall, d_sae)
    plan = null_plan(cands.features, cands.density, cfg)
    null_feats = [int(f) for f in plan[plan.kind == "feature"].feature]
    dev = [e.id for e in task_split(store, task, "dev")]
    n_dev = min(cfg.dev_items or len(dev), len(dev))
    firing: dict[int, int] = {}
    for chunk in store.iter_pool_activations(run_id, dev, [*cands.features, *null_feats, *share]):
        for f in chunk["feature"][chunk["max_act"] > 0]:
            firing[int(f)] = firing.get(int(f), 0) + 1
    ratios = [share[f] / (firing[f] / len(dev)) for f in share if firing.get(f)]
    scale = float(np.median(ratios)) if ratios else 1.0

    def per_item(f: int) -> float:
        return share[f] if f in share else scale * firing.get(f, 0) / max(len(dev), 1)

    first = min([*cfg.looks, n_dev])
    survivors = [int(f) for f in look.table[look.table.beyond_null].feature]
    later = (n_dev - first) if survivors else 0
    extras = (len(cfg.alphas) - 1 + (1 if cfg.ablate else 0)) * n_dev
    full = (sum(per_item(f) for f in null_feats) * (first + later)
            + sum(per_item(c) for c in cands.features) * (1 + cfg.null_placed) * first
            + sum(per_item(c) * ((1 + cfg.null_placed) * later + extras) for c in survivors))
    return int(null.n_fired.sum() + summ.n_fired.sum()), full
