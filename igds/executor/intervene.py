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
    EffectResult,
    InterventionConfig,
    exact_order,
    finish_effects,
    null_todo,
    primary_effect,
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
    """Measure (resumably) the null and every candidate's amplification and ablation effects on the dev NLL.

    Order: the attribution screen of all features, then the null (the yardstick), then the candidates
    strongest estimate first. Each null element and each feature is written in one transaction, so an
    interrupted run continues with what is not stored yet, without duplicates.

    Args:
        pool: opens the pool (:func:`igds.executor.registry.stage_pool`); opened only when something is left to
            measure.
        max_features: stop after measuring this many new candidate features (tests use it to interrupt).
        max_null: stop after this many new null elements; candidates wait until the null is complete.

    Raises:
        ExecutorError: the workers compute in another numeric mode than the run's key records (e.g. a GPU worker
            with bf16 autocast for a run keyed ``fp32``), or an item kept failing after its retries.
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    candidates, mean_act, density = [int(f) for f in cands.features], cands.mean_act, cands.density
    todo_null, n_null, n_plan = null_todo(store, effect_id, candidates, density, cfg, max_null)
    need_attr = not store.has_attribution(effect_id)
    n_features = len(set(candidates) - store.measured_features(effect_id))
    if not need_attr and todo_null.empty and (n_null < n_plan or n_features == 0):
        return finish_effects(store, effect_id, candidates, cfg, n_null >= n_plan and n_features == 0, t0)
    req = PoolRequest("intervene", max(len(todo_null), n_features, 1), progress=progress,
                      setup=[("prepare_dev", (list(dev_items), cfg.to_dict(), pad_id))])
    with pool(req) as workers:
        mode = ((store.run(effect_id) or {}).get("config") or {}).get("compute")
        for got in {r[1] for r in workers.ready}:
            if mode and got != mode:
                raise ExecutorError(f"the workers compute in {got} but intervention run {effect_id} is keyed "
                                    f"{mode}; set the run's precision or the workers' devices to match")
        if need_attr:
            progress(0, len(candidates), "intervene: attribution screen of all features")
            store.write_attribution(workers.call("attribution", mean_act).assign(effect_id=effect_id))
        ranked = exact_order(candidates, store.attribution(effect_id))
        sweep = set(ranked[: cfg.sweep_top])
        if not todo_null.empty:
            progress(n_null, n_plan, f"intervene: null {n_null}/{n_plan}, the yardstick")
            size = workers.call("null_size", candidates, mean_act)
            items = [(effect_id, part, size, mean_act) for part in workers.parts(todo_null)]
            for _, elements in workers.imap("null_elements", items):
                for eff, summ in elements:
                    if int(summ.null_id.iloc[0]) in store.measured_nulls(effect_id):
                        continue  # a retried chunk's elements already stored
                    store.write_null_effect(eff, summ)
                    n_null += 1
                    progress(n_null, n_plan, f"intervene: null {n_null}/{n_plan} ({summ.kind.iloc[0]}, effect "
                                             f"{summ.effect.iloc[0]:+.4f})")
        null_done = n_null >= n_plan
        done = store.measured_features(effect_id)
        todo = [f for f in ranked if f not in done] if null_done else []
        if max_features is not None:
            todo = todo[:max_features]
        n_done = len(done & set(candidates))
        items = [(effect_id, part, sweep, mean_act) for part in workers.parts(todo)]
        for _, features in workers.imap("feature_effects", items):
            for rows, summ in features:
                if write_feature(store, effect_id, rows, summ):
                    n_done += 1
                    store.update_run(effect_id, n_done=n_done, message=f"{n_done}/{len(candidates)} features")
                    progress(n_done, len(candidates), f"intervene: feature {int(summ.feature.iloc[0])} "
                                                      f"({n_done}/{len(candidates)}, effect "
                                                      f"{primary_effect(summ):+.4f})")
    return finish_effects(store, effect_id, candidates, cfg, null_done and n_done >= len(candidates), t0)


def write_feature(store, effect_id: str, rows: pd.DataFrame, summ: pd.DataFrame) -> bool:
    """One feature's rows in one transaction; False (nothing written) for a feature a retried chunk already
    stored."""
    if int(summ.feature.iloc[0]) in store.measured_features(effect_id):
        return False
    store.write_feature_effects(rows, summ)
    return True


def measure_here(store, effect_id: str, model, sae, site: str, dev_items: Sequence[EncodedItem], cands: Candidates,
                 cfg: InterventionConfig, pad_id: int, **kwargs) -> EffectResult:
    """:func:`measure_effects` on a local pool over a model (fp32 for the paper's edits) and SAE this process
    holds; ``kwargs``: ``progress``, ``max_features``, ``max_null``."""
    return measure_effects(store, effect_id, dev_items, cands, cfg, pad_id,
                           local_pool(model, sae, site), **kwargs)
