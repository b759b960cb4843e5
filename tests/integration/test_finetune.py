"""LoRA fine-tuning on the tiny model: loss goes down, adapters round-trip, runs stop and resume."""

import json
import math

import pytest
import torch

from igds import settings
from igds.data.corpus import Example
from igds.demo import tiny_model, tiny_tokenizer
from igds.training.evaluate import load_adapter, reference_nll
from igds.training.finetune import FinetuneConfig, encode_for_training, train_lora


def _examples(n: int = 24) -> list[Example]:
    # A repetitive dataset: the response is a fixed function of the prompt, easy to fit.
    words = ["red", "blue", "green"]
    return [Example(id=f"ex{i:03d}", task="summarization", source="t", split="train",
                    prompt=f"Colour {i % 3}?", response=f"{words[i % 3]} {words[i % 3]}") for i in range(n)]


def _cfg(**kw) -> FinetuneConfig:
    base = dict(r=8, lora_alpha=16, dropout=0.0, learning_rate=2e-2, epochs=3, batch_size=8, max_length=64,
                precision="fp32", save_steps=100, warmup_ratio=0.0)
    base.update(kw)
    return FinetuneConfig(**base)


def test_labels_cover_the_response_only():
    tok = tiny_tokenizer()
    ex = _examples(1)[0]
    row = encode_for_training(tok, [ex], max_length=64)[0]
    n_resp = sum(label != -100 for label in row["labels"])
    expected = len(tok(ex.response, add_special_tokens=False)["input_ids"]) + 1  # + eos
    assert n_resp == expected
    assert row["labels"][-n_resp:] == row["input_ids"][-n_resp:]


def test_cpu_profile_is_smaller_than_the_default():
    cfg, full = FinetuneConfig.cpu_profile(seed=3), FinetuneConfig()
    assert (cfg.profile, cfg.epochs, cfg.seed) == ("cpu", 1, 3)
    assert set(cfg.target_modules) < set(full.target_modules) and cfg.max_length < full.max_length
    assert FinetuneConfig.from_dict(json.loads(cfg.to_json())) == cfg
    with pytest.raises(ValueError):
        FinetuneConfig(precision="fp8")


def test_lora_lowers_loss_and_adapter_round_trips(tmp_path):
    tok = tiny_tokenizer()
    exs = _examples()
    model = tiny_model()
    before = reference_nll(model, tok, exs)
    metrics = []
    cfg = _cfg(learning_rate=5e-2, epochs=6)  # 18 steps; a random tiny model needs a high rate to move
    res = train_lora(model, tok, exs, cfg, tmp_path / "run", on_metric=lambda s, t, m: metrics.append(m))
    after = reference_nll(res.model, tok, exs)
    assert res.status == "done" and res.global_step == res.max_steps == 18
    assert sum(after.values()) < sum(before.values()) - 0.1 * len(exs)
    curve = json.loads((tmp_path / "run" / "loss_curve.json").read_text())
    assert len(curve) == 18 and curve[-1]["loss"] < curve[0]["loss"]
    assert [m["loss"] for m in metrics] == [c["loss"] for c in curve]
    for name in ("finetune_config.json", "trainer_state.json", "adapter/adapter_config.json"):
        assert (tmp_path / "run" / name).exists()
    assert res.device == "cpu" and res.seed == 0

    reloaded = load_adapter(tiny_model(), res.adapter_dir)
    ids = torch.tensor([encode_for_training(tok, exs[:1], 64)[0]["input_ids"]])
    with torch.no_grad():
        assert torch.equal(res.model(input_ids=ids).logits, reloaded(input_ids=ids).logits)
        assert not torch.equal(tiny_model()(input_ids=ids).logits, reloaded(input_ids=ids).logits)


def test_should_stop_then_resume_reaches_the_same_final_step(tmp_path):
    tok = tiny_tokenizer()
    exs = _examples()
    cfg = _cfg(epochs=2, batch_size=4, save_steps=5)  # 12 steps
    steps = []
    res = train_lora(tiny_model(), tok, exs, cfg, tmp_path / "run", progress=lambda d, t, m: steps.append(d),
                     should_stop=lambda: max(steps, default=0) >= 3)
    assert res.status == "stopped" and res.global_step == 3 and res.adapter_dir is None
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-3").exists()

    res2 = train_lora(tiny_model(), tok, exs, cfg, tmp_path / "run", resume=True)
    assert res2.resumed_from.endswith("checkpoint-3")
    assert res2.status == "done" and res2.global_step == res2.max_steps == 12

    fresh = train_lora(tiny_model(), tok, exs, cfg, tmp_path / "fresh")
    assert fresh.global_step == res2.global_step and fresh.resumed_from is None


@pytest.mark.skipif(not settings.cpu_has_bf16(), reason="CPU without bf16 instructions")
def test_auto_precision_uses_bf16_autocast_on_this_cpu(tmp_path):
    res = train_lora(tiny_model(), tiny_tokenizer(), _examples(8), _cfg(precision="auto", epochs=1), tmp_path)
    assert res.precision == "bf16" and res.device == "cpu" and res.global_step == 1
    assert math.isfinite(res.final_loss)
