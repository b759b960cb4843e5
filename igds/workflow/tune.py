"""Fine-tune a stored selection and evaluate it: training, test metric, reference NLL, feature
amplification and the amplification–gain correlation, all recorded in the store with lineage."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from igds.data.records import Example
from igds.executor.config import executor_config
from igds.executor.evaluate import Evaluator
from igds.executor.pool import Loaded
from igds.executor.registry import stage_pool
from igds.method.selection import load_selection
from igds.progress import ProgressFn, null_progress, scaled
from igds.scope import CONTENT, TokenScope
from igds.store import ActivationStore
from igds.training.evaluate import (
    EvalConfig,
    amplification,
    restrict_activation,
)
from igds.training.finetune import FinetuneConfig, train_lora
from igds.training.results import (
    BASE_RUN,
    compute_correlations,
    make_eval_id,
    record_amplification,
    record_eval,
    record_finetune,
)
from igds.workflow.catalog import test_sample


def default_finetune_config() -> FinetuneConfig:
    """The paper defaults on a GPU, the small CPU profile elsewhere."""
    import torch

    return FinetuneConfig() if torch.cuda.is_available() else FinetuneConfig.cpu_profile()


def selection_examples(store: ActivationStore, selection_id: str) -> tuple[dict, list[Example]]:
    """A stored selection's metadata and its members as records."""
    info, members = load_selection(store, selection_id)
    return info, [Example(id=r.id, task=r.task, source=r.source, split=r.split, prompt=r.prompt,
                          response=r.response, meta=json.loads(r.meta or "{}")) for r in members.itertuples()]


def finetune_run_id(selection_id: str, cfg: FinetuneConfig) -> str:
    """Content id of fine-tuning one selection with one config (a rerun resumes the same run)."""
    return "ft-" + cfg.stage_key(selection_id)[:12]


def validated_features(store: ActivationStore, task: str) -> list[int]:
    """``F*`` of the task's latest intervention run (empty if none)."""
    from igds.workflow.stages import latest_effects

    try:
        return latest_effects(store, task).kept
    except ValueError:
        return []


@dataclass(frozen=True)
class EvalTarget:
    """The model an evaluation measures.

    Args:
        run_id: ``base`` or a fine-tune's run id.
        loaded: the model as this process holds it (a tuned ``PeftModel`` also evaluates its base weights), its
            tokenizer, the SAE the features belong to and its site.
        model_key: the store's key of the base model.
        sae_key: the SAE's key, for remote workers measuring features (None: the run's).
        adapter_dir: the tuned model's adapter folder, for remote workers (None: the one the fine-tune recorded).
    """

    run_id: str
    loaded: Loaded
    model_key: str | None
    sae_key: str | None = None
    adapter_dir: str | None = None


@dataclass(frozen=True)
class Measured:
    """The features whose activation an evaluation records: ``features`` (F*: the amplification), ``control`` (a
    density-matched random set, measured in the same pass) and ``scope``, the token scope the features were recalled
    in (the extraction run's: amplification reads the tokens recall read; None: :data:`~igds.scope.CONTENT`)."""

    features: Sequence[int] = ()
    control: Sequence[int] = ()
    scope: TokenScope | None = None


def evaluate_and_record(store: ActivationStore, target: EvalTarget, task: str, eval_cfg: EvalConfig,
                        measured: Measured = Measured(), progress: ProgressFn | None = None,
                        executor=None) -> dict:
    """Evaluate ``target`` on the task's test split, record metric, outputs and feature activation.

    For a fine-tuned model (``run_id != 'base'``) the base model is evaluated first when the store has
    no base evaluation (the adapter is disabled for it), and the amplification is recorded: of
    ``measured.features`` and, measured in the same pass, of ``measured.control``.

    Args:
        executor: where generation, NLL and feature activation run (an ``ExecutorConfig``); None: the workspace's
            executor setting. The evaluation runs on its pool (:class:`igds.executor.evaluate.Evaluator`): a local
            one serves ``target.loaded``; remote workers load the base model ``model_key`` (and the SAE
            ``sae_key``) from their stored specs and a tuned model's adapter; the records are the same.
    """
    from igds.data.tasks import get_task

    progress = progress or null_progress
    examples = test_sample(store, task, eval_cfg.n_examples, eval_cfg.sample_seed)
    # the base evaluation of exactly these settings (items, lengths, decoding): another one scored other items
    need_base = target.run_id == BASE_RUN or not store.has_eval(make_eval_id(BASE_RUN, task, "test", target.model_key,
                                                                             eval_cfg.to_dict()))
    loaded = target.loaded if measured.features else dataclasses.replace(target.loaded, sae=None)
    pool = stage_pool(executor or executor_config(store), loaded,
                      lambda: _worker_spec(store, target, bool(measured.features)))
    with Evaluator(pool, loaded.tokenizer, len(examples), tuned=target.run_id != BASE_RUN, progress=progress) as ev:
        return _evaluate_and_record(store, ev, target, get_task(task), examples, eval_cfg, measured, need_base,
                                    progress)


def _evaluate_and_record(store, ev, target: EvalTarget, spec, examples, eval_cfg, measured: Measured, need_base,
                         progress) -> dict:
    feats = list(dict.fromkeys([*map(int, measured.features), *map(int, measured.control)]))

    def activation(base: bool, prog=None) -> dict:
        return ev.feature_activation(examples, feats, eval_cfg.max_length, (measured.scope or CONTENT).positions,
                                     progress=prog, base=base)

    def one(rid: str, base: bool, prog) -> tuple[str, dict]:
        t0 = time.perf_counter()
        res = ev.evaluate(spec, examples, eval_cfg, scaled(prog, 0, 80, 100), base=base)
        res["seconds"] = time.perf_counter() - t0
        eid = record_eval(store, rid, res, "test", target.model_key, eval_cfg.to_dict())
        act = activation(base, scaled(prog, 80, 20, 100)) if measured.features else None
        return eid, {"result": res, "activation": act}

    out = {}
    if need_base:
        out["base"] = one(BASE_RUN, True, scaled(progress, 0, 50, 100))
    if target.run_id != BASE_RUN:
        eid, tuned = one(target.run_id, False, scaled(progress, 50, 50, 100))
        out["tuned"] = (eid, tuned)
        if measured.features:
            base_act = out["base"][1]["activation"] if "base" in out else activation(True)
            tuned_f, base_f = (restrict_activation(a, measured.features) for a in (tuned["activation"], base_act))
            amp = amplification(tuned_f, base_f)
            control = None
            if measured.control:
                tuned_c, base_c = (restrict_activation(a, measured.control) for a in (tuned["activation"], base_act))
                control = {"features": [int(f) for f in measured.control],
                           "amplification": amplification(tuned_c, base_c)["amplification"]}
            record_amplification(store, eid, target.run_id, spec.name, tuned_f, base_f, amp, control)
            out["amplification"] = amp["amplification"]
        compute_correlations(store, spec.name)
    progress(100, 100, "evaluate: done")
    return out


def _worker_spec(store: ActivationStore, target: EvalTarget, need_sae: bool):
    """What a remote worker loads to evaluate a run: the stored specs of its base model (the weights' dtype pinned to
    the loaded model's) and SAE, and for a tuned run its adapter folder."""
    from igds.executor.worker import spec_for
    from igds.workflow.workspace import weights_dtype

    run_id, sae_key, adapter_dir = target.run_id, target.sae_key, target.adapter_dir
    run = store.run(run_id) if run_id != BASE_RUN else None
    if need_sae and sae_key is None:
        sae_key = (run or {}).get("sae_key")
        if sae_key is None:
            raise ValueError("evaluating on remote workers with features needs the SAE's key (sae_key=) so that "
                             "the workers load the same SAE; or use the local executor")
    if run_id != BASE_RUN and adapter_dir is None:
        adapter_dir = store.scalar("SELECT adapter_path FROM finetunes WHERE run_id = ?", [run_id])
        if adapter_dir is None:
            raise ValueError(f"run {run_id} has no saved adapter that remote workers could load (adapter_dir=); "
                             "or use the local executor")
    spec = spec_for(store, target.model_key, sae_key, site=target.loaded.site,
                    dtype=weights_dtype(target.loaded.model), need_sae=need_sae)
    return dataclasses.replace(spec, adapter=str(adapter_dir) if adapter_dir else None)


def base_weights(model):
    """Context in which a ``PeftModel`` computes with its base weights (a no-op for a plain model)."""
    disable = getattr(model, "disable_adapter", None)
    return disable() if disable is not None else nullcontext()


def finetune_selection(store: ActivationStore, selection_id: str, ft_cfg: FinetuneConfig | None = None,
                       eval_cfg: EvalConfig | None = None, progress: ProgressFn | None = None,
                       on_metric=None, should_stop=None, load_workspace=None, measured: Measured | None = None,
                       executor=None) -> dict:
    """Train LoRA on a stored selection, then evaluate and record everything (resumable).

    ``load_workspace()`` returns a fresh workspace whose model the adapter may be injected into
    (default: the model and SAE the selection's lineage names, through
    :func:`igds.workflow.workspace.resolve_workspace`). Amplification is measured on ``measured`` (default: the
    task's validated features of its latest default-preset run, no control), in the token scope of the selection's
    extraction run unless ``measured.scope`` names one.

    With ``ft_cfg.workers > 1`` training runs data-parallel through Ray Train
    (:func:`igds.training.distributed.train_lora_ray`) on the Ray that ``executor`` (default: the workspace's
    executor setting) names: its address, or a local Ray with ``local_cpus``; an initialised Ray is reused.
    Each worker reserves ``cpus_per_actor`` CPUs and ``gpus_per_actor`` GPUs and loads the workspace's model
    from its spec. Evaluation follows the same executor (:func:`evaluate_and_record`): here, or on workers that
    load the base model from its spec and the adapter the training wrote into the run folder.

    Returns:
        run id, training summary, test score / NLL and amplification.
    """
    from igds.modeling.load import model_key_of
    from igds.workflow.workspace import resolve_workspace

    progress = progress or null_progress
    ft_cfg = ft_cfg or default_finetune_config()
    eval_cfg = eval_cfg or EvalConfig(n_examples=200)
    info, examples = selection_examples(store, selection_id)
    run_id = finetune_run_id(selection_id, ft_cfg)
    task = info["task"]
    lin = info.get("lineage") or {}
    # amplification is measured on the task's validated features for every run, whatever method made the
    # selection, so that runs are comparable points of one correlation; in the scope recall read them
    measured = measured or Measured(validated_features(store, task))
    if measured.scope is None:
        scope = TokenScope.of_run(store.run(lin["extract_run"]) if lin.get("extract_run") else None)
        measured = dataclasses.replace(measured, scope=scope)
    with run_lock(store.run_dir(run_id)):
        # the model and SAE the selection was made with (its lineage), whatever the workspace uses now
        ws = load_workspace() if load_workspace else resolve_workspace(store, model_key=lin.get("model_key"),
                                                                       sae_key=lin.get("sae_key"))
        base_key = model_key_of(ws.model)
        store.start_run(run_id, "finetune", {"task": task, "selection_id": selection_id,
                                             "finetune": ft_cfg.to_dict(), "eval": eval_cfg.to_dict()},
                        base_key, ws.sae_key, n_total=len(examples))
        res = train_selection(store, ws, examples, ft_cfg, store.run_dir(run_id), scaled(progress, 0, 70, 100),
                              on_metric, should_stop, executor)
        summary = res.to_dict()
        if res.resumed_from:  # training time accumulates over the attempts of a resumed run
            before = store.scalar("SELECT train_seconds FROM finetunes WHERE run_id = ?", [run_id])
            summary["train_seconds"] = (before or 0.0) + res.train_seconds
        record_finetune(store, run_id, task, summary, ft_cfg.to_dict(), selection_id, base_key)
        if res.status != "done":
            store.update_run(run_id, status="stopped", message=f"stopped at step {res.global_step}")
            return {"run_id": run_id, "status": res.status, "global_step": res.global_step}
        target = EvalTarget(run_id, Loaded(res.model, ws.tokenizer, ws.sae, ws.site), base_key, ws.sae_key,
                            res.adapter_dir)
        ev = evaluate_and_record(store, target, task, eval_cfg, measured, scaled(progress, 70, 30, 100), executor)
        eid, tuned = ev["tuned"]
        store.update_run(run_id, status="done", n_done=len(examples),
                         message=f"{tuned['result']['metric']} {tuned['result']['score']:.4f}")
    return {"run_id": run_id, "eval_id": eid, "status": "done", "train": res.to_dict(),
            "score": tuned["result"]["score"], "metric": tuned["result"]["metric"],
            "nll": tuned["result"].get("nll"), "amplification": ev.get("amplification")}


@contextmanager
def run_lock(run_dir: Path):
    """Exclusive lock on a run folder: two processes must never train the same run at once."""
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"run {run_dir.name} is already running in another process") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train_selection(store: ActivationStore, ws, examples: Sequence[Example], ft_cfg: FinetuneConfig, run_dir: Path,
                    progress: ProgressFn | None = None, on_metric=None, should_stop=None, executor=None):
    """Train LoRA on ``examples`` into ``run_dir``: in this process (``ft_cfg.workers == 1``), or data-parallel on
    Ray Train workers that load ``ws.model_spec`` themselves (``ft_cfg.workers > 1``, see :func:`finetune_selection`).

    Returns:
        The :class:`igds.training.finetune.FinetuneResult`; its ``model`` is ``ws.model`` with the adapter.
    """
    if ft_cfg.workers == 1:
        return train_lora(ws.model, ws.tokenizer, examples, ft_cfg, run_dir, progress, on_metric, should_stop,
                          resume=True)
    from igds.executor.runtime import connect, worker_env
    from igds.modeling.load import model_key_of
    from igds.training.distributed import train_lora_ray

    exe = executor or executor_config(store)
    connect(exe)
    return train_lora_ray(ws.model_spec, examples, ft_cfg, run_dir, cpus_per_worker=exe.cpus_per_actor,
                          gpus_per_worker=exe.gpus_per_actor, progress=progress, on_metric=on_metric,
                          should_stop=should_stop, resume=True, base_model=ws.model, model_key=model_key_of(ws.model),
                          worker_env=worker_env())
