"""The job kinds IGDS registers: every long stage can run as a background job (``identity``, validating a model
and SAE, training a ``train`` SAE first, included), plus ``count``, a toy kind for tests and demos, and ``matmul``,
an all-cores torch workload for ``bench/job_queue.py``.

The stage kinds are heavy (they wait for a slot of the local queue, :mod:`igds.jobs.queue`); ``count`` is light
unless its params say ``{"heavy": true}``. ``select`` is heavy although a pure-SQL selection would not need a
slot: its baselines may run the model (NLL tables), and a kind's need is declared once, not guessed per call.

Each function takes JSON params and a :class:`~igds.jobs.context.JobContext` and calls the same library
code as the CLI, with the context's progress callback. Stages are resumable on their own (shards,
per-feature rows, trainer checkpoints), so resuming a dead job simply runs the function again. Heavy
imports stay inside the functions: registering the kinds costs nothing.
"""

from __future__ import annotations

import time

from igds.jobs.context import JobContext
from igds.jobs.folder import read_json, write_json
from igds.jobs.registry import register_job_kind
from igds.method.config import InterventionConfig, RecallConfig
from igds.modeling.config import ModelSpec, SaeSpec
from igds.progress import begin_stage, report_plan
from igds.scope import pool_of
from igds.training.config import EvalConfig


def _count(params: dict, ctx: JobContext) -> dict:
    """Toy kind: count to ``steps`` sleeping ``sleep`` s per step, checkpointing each step; ``fail_at`` raises.
    With ``stages`` (names), it counts ``steps`` in each named stage, announced with :func:`begin_stage`; with
    ``plan`` it also reports the later stages' durations (:func:`report_plan`)."""
    steps, sleep = int(params.get("steps", 10)), float(params.get("sleep", 0.1))
    stages = list(params.get("stages") or [])
    ckpt = ctx.checkpoint_dir / "step.json"
    step = read_json(ckpt)["step"] if ckpt.exists() else 0
    if step:
        ctx.log(f"resuming after step {step}")
    while step < steps * max(1, len(stages)):
        if ctx.should_stop():
            ctx.log(f"cancelled after step {step}")
            return {"count": step, "stopped": True}
        i, k = divmod(step, steps)
        if stages and (k == 0 or ctx.status.get("stage") is None):
            begin_stage(ctx.progress, stages[i], i + 1, len(stages))
            if params.get("plan"):  # the later stages' estimates, as a first run reports them
                report_plan(ctx.progress, [(name, steps * sleep) for name in stages[i + 1:]])
        ctx.log(f"step {step + 1} started")  # after the check: a cancel from now on waits for the next one
        time.sleep(sleep)
        step += 1
        if params.get("fail_at") == step:
            raise RuntimeError(f"planted failure at step {step}")
        ctx.metric("step", step, step)
        write_json(ckpt, {"step": step})
        ctx.progress(k + 1, steps, f"{stages[i] if stages else 'count'}: {k + 1}/{steps}")
    return {"count": step}


def _bootstrap(params: dict, ctx: JobContext) -> dict:
    from igds.workflow.bootstrap import bootstrap
    from igds.workflow.workspace import BootstrapConfig

    ctx.log("bootstrap: model, SAE and activation store")
    return bootstrap(BootstrapConfig.from_dict(params["config"]) if params.get("config") else None,
                     progress=ctx.progress)


def _workspace(params: dict, ctx: JobContext):
    """The config a job was given, else the workspace's chosen model and SAE (``igds workspace use``)."""
    from igds.store import ActivationStore
    from igds.workflow.workspace import BootstrapConfig, open_workspace, workspace_config

    store = ActivationStore()
    cfg = BootstrapConfig.from_dict(params["config"]) if params.get("config") else workspace_config(store)
    return open_workspace(cfg, store, progress=ctx.progress), cfg


def _extract(params: dict, ctx: JobContext) -> dict:
    from igds.workflow.workspace import extract_tasks

    ws, cfg = _workspace(params, ctx)
    pool = params.get("pool_setting", cfg.pool_setting)
    res = extract_tasks(ws, params.get("tasks", list(cfg.tasks)), cfg.extract, pool, ctx.progress)
    return dict(res.__dict__)


def _recall(params: dict, ctx: JobContext) -> dict:
    """Frequency recall of ``task`` (``recall``: a ``RecallConfig`` dict) over the extraction run ``extract_run``,
    with the model and SAE that run was made with (the logit lens of the SAE's features is computed once, here)."""
    from igds.store import ActivationStore
    from igds.workflow.explore import extract_setup
    from igds.workflow.stages import run_recall
    from igds.workflow.workspace import resolve_workspace

    store = ActivationStore()
    extract_cfg, _, _ = extract_setup(store, params["extract_run"])  # refuses a run that is no extraction run
    ws = resolve_workspace(store, run_id=params["extract_run"], progress=ctx.progress)
    ctx.log(f"recall: {params['task']} over extraction run {params['extract_run']}")
    res = run_recall(ws, params["task"], RecallConfig.from_dict(params.get("recall", {})), extract_cfg)
    ctx.log(f"recall: {len(res.candidates)} candidates (run {res.recall_id})")
    return {"recall_id": res.recall_id, "n_candidates": len(res.candidates)}


def _steer(params: dict, ctx: JobContext) -> dict:
    """Greedy generation from ``prompt`` unmodified and with ``feature`` amplified or ablated (``kind``, ``alpha``,
    ``mean_act``), with the model and SAE of the run ``run_id`` (an intervention run): ``{"base", "steered"}``."""
    from igds.method.steer import generate_steered
    from igds.store import ActivationStore
    from igds.workflow.workspace import resolve_workspace

    ws = resolve_workspace(ActivationStore(), run_id=params["run_id"], progress=ctx.progress)
    ctx.progress(0, 1, f"generating with f{params['feature']} {params['kind']}ed (α = {params['alpha']:g})")
    out = generate_steered(ws.model, ws.tokenizer, ws.sae, ws.site, params["prompt"], int(params["feature"]),
                           params["kind"], float(params["alpha"]), float(params["mean_act"]))
    ctx.progress(1, 1, "generated")
    return {**out, **{k: params[k] for k in ("feature", "kind", "alpha")}}


def _intervene(params: dict, ctx: JobContext) -> dict:
    """Measure the task's current candidates. ``intervene`` (an ``InterventionConfig`` dict) starts from the method
    preset ``intervene_preset`` names (e.g. ``paper``: its filter and measurement plan, on these same candidates;
    default: the default config). The run is the dashboard's from then on (the newest intervention run is shown)."""
    from igds.method.presets import method_preset
    from igds.workflow.stages import current_recall, run_interventions

    ws, cfg = _workspace(params, ctx)
    task = params["task"]
    base = params.get("intervene_preset")
    icfg = InterventionConfig.from_dict({**(method_preset(base).intervene.to_dict() if base else {}),
                                         **params.get("intervene", {})})
    recall = current_recall(ws, task, cfg.extract)
    ctx.log(f"intervene: {len(recall.candidates)} candidates of {task}"
            + (f", the {base} preset's intervention config" if base else "") + f": {icfg.to_json()}")
    res = run_interventions(ws, task, recall, icfg, ctx.progress)
    return {"effect_id": res.effect_id, "kept": res.kept, "seconds": res.seconds}


def _select(params: dict, ctx: JobContext) -> dict:
    """A baseline selection stored under ``name`` (default: :func:`~igds.workflow.stages.baseline_name`);
    ``extract_run`` names the extraction run whose settings it reads (token counts for longest / shortest; default:
    the workspace's)."""
    from igds.method.selection import SelectionConfig
    from igds.workflow.explore import extract_setup
    from igds.workflow.stages import select_baseline

    ws, cfg = _workspace(params, ctx)
    extract_cfg = extract_setup(ws.store, params["extract_run"])[0] if params.get("extract_run") else cfg.extract
    sid = select_baseline(ws, params["task"], SelectionConfig.from_dict(params.get("selection", {})),
                          name=params.get("name"), progress=ctx.progress, extract_cfg=extract_cfg)
    ctx.log(f"select: stored selection {sid}" + (f" as {params['name']!r}" if params.get("name") else ""))
    return {"selection_id": sid, "name": params.get("name")}


def _finetune(params: dict, ctx: JobContext) -> dict:
    from igds.store import ActivationStore
    from igds.training.finetune import FinetuneConfig
    from igds.workflow.tune import default_finetune_config, finetune_selection

    ft = FinetuneConfig.from_dict(params["finetune"]) if params.get("finetune") else default_finetune_config()
    ev = EvalConfig.from_dict(params["eval"]) if params.get("eval") else None

    def on_metric(step, total, logs):
        if "loss" in logs:
            ctx.metric("loss", step, logs["loss"])

    ctx.log(f"finetune selection {params['selection_id']}: {ft.to_json()}")
    return finetune_selection(ActivationStore(), params["selection_id"], ft, ev, ctx.progress, on_metric,
                              ctx.should_stop)


def _evaluate_base(params: dict, ctx: JobContext) -> dict:
    from igds.modeling.load import model_key_of
    from igds.training.results import BASE_RUN
    from igds.workflow.tune import EvalTarget, Measured, evaluate_and_record, validated_features

    ws, cfg = _workspace(params, ctx)
    task = params["task"]
    target = EvalTarget(BASE_RUN, ws.loaded(), model_key_of(ws.model), ws.sae_key)
    out = evaluate_and_record(ws.store, target, task, EvalConfig.from_dict(params.get("eval", {})),
                              Measured(validated_features(ws.store, task), scope=cfg.extract.scope), ctx.progress)
    res = out["base"][1]["result"]
    return {"metric": res["metric"], "score": res["score"], "nll": res.get("nll")}


def _experiment(params: dict, ctx: JobContext) -> dict:
    from igds.experiment import ExperimentConfig, run_experiment

    return run_experiment(ExperimentConfig.from_dict(params.get("config", {})), progress=ctx.progress, log=ctx.log,
                          command=params.get("command", ""), max_cells=params.get("max_cells"),
                          max_minutes=params.get("max_minutes"), report=params.get("report", "docs/results.md"))


def _highlights(params: dict, ctx: JobContext) -> dict:
    """Token highlights of a task's pool for the vetting queue (the extraction run's model and SAE)."""
    from igds.store import ActivationStore
    from igds.workflow.highlights import HighlightConfig, ensure_pool_highlights
    from igds.workflow.workspace import resolve_workspace

    ws = resolve_workspace(ActivationStore(), run_id=params["run_id"], progress=ctx.progress)
    ctx.log(f"highlights: {params['task']} {params.get('pool_setting', 'mixed')} pool of run {params['run_id']}")
    return ensure_pool_highlights(ws, params["run_id"], params["task"], pool_of(params),
                                  HighlightConfig.from_dict(params.get("config", {})),
                                  ctx.progress)


def _identity(params: dict, ctx: JobContext) -> dict:
    """Validate a model + SAE and make them the workspace's (the Data page's *Validate and use*; ``igds workspace
    use``): an SAE source ``train[:<layer>:<d_sae>:<k>]`` is trained first, here, once per recipe and model; then
    both are loaded, checked against each other and, with ``task``, the SAE's explained variance is measured on
    its probe items. A refusal fails the job and leaves the workspace's identity unchanged."""
    from igds.store import ActivationStore
    from igds.workflow.workspace import choose_identity

    model, sae, task = ModelSpec.from_dict(params["model"]), SaeSpec.from_dict(params["sae"]), params.get("task")
    ctx.log(f"identity: model {model.name_or_path}, SAE {sae.source}" + (f", measured on {task}" if task else ""))
    return choose_identity(ActivationStore(), model, sae, task=task, progress=ctx.progress)


def _matmul(params: dict, ctx: JobContext) -> dict:
    """Benchmark kind: ``rounds`` float32 matmuls of ``size`` x ``size`` with torch's threads (a stand-in for a
    model forward that keeps every core of its slot busy); reports its compute seconds."""
    import torch

    size, rounds = int(params.get("size", 512)), int(params.get("rounds", 50))
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=gen), torch.randn(size, size, generator=gen)
    t0 = time.perf_counter()
    for i in range(rounds):
        if ctx.should_stop():
            return {"rounds": i, "stopped": True}
        a = torch.tanh(a @ b)
        ctx.progress(i + 1, rounds, f"matmul {i + 1}/{rounds}")
    return {"rounds": rounds, "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}


# heavy kinds run a model (or all-core work) and wait for a slot of the local queue (igds.jobs.queue)
_HEAVY = {"bootstrap": _bootstrap, "extract": _extract, "recall": _recall, "intervene": _intervene, "select": _select,
          "finetune": _finetune, "evaluate": _evaluate_base, "experiment": _experiment, "highlights": _highlights,
          "identity": _identity, "steer": _steer, "matmul": _matmul}
for _name, _fn in _HEAVY.items():
    register_job_kind(_name, _fn, heavy=True)
register_job_kind("count", _count)  # light unless its params say {"heavy": true}
