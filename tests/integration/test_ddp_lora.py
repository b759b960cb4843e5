"""Data-parallel LoRA through Ray Train on the session's local Ray (2 CPUs, gloo): two workers with the same
global batch and data order reach the single-process losses, write an adapter peft loads, report their
metrics through the callbacks, and a stopped run resumes to the same final loss."""

import dataclasses
import json
import shutil
import time
from types import SimpleNamespace

import pytest
import torch

from igds.data.corpus import Example
from igds.executor.config import ExecutorConfig
from igds.modeling.load import ModelSpec, load_model
from igds.training.batches import SeededLengthSampler, encode_for_training
from igds.training.evaluate import load_adapter
from igds.training.finetune import FinetuneConfig, train_lora
from igds.workflow.tune import train_selection


def _examples(n: int = 20) -> list[Example]:
    # varied lengths, so length grouping and the uneven last batch (20 = 2 x 8 + 4) both matter
    words = ["red", "blue", "green"]
    return [Example(id=f"ex{i:03d}", task="summarization", source="t", split="train",
                    prompt=f"Colour {i % 3}?" + " x" * (i % 5), response=f"{words[i % 3]} {words[i % 3]}")
            for i in range(n)]


CFG = FinetuneConfig(r=8, lora_alpha=16, dropout=0.0, learning_rate=2e-2, epochs=2, batch_size=8, max_length=128,
                     precision="fp32", save_steps=2, warmup_ratio=0.0)  # 2 epochs x 3 steps; keeps checkpoints 4, 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from igds.demo import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("ddp") / "tiny-llama")


@pytest.fixture(scope="module")
def local_run(model_dir, tmp_path_factory):
    """The single-process reference run (same config, workers=1)."""
    model, tok = load_model(ModelSpec(name_or_path=str(model_dir), dtype="float32", device="cpu"))
    metrics = []
    t0 = time.perf_counter()
    res = train_lora(model, tok, _examples(), CFG, tmp_path_factory.mktemp("local") / "run",
                     on_metric=lambda s, t, m: metrics.append((s, m["loss"])))
    return res, metrics, time.perf_counter() - t0


def _spec(model_dir) -> ModelSpec:
    return ModelSpec(name_or_path=str(model_dir), dtype="float32", device="cpu")


def test_workers_must_divide_the_global_batch():
    with pytest.raises(ValueError, match="multiple of workers"):
        FinetuneConfig(batch_size=6, workers=4)
    assert "workers" not in FinetuneConfig().to_dict()  # stage keys of earlier runs do not move
    assert FinetuneConfig(workers=2).stage_key() != FinetuneConfig().stage_key()


def test_a_group_the_cluster_cannot_place_is_refused(ray_local, model_dir, tmp_path):
    from igds.training.distributed import DistributedTrainingError, train_lora_ray

    cfg = dataclasses.replace(CFG, workers=4)  # 4 x 1 CPU on a 2-CPU Ray would wait forever
    with pytest.raises(DistributedTrainingError, match="do not fit the Ray cluster"):
        train_lora_ray(_spec(model_dir), _examples(), cfg, tmp_path / "run", cpus_per_worker=1.0)


def test_seeded_sampler_order_depends_on_seed_and_epoch_only():
    lengths = [5 + (i * 7) % 13 for i in range(20)]
    a = SeededLengthSampler(lengths, 8, seed=3)
    b = SeededLengthSampler(lengths, 8, seed=3, batch_size=8, world=2, null_index=20)
    torch.manual_seed(123)  # the global RNG (dropout, LoRA init) must not matter
    first = list(a)
    torch.rand(1000)
    assert list(b)[:20] == first and sorted(first) == list(range(20))
    assert list(b)[20:] == [20] and len(b) == 21  # the last batch (4 rows) padded so rank 1 gets one row
    a.set_epoch(1)
    assert list(a) != first and sorted(a) == list(range(20))


@pytest.fixture(scope="module")
def ddp_run(_ray_session, model_dir, tmp_path_factory):
    """The two-worker run of the same config, through the workflow's entry point: the executor setting says how
    to reach Ray (the session's Ray is reused); the workers load the model from its folder."""
    steps, metrics = [], []
    model, tok = load_model(_spec(model_dir))
    ws = SimpleNamespace(model=model, tokenizer=tok, model_spec=_spec(model_dir))
    out = tmp_path_factory.mktemp("ddp-run") / "run"
    t0 = time.perf_counter()
    res = train_selection(None, ws, _examples(), dataclasses.replace(CFG, workers=2), out,
                          progress=lambda d, t, m: steps.append((d, t)),
                          on_metric=lambda s, t, m: metrics.append((s, m["loss"])),
                          executor=ExecutorConfig(kind="ray", cpus_per_actor=1.0))
    return SimpleNamespace(res=res, model=model, tok=tok, out=out, steps=steps, metrics=metrics,
                           seconds=time.perf_counter() - t0)


def test_two_gloo_workers_match_the_single_process_run(ray_local, model_dir, local_run, ddp_run):
    local, local_metrics, local_s = local_run
    res, metrics, out = ddp_run.res, ddp_run.metrics, ddp_run.out
    print(f"\nfinal loss: 1 process {local.final_loss:.6f} ({local_s:.1f} s), "
          f"2 workers {res.final_loss:.6f} ({ddp_run.seconds:.1f} s with Ray Train start)")
    print("per step (1 process, 2 workers):", [(a[1], b[1]) for a, b in zip(local_metrics, metrics, strict=True)])
    assert res.status == "done" and res.global_step == local.global_step == 6
    assert res.final_loss == pytest.approx(local.final_loss, rel=0.01)
    # the metrics came back from rank 0 through the callback, one per step, matching the local run's
    assert [s for s, _ in metrics] == [1, 2, 3, 4, 5, 6]
    for (_, a), (_, b) in zip(local_metrics, metrics, strict=True):
        assert b == pytest.approx(a, rel=1e-4)  # the same batches: another batch moves a loss by ~0.5%
    assert (6, 6) in ddp_run.steps
    curve = json.loads((out / "loss_curve.json").read_text())
    assert [c["loss"] for c in curve] == [m for _, m in metrics]
    assert json.loads((out / "finetune_result.json").read_text())["final_loss"] == res.final_loss

    # the adapter loads with peft onto a fresh base model, matches the returned model and changes the outputs
    ids = torch.tensor([encode_for_training(ddp_run.tok, _examples(1), 128)[0][0]["input_ids"]])
    base, _ = load_model(_spec(model_dir))
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
        tuned = load_adapter(base, res.adapter_dir)(input_ids=ids).logits
        assert res.model.get_base_model() is ddp_run.model  # the adapter was loaded onto the caller's model
        assert torch.allclose(tuned, res.model(input_ids=ids).logits)
        assert not torch.allclose(tuned, base_logits, atol=1e-3)
        local_logits = local.model(input_ids=ids).logits
        assert torch.allclose(tuned, local_logits, atol=1e-3, rtol=1e-3)  # the same training, to float noise


def test_a_resumed_and_stopped_run_continues_to_the_uninterrupted_loss(ray_local, model_dir, local_run, ddp_run,
                                                                     tmp_path):
    local, local_metrics, _ = local_run
    # resume two workers from the uninterrupted run's checkpoint in the middle of epoch 2 (step 4 of 3 + 3) ...
    run = tmp_path / "run"
    shutil.copytree(ddp_run.out / "checkpoints" / "checkpoint-4", run / "checkpoints" / "checkpoint-4")
    metrics = []
    stopped = _ray_train(model_dir, run, should_stop=lambda: True, on_metric=lambda s, t, m: metrics.append(
        (s, m["loss"])))
    # ... and stop them at once: every rank checkpoints and stops after the first step it runs
    assert stopped.resumed_from.endswith("checkpoint-4")
    assert stopped.status == "stopped" and stopped.global_step == 5 and stopped.adapter_dir is None
    assert (run / "checkpoints" / "checkpoint-5").exists()
    assert metrics[0][0] == 5 and metrics[0][1] == pytest.approx(local_metrics[4][1], rel=1e-4)  # same batch

    # the checkpoint the workers wrote resumes in this process too, to the uninterrupted final loss
    model, tok = load_model(_spec(model_dir))
    res = train_lora(model, tok, _examples(), dataclasses.replace(CFG, workers=2), run)
    print(f"\nresumed final loss {res.final_loss:.6f} vs uninterrupted {local.final_loss:.6f}")
    assert res.resumed_from.endswith("checkpoint-5") and res.status == "done" and res.global_step == 6
    assert res.final_loss == pytest.approx(local.final_loss, rel=1e-4)  # well inside 1%: the same step, to float noise


def _ray_train(model_dir, out, **kw):
    from igds.training.distributed import train_lora_ray

    return train_lora_ray(_spec(model_dir), _examples(), dataclasses.replace(CFG, workers=2), out,
                          cpus_per_worker=1.0, **kw)
