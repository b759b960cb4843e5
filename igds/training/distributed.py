"""Data-parallel LoRA fine-tuning through Ray Train: the same :func:`~igds.training.finetune.train_lora` on N
workers, one per device (gloo on CPU, nccl on GPU).

Nothing but the training call changes. Each worker loads the base model itself from a :class:`ModelSpec` (a
model folder every worker can read: the spec's path is resolved to an absolute folder here, never shipped
through the object store), then runs ``train_lora`` inside the process group Ray Train set up; the Trainer
wraps the model in DDP. ``train_lora`` keeps the global batch of a single-process run and gives each worker
an equal slice of it, in an order drawn from the seed and the epoch only (see
:class:`~igds.training.batches.SeededLengthSampler`), so the steps, the learning-rate schedule and the
losses are those of a local run with the same config.

What comes back, and how:

- **progress and metrics**: rank 0 sends each ``progress(step, total, message)`` and ``on_metric(step, total,
  logs)`` call to a small relay actor (no CPU reserved); this process polls it while the trainer runs and
  makes the same calls here, in order. Ray Train's own ``ray.train.report`` is not used for them: in the v2
  API its metrics reach the driver only with the final ``Result``, not while training runs.
- **stop**: ``should_stop()`` is polled here; a True is put in the relay, rank 0 reads it after the step and
  an all-reduce gives every rank the same answer, so they all checkpoint and stop at the same step.
- **files**: checkpoints (``checkpoints/checkpoint-<step>``), ``adapter/``, ``loss_curve.json`` and
  ``finetune_result.json`` are written by rank 0 into ``out_dir`` exactly as a local run writes them; a
  resumed run, local or distributed, continues from the newest checkpoint there. ``out_dir`` must therefore
  be a folder the driver and every worker share (any local folder on one machine, a shared filesystem on
  a cluster). Ray Train's own run state goes to ``out_dir/ray``.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from igds.modeling.config import ModelSpec
from igds.progress import ProgressFn, null_progress
from igds.training.finetune import FinetuneConfig, FinetuneResult, MetricFn

POLL_SECONDS = 0.25
RAY_DIR = "ray"


class DistributedTrainingError(RuntimeError):
    """Data-parallel training could not run or failed on a worker (the message says which)."""


def _relay_class():
    import ray

    @ray.remote(num_cpus=0)
    class Relay:
        """Mailbox between rank 0 and the driver: events out, a stop request in, the result out."""

        def __init__(self):
            self.events: list[tuple] = []
            self.stop = False
            self.result: dict | None = None

        def put(self, kind: str, *args) -> None:
            self.events.append((kind, *args))

        def drain(self) -> tuple[list[tuple], dict | None]:
            events, self.events = self.events, []
            return events, self.result

        def request_stop(self) -> None:
            self.stop = True

        def stop_requested(self) -> bool:
            return self.stop

        def finish(self, result: dict) -> None:
            self.result = result

    return Relay


def _worker_loop(config: dict) -> None:
    """One Ray Train worker: load the model, train with ``train_lora``, hand rank 0's result to the relay."""
    import ray
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist

    from igds.modeling.load import load_model, model_key_of
    from igds.training.finetune import train_lora

    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device()  # nccl reduces only tensors on the worker's GPU
    torch.set_num_threads(config["threads"])
    relay = config["relay"]
    model, tokenizer = load_model(config["model_spec"])
    model.igds_name = config["model_name"]  # the name the driver loaded it under (part of the model key)
    if config["model_key"] and model_key_of(model) != config["model_key"]:
        raise DistributedTrainingError(f"worker {rank} loaded {config['model_spec'].name_or_path!r} as model "
                                       f"{model_key_of(model)}, not the base model {config['model_key']}")

    def progress(done, total, message):
        relay.put.remote("progress", done, total, message)

    def on_metric(step, total, logs):
        relay.put.remote("metric", step, total, logs)

    def should_stop() -> bool:
        # every rank must stop at the same step: rank 0 asks the driver, the group takes its answer
        flag = torch.tensor([1 if rank == 0 and ray.get(relay.stop_requested.remote()) else 0], device=device)
        if dist.is_initialized():
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    res = train_lora(model, tokenizer, config["examples"], config["cfg"], config["out_dir"],
                     progress if rank == 0 else None, on_metric if rank == 0 else None, should_stop, resume=True)
    if rank == 0:
        ray.get(relay.finish.remote(res.to_dict()))  # after every event it sent: actor calls run in order


def model_name(spec: ModelSpec) -> str:
    """The name :func:`igds.modeling.load.load_model` gives a model loaded from ``spec``."""
    from igds.constants import DEFAULT_MODEL_NAME

    return spec.name_or_path if spec.name_or_path != "default" else DEFAULT_MODEL_NAME


def worker_model_spec(spec: ModelSpec) -> ModelSpec:
    """The spec a worker loads: an absolute model folder (``default`` resolved here, so a worker with another
    ``IGDS_HOME`` finds the same files) on the CPU; the Trainer moves it to the worker's GPU."""
    from igds.modeling.load import resolve_model_path

    return dataclasses.replace(spec, name_or_path=resolve_model_path(spec.name_or_path), device="cpu")


def train_lora_ray(model_spec: ModelSpec, examples: Sequence, cfg: FinetuneConfig, out_dir: str | Path, *,
                   cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, progress: ProgressFn | None = None,
                   on_metric: MetricFn | None = None, should_stop: Callable[[], bool] | None = None,
                   resume: bool = True, base_model=None, model_key: str | None = None,
                   worker_env: dict | None = None,
                   poll_seconds: float = POLL_SECONDS) -> FinetuneResult:
    """Fine-tune LoRA adapters on ``cfg.workers`` Ray Train workers with data parallelism.

    Ray must be initialised (e.g. :func:`igds.executor.runtime.connect`). Same files, metrics, callbacks and
    resume behaviour as :func:`igds.training.finetune.train_lora`; see the module docstring for how they
    travel.

    Args:
        model_spec: the base model every worker loads (a local folder, or ``default``).
        examples: training records (``task``, ``prompt``, ``response``); sent to the workers once.
        cfg: hyper-parameters; ``cfg.workers`` processes, each taking ``cfg.batch_size / cfg.workers`` examples
            of every global batch.
        out_dir: run folder shared by the driver and the workers.
        cpus_per_worker: CPUs each worker reserves (and its torch threads).
        gpus_per_worker: GPUs each worker reserves; > 0 trains on GPUs with nccl, 0 on CPUs with gloo.
        progress: ``progress(step, total, message)``, called here for every step of rank 0.
        on_metric: ``on_metric(step, total, logs)``, called here for every logged loss of rank 0.
        should_stop: polled here; True checkpoints every worker at the same step and stops.
        resume: continue from the newest checkpoint in ``out_dir/checkpoints``; False deletes them first.
        base_model: optional, the base model already loaded in this process; the trained adapter is loaded
            onto it (in place) and returned as ``result.model``.
        model_key: optional, the base model's key (:func:`igds.modeling.load.model_key_of`); a worker that loads
            another model from ``model_spec`` fails with a clear error instead of training it.
        worker_env: environment variables for the workers (e.g. ``igds.executor.runtime.worker_env()``).
        poll_seconds: how often the relay is polled.

    Returns:
        Rank 0's :class:`FinetuneResult`; ``model`` is None unless ``base_model`` was given and the run finished.

    Raises:
        DistributedTrainingError: Ray not initialised, the cluster too small, or a worker failed.
    """
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if not ray.is_initialized():
        raise DistributedTrainingError("Ray is not initialised: connect first (igds.executor.runtime.connect)")
    progress = progress or null_progress
    out = Path(out_dir).resolve()
    if not resume and (out / "checkpoints").exists():
        shutil.rmtree(out / "checkpoints")  # here, once, never by the workers at the same time
    out.mkdir(parents=True, exist_ok=True)
    use_gpu = gpus_per_worker > 0
    _check_capacity(ray, cfg.workers, cpus_per_worker, gpus_per_worker)
    resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if use_gpu else {})}
    relay = _relay_class().remote()
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"relay": relay, "model_spec": worker_model_spec(model_spec),
                           "model_name": model_name(model_spec), "model_key": model_key,
                           "examples": list(examples), "cfg": cfg, "out_dir": str(out),
                           "threads": max(int(cpus_per_worker), 1)},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.workers, use_gpu=use_gpu, resources_per_worker=resources),
        # a failed worker fails the run; rerunning it resumes from the newest checkpoint, as a local run does
        run_config=RunConfig(name="train", storage_path=str(out / RAY_DIR),
                             failure_config=FailureConfig(max_failures=0),
                             worker_runtime_env={"env_vars": worker_env} if worker_env else None),
    )
    error: list[BaseException] = []

    def fit():
        try:
            trainer.fit()
        except BaseException as e:  # re-raised in the caller's thread below
            error.append(e)

    thread = threading.Thread(target=fit, name="igds-ray-train", daemon=True)
    thread.start()
    result, stop_sent = None, False
    try:
        while True:
            alive = thread.is_alive()
            events, result = ray.get(relay.drain.remote())
            for kind, *args in events:
                (progress if kind == "progress" else on_metric or (lambda *a: None))(*args)
            if not alive:
                break
            if not stop_sent and should_stop is not None and should_stop():
                relay.request_stop.remote()
                stop_sent = True
            thread.join(poll_seconds)
    except BaseException:
        relay.request_stop.remote()  # a failing callback here (or Ctrl-C): the workers checkpoint and stop
        raise
    finally:
        thread.join()
        ray.kill(relay)
    if error:
        raise DistributedTrainingError(f"data-parallel fine-tuning failed: {error[0]}") from error[0]
    if result is None:
        raise DistributedTrainingError("data-parallel fine-tuning ended without a result from rank 0")
    model = None
    if base_model is not None and result.get("adapter_dir"):
        from igds.training.evaluate import load_adapter

        model = load_adapter(base_model, result["adapter_dir"])
    return FinetuneResult(**result, model=model)


def _check_capacity(ray, workers: int, cpus: float, gpus: float) -> None:
    """Refuse, with the numbers, a group the cluster can never place (Ray would wait for it forever)."""
    total = ray.cluster_resources()
    if workers * cpus > total.get("CPU", 0) + 1e-9 or workers * gpus > total.get("GPU", 0) + 1e-9:
        raise DistributedTrainingError(
            f"{workers} workers x ({cpus:g} CPU, {gpus:g} GPU) do not fit the Ray cluster "
            f"({total.get('CPU', 0):g} CPU, {total.get('GPU', 0):g} GPU): lower workers or the resources per worker")
