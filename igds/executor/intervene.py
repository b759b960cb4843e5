"""Interventions' one driver: every worker caches the dev prefix once (``prepare_dev``, a pool setup call), then the
attribution screen, the null elements and the candidate features run as pool items (strongest candidates first);
the driver writes each element's and each feature's rows in one transaction, so an interrupted run resumes with
what is not stored yet. A local pool runs each phase as one item in this process and streams its rows feature by
feature; a remote pool cuts each phase into chunks (a chunk replays its rows in batches of its own, so effects agree
up to float rounding)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from igds.executor.pool import ExecutorError, PoolRequest
from igds.executor.registry import Opener, local_pool
from igds.method.intervene import (
    ABLATE,
    AMPLIFY,
    PRIMARY_ALPHA,
    EffectResult,
    InterventionConfig,
    Job,
    dev_sample,
    effect_matrices,
    exact_order,
    finish_effects,
    futile,
    load_effects,
    look_bounds,
    measured_items,
    null_at,
    null_plan,
    primary_effect,
    summarize_effect,
)
from igds.modeling.batching import EncodedItem
from igds.progress import ProgressFn, null_progress


@dataclass(frozen=True)
class Candidates:
    """What an intervention run measures: the recall candidates, and over every SAE feature ``mean_act`` (ā, the
    mean activation when firing on probe, ``[d_sae]``) and ``density`` (token density ``tok_freq_task``, for the
    density-matched null; required when ``cfg.null_features > 0``)."""

    features: Sequence[int]
    mean_act: np.ndarray
    density: np.ndarray | None = None


def measure_effects(store, effect_id: str, dev_items: Sequence[EncodedItem], cands: Candidates,
                    cfg: InterventionConfig, pad_id: int, pool: Opener, progress: ProgressFn | None = None,
                    max_features: int | None = None, max_null: int | None = None) -> EffectResult:
    """Measure (resumably) the null and the candidates' α = 1 effects look by look, then the kept features' sweep and
    ablation.

    Order: the attribution screen of all features; the dev items (``cfg.dev_items`` of them, none cut:
    :func:`~igds.method.intervene.dev_sample`) in looks (``cfg.looks``); in each look the null elements (the
    yardstick) on the look's items, then every candidate still running. After a look a candidate that can no longer
    reach the threshold stops (:func:`~igds.method.verdict.futile`); when none runs on, neither does the null. A
    candidate firing on fewer than ``cfg.min_fired`` dev items is stored as untestable and never replayed. Each
    element's look is written in one transaction (its summary recomputed over every item so far), so an interrupted
    run continues with what is not stored yet, without duplicates.

    Args:
        pool: opens the pool (:func:`igds.executor.registry.stage_pool`); opened only when something is left to
            measure.
        max_features: stop after this many new (candidate, look) measurements (tests use it to interrupt; the quick
            look measures the first ``max_features`` candidates of its one look).
        max_null: stop after this many new (null element, look) measurements; candidates wait for their look's null.

    Raises:
        ExecutorError: the workers compute in another numeric mode than the run's key records (e.g. a GPU worker
            with bf16 autocast for a run keyed ``fp32``), or an item kept failing after its retries.
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    candidates, mean_act, density = [int(f) for f in cands.features], cands.mean_act, cands.density
    items, dropped = dev_sample(dev_items, cfg)
    if not items:
        raise ValueError(f"none of the {len(dev_items)} dev items fits the run's length rule (max_length "
                         f"{cfg.max_length} tokens; longer items are dropped, never cut): raise max_length")
    if dropped:
        store.update_run(effect_id, message=f"{dropped} dev items longer than {cfg.max_length} tokens dropped")
    if (store.run(effect_id) or {}).get("status") == "done":
        return load_effects(store, effect_id, candidates, cfg)
    bounds = look_bounds(len(items), cfg)
    req = PoolRequest("intervene", max(len(candidates), 1), progress=progress,
                      setup=[("prepare_dev", (list(items), cfg.to_dict(), pad_id))])
    budget = {"null": max_null, "features": max_features}
    with pool(req) as workers:
        mode = ((store.run(effect_id) or {}).get("config") or {}).get("compute")
        for got in {r[1] for r in workers.ready}:
            if mode and got != mode:
                raise ExecutorError(f"the workers compute in {got} but intervention run {effect_id} is keyed "
                                    f"{mode}; set the run's precision or the workers' devices to match")
        if not store.has_attribution(effect_id):
            progress(0, len(candidates), "intervene: attribution screen of all features")
            store.write_attribution(workers.call("attribution", mean_act).assign(effect_id=effect_id))
        ranked = exact_order(candidates, store.attribution(effect_id))
        firing = workers.call("firing")
        n_fired = dict(zip(firing.feature.astype(int), firing.n_fired.astype(int), strict=True))
        plan = null_plan(candidates, density, cfg, firing)
        size = workers.call("null_size", candidates, mean_act) if cfg.null_directions else 0.0
        _store_untestable(store, effect_id, [c for c in ranked if n_fired[c] < cfg.min_fired], n_fired)
        tested = [c for c in ranked if n_fired[c] >= cfg.min_fired]
        run = _Looks(store, effect_id, workers, mean_act, cfg, progress)
        complete = run.looks(plan, tested, bounds, size, budget)
        if complete:
            kept = load_effects(store, effect_id, candidates, cfg).kept
            _run_extras(store, effect_id, workers, kept, len(items), mean_act, cfg, progress)
    return finish_effects(store, effect_id, candidates, cfg, complete, t0)


def _store_untestable(store, effect_id: str, features: Sequence[int], n_fired: dict[int, int]) -> None:
    """A summary row (no effect, ``n_fired``) for each untestable candidate not stored yet: shown, never replayed."""
    done = store.measured_features(effect_id)
    for f in features:
        if f not in done:
            store.write_feature_effects(
                pd.DataFrame(columns=["effect_id", "feature", "kind", "alpha", "example_id", "nll_base", "nll_int"]),
                pd.DataFrame([{"effect_id": effect_id, "feature": f, "kind": AMPLIFY, "alpha": PRIMARY_ALPHA, "n": 0,
                               "n_fired": n_fired[f], "effect": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                               "p_value": np.nan, "seconds": 0.0}]))


def _running(store, effect_id: str, tested: Sequence[int], lo: int, rows: dict[int, int],
             cfg: InterventionConfig) -> list[int]:
    """The candidates that run on after the look at ``lo`` items: those measured further already, and those
    measured to ``lo`` that can still reach the threshold (recomputed from the store, so a resumed run decides
    alike)."""
    if lo == 0:
        return list(tested)
    cand, null, _, _ = effect_matrices(store, effect_id, tested, cfg.null_seed)
    seen = measured_items(cand)
    out = []
    for i, c in enumerate(tested):
        ran_on = rows.get(c, 0) > lo
        if ran_on or (rows.get(c, 0) == lo and not futile(cand[i, : seen[i]], null_at(null, seen[i], cfg.null_fit),
                                                          cfg.fdr, cfg.futility)):
            out.append(c)
    return out


@dataclass(frozen=True)
class _Looks:
    """One run's measuring context: where rows go, who computes them, with what."""

    store: object
    effect_id: str
    workers: object
    mean_act: np.ndarray
    cfg: InterventionConfig
    progress: ProgressFn

    def looks(self, plan: pd.DataFrame, tested: Sequence[int], bounds: Sequence[int], size: float,
              budget: dict) -> bool:
        """Every look's null and running candidates; True when the looks are complete (not stopped by a budget)."""
        return _run_looks(self, plan, tested, bounds, size, budget)


def _run_looks(ctx: _Looks, plan: pd.DataFrame, tested: Sequence[int], bounds: Sequence[int], size: float,
               budget: dict) -> bool:
    store, effect_id, workers, mean_act, cfg, progress = (ctx.store, ctx.effect_id, ctx.workers, ctx.mean_act,
                                                          ctx.cfg, ctx.progress)
    lo = 0
    for k, hi in enumerate(bounds):
        rows = dict(zip(*_amp_rows(store, effect_id), strict=True))
        running = _running(store, effect_id, tested, lo, rows, cfg)
        if lo and not running:
            break
        tag = f"look {k + 1}/{len(bounds)} (items {lo + 1}–{hi})"
        null_rows = store.measured_null_rows(effect_id)
        # a stopped candidate's placed directions stop with it; the null at a look is what was measured through it
        live = plan[(plan.kind != "placed") | plan.matched.isin(running)] if lo else plan
        todo = live[[null_rows.get(int(i), 0) < hi for i in live.null_id]]
        if budget["null"] is not None:
            todo = todo.head(budget["null"])
        if not todo.empty:
            progress(0, len(todo), f"intervene: null {tag}, the yardstick: {len(todo)} elements")
        items = [(effect_id, part, size, mean_act, (lo, hi)) for part in workers.parts(todo)]
        n = 0
        for _, elements in workers.imap("null_elements", items):
            for eff, summ in elements:
                write_null(store, effect_id, eff, summ)
                n += 1
                progress(n, len(todo), f"intervene: null {tag}: {n}/{len(todo)} ({summ.kind.iloc[0]}, effect "
                                       f"{summ.effect.iloc[0]:+.4f})")
        if budget["null"] is not None:
            budget["null"] -= n
            if budget["null"] <= 0 or len(todo) > n:
                return False
        todo_f = [c for c in running if rows.get(c, 0) < hi]
        if budget["features"] is not None:
            todo_f = todo_f[: budget["features"]]
        n = _measure_features(ctx, todo_f, [(AMPLIFY, PRIMARY_ALPHA)], (lo, hi),
                              lambda n, f, e, tag=tag, m=len(todo_f), r=len(running):
                              f"intervene: {tag}: feature {f} ({n}/{m} of {r} running, effect {e:+.4f})")
        if budget["features"] is not None:
            budget["features"] -= n
            if len([c for c in running if rows.get(c, 0) < hi]) > n:
                return False
        lo = hi
    return True


def _amp_rows(store, effect_id: str) -> tuple[list[int], list[int]]:
    m = store.measured_rows(effect_id)
    m = m[(m.kind == AMPLIFY) & (m.alpha == PRIMARY_ALPHA)]
    return [int(f) for f in m.feature], [int(n) for n in m.n_rows]


def _run_extras(store, effect_id: str, workers, kept: Sequence[int], n_items: int, mean_act,
                cfg: InterventionConfig, progress: ProgressFn) -> None:
    """The kept features' (F*'s, strongest ``sweep_top``) other α and ablation over every dev item."""
    kinds = [(AMPLIFY, float(a)) for a in cfg.alphas if a != PRIMARY_ALPHA] + ([(ABLATE, 0.0)] if cfg.ablate else [])
    done = store.measured_rows(effect_id)
    have = {(int(f), k, float(a)) for f, k, a in zip(done.feature, done.kind, done.alpha, strict=True)}
    todo = [f for f in kept[: cfg.sweep_top] if any((f, k, a) not in have for k, a in kinds)]
    if not kinds or not todo:
        return
    _measure_features(_Looks(store, effect_id, workers, mean_act, cfg, progress), todo, kinds, (0, n_items),
                      lambda n, f, e: f"intervene: F* dose–response and ablation: feature {f} ({n}/{len(todo)})")


def _measure_features(ctx: _Looks, features: Sequence[int], kinds: list, span: tuple[int, int], say) -> int:
    """Run ``kinds`` of every feature on the dev rows ``span``, writing each feature as it finishes; returns how many
    were written. ``say(n, feature, α = 1 effect)`` words the progress line."""
    items = [(ctx.effect_id, part, kinds, ctx.mean_act, span) for part in ctx.workers.parts(features)]
    n = 0
    for _, done in ctx.workers.imap("feature_effects", items):
        for eff, summ in done:
            write_feature(ctx.store, ctx.effect_id, eff, summ)
            n += 1
            ctx.progress(n, len(features), say(n, int(summ.feature.iloc[0]), primary_effect(summ)))
    return n


def _merged_summary(job_rows: pd.DataFrame, summ: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Summary rows recomputed over every stored item of each job (``job_rows``: stored + new per-example rows)."""
    out = []
    for r in summ.itertuples():
        mine = job_rows
        for k in key:
            mine = mine[mine[k] == getattr(r, k)]
        job = Job(int(r.feature), r.kind if "kind" in key else AMPLIFY, float(getattr(r, "alpha", PRIMARY_ALPHA)))
        s = summarize_effect(job, mine.nll_base.to_numpy(dtype=float), mine.nll_int.to_numpy(dtype=float),
                             int(r.n_fired))
        row = r._asdict()
        row.pop("Index", None)
        row.update({k: s[k] for k in ("n", "effect", "ci_low", "ci_high", "p_value")})
        out.append(row)
    return pd.DataFrame(out, columns=summ.columns)


def write_null(store, effect_id: str, eff: pd.DataFrame, summ: pd.DataFrame) -> bool:
    """One null element's look in one transaction, its summary over every stored item; False (nothing written) when
    a retried chunk already stored these items."""
    null_id = int(summ.null_id.iloc[0])
    old = store.null_rows(effect_id, null_id)
    if set(eff.example_id) & set(old.example_id):
        return False
    rows = pd.concat([old, eff]) if len(old) else eff
    merged = _merged_summary(rows.assign(feature=int(summ.feature.iloc[0])), summ, ["feature"])
    store.write_null_effect(eff, merged)
    return True


def write_feature(store, effect_id: str, eff: pd.DataFrame, summ: pd.DataFrame) -> bool:
    """One feature's look in one transaction, its summaries over every stored item; False (nothing written) when a
    retried chunk already stored these items."""
    old = store.feature_rows(effect_id, int(summ.feature.iloc[0]))
    key = set(zip(eff.kind, eff.alpha, eff.example_id, strict=True))
    if key & set(zip(old.kind, old.alpha, old.example_id, strict=True)):
        return False
    rows = pd.concat([old, eff]) if len(old) else eff
    store.write_feature_effects(eff, _merged_summary(rows, summ, ["kind", "alpha"]))
    return True


def measure_here(store, effect_id: str, model, sae, site: str, dev_items: Sequence[EncodedItem], cands: Candidates,
                 cfg: InterventionConfig, pad_id: int, **kwargs) -> EffectResult:
    """:func:`measure_effects` on a local pool over a model (fp32 for the paper's edits) and SAE this process
    holds; ``kwargs``: ``progress``, ``max_features``, ``max_null``."""
    return measure_effects(store, effect_id, dev_items, cands, cfg, pad_id,
                           local_pool(model, sae, site), **kwargs)
