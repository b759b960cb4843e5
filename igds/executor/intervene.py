"""Interventions on Ray actors: every actor caches the dev prefix once (``prepare_dev``), then the null elements and
the candidate features are split over the actors in contiguous chunks (strongest candidates first); the driver
writes each element's and each feature's rows in one transaction, as the local executor does, so an interrupted run
resumes with what is not stored yet."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from igds.executor.config import ExecutorConfig
from igds.executor.pool import WorkerPool
from igds.executor.runtime import ExecutorError
from igds.executor.worker import WorkerSpec, spec_for
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

CHUNKS_PER_ACTOR = 2  # tasks per actor and phase: finer chunks report progress sooner but replay smaller batches


def chunks(seq: Sequence, n: int) -> list:
    """``seq`` cut into at most ``n`` contiguous, nearly equal, non-empty pieces (order kept)."""
    size = math.ceil(len(seq) / max(1, n)) if len(seq) else 1
    return [seq[i : i + size] for i in range(0, len(seq), size)]


def measure_effects_ray(store, effect_id: str, site: str, dev_items: Sequence[EncodedItem],
                        candidates: Sequence[int], mean_act: np.ndarray, cfg: InterventionConfig, pad_id: int,
                        executor: ExecutorConfig, progress: ProgressFn | None = None,
                        max_features: int | None = None, *, density: np.ndarray | None = None,
                        max_null: int | None = None, spec: WorkerSpec | None = None,
                        dtype: str | None = "float32") -> EffectResult:
    """:func:`igds.method.intervene.measure_effects` with the attribution screen, the null and the candidates
    computed by Ray actors (each loads the run's model and SAE from their stored specs, in ``dtype``).

    Effects equal the local executor's up to float rounding: a chunk of features replays its rows in batches of
    its own, and a batch's composition changes the last bits of a matmul.

    Raises:
        ExecutorError: the actors run in another numeric mode than the run's key records (e.g. a GPU actor with bf16
            autocast for a run keyed ``fp32``), or a task kept failing after ``executor.max_retries`` retries.
    """
    progress = progress or null_progress
    t0 = time.perf_counter()
    candidates = [int(f) for f in candidates]
    run = store.run(effect_id) or {}
    todo_null, n_null, n_plan = null_todo(store, effect_id, candidates, density, cfg, max_null)
    need_attr = not store.has_attribution(effect_id)
    n_features = len(set(candidates) - store.measured_features(effect_id))
    if not need_attr and todo_null.empty and (n_null < n_plan or n_features == 0):
        return finish_effects(store, effect_id, candidates, cfg, n_null >= n_plan and n_features == 0, t0)
    if spec is None:
        spec = spec_for(store, run.get("model_key"), run.get("sae_key"), site, dtype)
    n_tasks = max(len(todo_null), n_features, 1)
    with WorkerPool(executor, spec, n_tasks, setup=[("prepare_dev", (list(dev_items), cfg.to_dict(), pad_id))],
                    progress=progress, stage="intervene") as pool:
        mode = (run.get("config") or {}).get("compute")
        for got in {r[1] for r in pool.ready}:
            if mode and got != mode:
                raise ExecutorError(f"the Ray actors compute in {got} but intervention run {effect_id} is keyed "
                                    f"{mode}; set the run's precision or the actors' devices to match")
        if need_attr:
            progress(0, len(candidates), "intervene: attribution screen of all features")
            est = pool.call("attribution", mean_act)
            store.write_attribution(est.assign(effect_id=effect_id))
        ranked = exact_order(candidates, store.attribution(effect_id))
        sweep = set(ranked[: cfg.sweep_top])
        if not todo_null.empty:
            size = pool.call("null_size", candidates, mean_act)
            parts = chunks(todo_null, pool.n * CHUNKS_PER_ACTOR)
            for _, out in pool.imap_unordered("null_elements", [(effect_id, p, size, mean_act) for p in parts]):
                for eff, summ in out:
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
        parts = chunks(todo, pool.n * CHUNKS_PER_ACTOR)
        for _, out in pool.imap_unordered("feature_effects", [(effect_id, p, sweep, mean_act) for p in parts]):
            for rows, summ in out:
                write_feature(store, effect_id, rows, summ)
                n_done += 1
                store.update_run(effect_id, n_done=n_done, message=f"{n_done}/{len(candidates)} features")
                progress(n_done, len(candidates), f"intervene: feature {int(summ.feature.iloc[0])} "
                                                  f"({n_done}/{len(candidates)}, effect {primary_effect(summ):+.4f})")
    return finish_effects(store, effect_id, candidates, cfg, null_done and n_done >= len(candidates), t0)


def write_feature(store, effect_id: str, rows: pd.DataFrame, summ: pd.DataFrame) -> None:
    """One feature's rows in one transaction (a retried chunk's features already stored are skipped)."""
    if int(summ.feature.iloc[0]) in store.measured_features(effect_id):
        return
    store.write_feature_effects(rows, summ)
