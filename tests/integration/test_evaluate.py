"""Evaluation: metrics on fixed outputs, reference NLL, feature activation and amplification."""

import math

import pytest
import torch
from torch.nn import functional as F

import igds.training.evaluate as ev
from igds.data.corpus import Example
from igds.data.tasks import get_task
from igds.demo import tiny_model, tiny_sae, tiny_tokenizer
from igds.training.evaluate import (
    EvalConfig,
    amplification,
    evaluate_model,
    feature_activation,
    generate_outputs,
    load_adapter,
)

SITE = "blocks.1.hook_resid_post"


def _ex(i, task, prompt, response, **meta):
    return Example(id=f"{task}{i}", task=task, source="t", split="test", prompt=prompt, response=response, meta=meta)


MATH = [
    _ex(0, "math", "2+2?", "so #### 4", n_steps=1),
    _ex(1, "math", "3*3?", "#### 9", n_steps=2),
    _ex(2, "math", "1+1+1+1?", "#### 4", n_steps=3),
    _ex(3, "math", "10-1?", "#### 9", n_steps=4),
]
SUMM = [_ex(0, "summarization", "Describe emacs", "a b d"), _ex(1, "summarization", "Describe vim", "x y")]


def test_metrics_on_fixed_outputs_equal_hand_computed(monkeypatch):
    tok, model = tiny_tokenizer(), tiny_model()
    outs = {"math": ["the answer is 4", "#### 8", "#### 4", "no idea"], "summarization": ["a b c\nmore", "x y"]}
    monkeypatch.setattr(ev, "generate_outputs", lambda m, t, task, exs, cfg, p: outs[task.name][: len(exs)])
    res = evaluate_model(model, tok, get_task("math"), MATH, EvalConfig())
    assert res["per_example"] == [1.0, 0.0, 1.0, 0.0] and res["score"] == 0.5
    assert res["slices"] == {"le2_steps": 0.5, "le2_steps_n": 2}
    assert res["predictions"] == ["4", "8", "4", ""]
    # ROUGE-L F1: "a b c" vs "a b d" → LCS 2, P = R = 2/3; the second line is not part of the answer
    res = evaluate_model(model, tok, get_task("summarization"), SUMM, EvalConfig(n_examples=2))
    assert res["per_example"] == pytest.approx([2 / 3, 1.0])
    assert res["score"] == pytest.approx(5 / 6)
    # reference NLL equals a brute-force teacher-forced cross entropy over the response tokens
    task = get_task("summarization")
    for ex, got in zip(SUMM, res["nll_per_example"], strict=True):
        enc = task.encode(tok, ex.prompt, ex.response, 256)
        ids = torch.tensor([enc.input_ids])
        with torch.no_grad():
            logits = model(ids).logits[0]
        t = torch.arange(enc.prompt_len - 1, len(enc.input_ids) - 1)
        assert got == pytest.approx(F.cross_entropy(logits[t], ids[0, t + 1]).item(), rel=1e-5)
    assert res["nll"] == pytest.approx(sum(res["nll_per_example"]) / 2)


def test_n_examples_is_a_seeded_sample_stratified_by_source(monkeypatch):
    tok, model = tiny_tokenizer(), tiny_model()
    monkeypatch.setattr(ev, "generate_outputs", lambda m, t, task, exs, cfg, p: ["x"] * len(exs))
    exs = [Example(id=f"{src}{i}", task="summarization", source=src, split="test", prompt=f"p{i}", response="x")
           for src, n in (("a", 6), ("b", 3)) for i in range(n)]  # sorted by source: the head is all "a"
    cfg = EvalConfig(n_examples=3, nll=False)
    res = evaluate_model(model, tok, get_task("summarization"), exs, cfg)
    assert sorted(i[0] for i in res["example_ids"]) == ["a", "a", "b"] and res["n"] == 3
    assert evaluate_model(model, tok, get_task("summarization"), exs, cfg)["example_ids"] == res["example_ids"]
    other = [evaluate_model(model, tok, get_task("summarization"), exs, EvalConfig(n_examples=3, nll=False,
                                                                                 sample_seed=s))["example_ids"]
             for s in range(1, 6)]
    assert any(ids != res["example_ids"] for ids in other)
    assert EvalConfig().max_length == 512 and EvalConfig.from_dict(EvalConfig(sample_seed=4).to_dict()).sample_seed == 4


def test_evaluate_and_record_scores_the_stratified_test_sample(monkeypatch, tmp_path):
    import igds.workflow.tune as tune
    from igds.data.corpus import test_sample
    from igds.store import ActivationStore

    seen = []

    class Capture:  # the evaluator the stage would run: records which examples it is given
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def evaluate(self, spec, examples, cfg, progress, base=False):
            seen.append([e.id for e in examples])
            raise RuntimeError("captured")

    monkeypatch.setattr(tune, "Evaluator", Capture)
    from igds.workflow.workspace import ingest_corpus

    store = ActivationStore(tmp_path / "igds.duckdb")
    ingest_corpus(store)  # the stages read a task's items from the store: the same sample as the corpus's
    with pytest.raises(RuntimeError, match="captured"):
        target = tune.EvalTarget("base", tune.Loaded(None, None, None, SITE), "tiny")
        tune.evaluate_and_record(store, target, "translation", EvalConfig(n_examples=40, sample_seed=2))
    assert seen == [[e.id for e in test_sample("translation", 40, seed=2)]]


def test_batched_left_padded_generation_matches_one_by_one():
    tok, model = tiny_tokenizer(), tiny_model()
    task = get_task("summarization")
    exs = [_ex(i, "summarization", "p" * (3 + 5 * i), "r") for i in range(3)]
    cfg = EvalConfig(max_new_tokens=5, batch_size=3)
    batched = generate_outputs(model, tok, task, exs, cfg)
    single = [generate_outputs(model, tok, task, [e], cfg)[0] for e in exs]
    assert batched == single and all(isinstance(s, str) for s in batched)


def _brute_force_A(model, tok, sae, exs, features, positions="content"):
    from igds.modeling.batching import scope_positions
    from igds.modeling.encoding import render_example

    vals = []
    for ex in exs:
        item = render_example(tok, ex.task, ex.prompt, ex.response, 256)
        keep = [p for p in scope_positions(item, positions) if p > 0]  # position 0 is excluded; no sinks here
        with torch.no_grad():
            h = model(torch.tensor([item.input_ids]), output_hidden_states=True).hidden_states[2][0]
            z = sae.encode(h[keep])
        vals.append(sum(z[:, f].mean().item() for f in features))
    return sum(vals) / len(vals)


def test_feature_activation_matches_brute_force():
    tok, model, sae = tiny_tokenizer(), tiny_model(), tiny_sae(layer=1)
    exs = SUMM + [_ex(2, "summarization", "Describe a longer package description here", "a tool")]
    base = feature_activation(model, tok, sae, SITE, exs, features=[])
    assert base["A"] == 0.0 and base["n"] == 3
    # features that fire somewhere on these examples
    with torch.no_grad():
        h = model(torch.tensor([[1, 2, 3, 4, 5, 6]]), output_hidden_states=True).hidden_states[2][0]
    feats = torch.topk((sae.encode(h) > 0).sum(0), 5).indices.tolist()
    got = feature_activation(model, tok, sae, SITE, exs, feats, batch_tokens=64)
    assert got["A"] > 0
    assert got["A"] == pytest.approx(_brute_force_A(model, tok, sae, exs, feats), rel=1e-4)
    assert sum(got["per_feature"].values()) == pytest.approx(got["A"], rel=1e-6)
    # the measure honours the token scope: over every position (template included) it differs
    every = feature_activation(model, tok, sae, SITE, exs, feats, batch_tokens=64, positions="all")
    assert every["A"] == pytest.approx(_brute_force_A(model, tok, sae, exs, feats, "all"), rel=1e-4)
    assert every["A"] != pytest.approx(got["A"], rel=1e-3)


def test_amplification_is_zero_for_an_adapter_with_zero_lora_b(tmp_path):
    from peft import LoraConfig, get_peft_model

    tok, sae = tiny_tokenizer(), tiny_sae(layer=1)
    exs = SUMM + MATH
    feats = list(range(0, 128, 3))
    peft_model = get_peft_model(tiny_model(), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"]))
    for name, p in peft_model.named_parameters():
        if "lora_A" in name:
            torch.nn.init.normal_(p)  # A random, B zero (peft's default): the adapter is a no-op
    assert all(float(p.detach().abs().sum()) == 0 for n, p in peft_model.named_parameters() if "lora_B" in n)
    peft_model.save_pretrained(tmp_path / "adapter")
    tuned = load_adapter(tiny_model(), tmp_path / "adapter")
    a_base = feature_activation(tiny_model(), tok, sae, SITE, exs, feats)
    a_tuned = feature_activation(tuned, tok, sae, SITE, exs, feats)
    amp = amplification(a_tuned, a_base)
    assert amp["amplification"] == 0.0
    assert all(v == 0.0 or (math.isnan(v) and a_base["per_feature"][f] == 0) for f, v in amp["per_feature"].items())
    # a PeftModel evaluates like its base model when B = 0
    cfg = EvalConfig(max_new_tokens=4)
    assert generate_outputs(tuned, tok, get_task("math"), MATH, cfg) == \
        generate_outputs(tiny_model(), tok, get_task("math"), MATH, cfg)


def test_amplification_ratio():
    base = {"A": 2.0, "per_feature": {1: 1.0, 2: 1.0, 3: 0.0}}
    tuned = {"A": 3.0, "per_feature": {1: 2.0, 2: 1.0, 3: 0.5}}
    amp = amplification(tuned, base)
    assert amp["amplification"] == 0.5
    assert amp["per_feature"][1] == 1.0 and amp["per_feature"][2] == 0.0 and math.isnan(amp["per_feature"][3])
