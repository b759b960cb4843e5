"""LoRA fine-tuning on the tiny model: loss goes down, adapters round-trip, runs stop and resume, and
examples longer than max_length are dropped and counted, never cut."""

import json
import math

import pytest
import torch

from igds import settings
from igds.data.corpus import Example
from igds.demo import tiny_model, tiny_tokenizer
from igds.training.batches import data_max_length, dropped_note, encode_for_training, full_lengths
from igds.training.evaluate import load_adapter, reference_nll
from igds.training.finetune import FinetuneConfig, train_lora


def _examples(n: int = 24) -> list[Example]:
    # A repetitive dataset: the response is a fixed function of the prompt, easy to fit.
    words = ["red", "blue", "green"]
    return [Example(id=f"ex{i:03d}", task="summarization", source="t", split="train",
                    prompt=f"Colour {i % 3}?", response=f"{words[i % 3]} {words[i % 3]}") for i in range(n)]


def _cfg(**kw) -> FinetuneConfig:
    base = dict(r=8, lora_alpha=16, dropout=0.0, learning_rate=2e-2, epochs=3, batch_size=8, max_length=128,
                precision="fp32", save_steps=100, warmup_ratio=0.0)
    base.update(kw)
    return FinetuneConfig(**base)


def test_labels_cover_the_response_only():
    tok = tiny_tokenizer()
    ex = _examples(1)[0]
    rows, dropped = encode_for_training(tok, [ex], max_length=128)
    row = rows[0]
    assert dropped == 0
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
    ids = torch.tensor([encode_for_training(tok, exs[:1], 128)[0][0]["input_ids"]])
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


def test_auto_precision_is_the_precision_of_record_fp32_on_every_cpu(tmp_path):
    from igds.training.finetune import resolve_precision

    assert resolve_precision("auto", "cpu") == "fp32"  # whether or not this CPU has bf16 instructions
    res = train_lora(tiny_model(), tiny_tokenizer(), _examples(8), _cfg(precision="auto", epochs=1), tmp_path)
    assert res.precision == "fp32" and res.device == "cpu" and math.isfinite(res.final_loss)


@pytest.mark.skipif(not settings.cpu_has_bf16(), reason="CPU without bf16 instructions")
def test_bf16_asked_for_by_name_uses_bf16_autocast_on_this_cpu(tmp_path):
    res = train_lora(tiny_model(), tiny_tokenizer(), _examples(8), _cfg(precision="bf16", epochs=1), tmp_path)
    assert res.precision == "bf16" and res.device == "cpu" and res.global_step == 1
    assert math.isfinite(res.final_loss)


def _mixed_lengths() -> list[Example]:
    """Twelve short examples (about 100 byte tokens) and four long ones (a long prompt, or a long answer)."""
    short = _examples(12)
    long = [Example(id=f"long{i}", task="summarization", source="t", split="train",
                    prompt="word " * (30 + 10 * i) if i % 2 else "Colour?", response="blue " * (20 if i % 2 else 40))
            for i in range(4)]
    return short + long


def test_long_examples_are_dropped_and_counted_never_cut():
    tok = tiny_tokenizer()
    exs = _mixed_lengths()
    full = dict(zip([e.id for e in exs], full_lengths(tok, exs), strict=True))
    assert sum(n > 128 for n in full.values()) == 4 and max(full[e.id] for e in exs[:12]) <= 128
    rows, dropped = encode_for_training(tok, exs, max_length=128)
    assert dropped == 4 and len(rows) == 12
    for ex, row in zip(exs[:12], rows, strict=True):
        assert len(row["input_ids"]) == full[ex.id]  # the whole rendering: nothing cut from the prompt
        response = tok(ex.response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert row["labels"][-len(response):] == response  # the answer whole, ending in eos
        assert row["labels"][: -len(response)] == [-100] * (len(row["labels"]) - len(response))
    assert encode_for_training(tok, exs, max_length=max(full.values()))[1] == 0


def test_finetune_record_counts_dropped_long_examples(tmp_path):
    from igds.store import ActivationStore
    from igds.training.results import finetune_runs, record_finetune

    tok, exs = tiny_tokenizer(), _mixed_lengths()
    cfg = _cfg(epochs=1, batch_size=4)
    res = train_lora(tiny_model(), tok, exs, cfg, tmp_path / "run")
    assert (res.n_selected, res.n_dropped, res.n_train) == (16, 4, 12) and res.global_step == 3
    assert json.loads((tmp_path / "run" / "finetune_result.json").read_text())["n_dropped"] == 4
    store = ActivationStore(tmp_path / "igds.duckdb")
    record_finetune(store, "ft-1", "summarization", res.to_dict(), cfg.to_dict(), "sel-1", "tiny")
    record_finetune(store, "ft-old", "summarization", {"n_train": 5, "status": "done"}, cfg.to_dict(), "sel-1")
    assert store.scalar("SELECT n_dropped FROM finetunes WHERE run_id = ?", ["ft-1"]) == 4
    assert store.scalar("SELECT n_dropped IS NULL FROM finetunes WHERE run_id = ?", ["ft-old"])
    runs = finetune_runs(store, "sel-1").set_index("run_id")
    assert runs.loc["ft-1", "dropped"] == "dropped 4 of 16 examples longer than 128 tokens"
    assert bool(runs.loc["ft-1", "warn"]) and not bool(runs.loc["ft-old", "warn"])
    assert "not recorded" in runs.loc["ft-old", "dropped"]
    with pytest.raises(ValueError, match="4 of 4 are longer"):
        train_lora(tiny_model(), tok, exs[12:], cfg, tmp_path / "none")


def test_dropped_note_warns_above_one_percent():
    assert dropped_note(1, 100, 256) == ("dropped 1 of 100 examples longer than 256 tokens", False)
    assert dropped_note(2, 100, 256)[1] and not dropped_note(0, 0, 256)[1]


def test_data_max_length_is_the_rounded_99th_percentile_capped():
    tok = tiny_tokenizer()
    exs = [Example(id=f"e{i:03d}", task="general", source="t", split="train", prompt="x" * i, response="y")
           for i in range(1, 201)]
    lengths = sorted(full_lengths(tok, exs))
    assert lengths == list(range(lengths[0], lengths[0] + 200))  # one byte token per character
    p99 = lengths[197]  # the 198th of 200: 99% of the examples are at most this long
    want = -(-p99 // 8) * 8
    assert data_max_length(tok, exs) == want and want % 8 == 0
    assert sum(n > want for n in lengths) <= 2
    assert data_max_length(tok, exs, cap=100) == 100 and data_max_length(tok, exs[:1], floor=256) == 256
    assert data_max_length(tok, exs, quantile=1.0) == -(-lengths[-1] // 8) * 8
    assert data_max_length(tok, []) == 64
