"""Evaluation of a base model or a LoRA adapter: task metric, reference NLL and feature amplification.

Every function takes built objects (model, tokenizer, SAE), so the same code scores the base model
and a ``PeftModel``. Hook-based passes (NLL, SAE features) run on the peft model's underlying
transformer, whose layers carry the injected LoRA weights, so they see the adapted model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

from igds.progress import ProgressFn, null_progress, scaled
from igds.scope import CONTENT, EVAL_LENGTH, STAGE_LENGTH
from igds.training.config import EvalConfig  # noqa: F401 - re-exported

MAX_STEPS_SLICE = 2  # math slice "≤2 reasoning steps", where a 135M model can score at all


def base_transformer(model):
    """The plain HF model under a ``PeftModel`` (LoRA layers stay injected), or ``model`` itself."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def load_adapter(base_model, adapter_dir):
    """Wrap ``base_model`` with the LoRA adapter saved in ``adapter_dir`` (inference mode).

    Args:
        base_model: a freshly loaded base model (it is modified in place by peft).
        adapter_dir: a PEFT adapter folder (``adapter_config.json`` + weights).

    Returns:
        The ``PeftModel`` in eval mode.
    """
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(adapter_dir), is_trainable=False).eval()


def _pad_id(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def _limit(examples: Sequence, cfg: EvalConfig) -> list:
    """``cfg.n_examples`` of ``examples`` as a seeded sample stratified by source (all when 0 or fewer)."""
    from igds.data.corpus import stratified_sample

    return stratified_sample(examples, cfg.n_examples, cfg.sample_seed) if cfg.n_examples else list(examples)


def prompt_ids(tokenizer, task, examples: Sequence, cfg: EvalConfig) -> list[list[int]]:
    """Each example's prompt ids, exactly as in training (``task.encode``: instruction, template, BOS rule,
    truncation to ``cfg.max_length``); ``cfg.n_examples`` is not applied here."""
    return [task.encode(tokenizer, ex.content, None, max_length=cfg.max_length).input_ids for ex in examples]


def generation_batches(prompts: Sequence[Sequence[int]], batch_size: int) -> list[list[int]]:
    """Generation batches as lists of prompt indices: prompts sorted by length (similar lengths, little padding),
    cut every ``batch_size``. A batch's outputs depend on its padding, so every executor runs these batches."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def generation_config(tokenizer, task, cfg: EvalConfig):
    """The ``GenerationConfig`` of an evaluation (the task's budget unless ``cfg.max_new_tokens``)."""
    from transformers import GenerationConfig

    return GenerationConfig(max_new_tokens=cfg.max_new_tokens or task.max_new_tokens, do_sample=not cfg.greedy,
                            pad_token_id=_pad_id(tokenizer), eos_token_id=tokenizer.eos_token_id)


def generate_batch(model, tokenizer, prompts: Sequence[Sequence[int]], gen_cfg) -> list[str]:
    """Generate one left-padded batch (``model`` in eval mode, under ``torch.no_grad``).

    Args:
        model: causal LM or ``PeftModel``.
        tokenizer: its tokenizer.
        prompts: the batch's prompt ids.
        gen_cfg: :func:`generation_config`.

    Returns:
        The decoded continuations (special tokens removed), in batch order.
    """
    import torch

    pad_id = _pad_id(tokenizer)
    device = next(model.parameters()).device
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, p in enumerate(prompts):
        n = len(p)
        ids[row, width - n :] = torch.tensor(p)  # left padding: generation continues at the end
        attn[row, width - n :] = 1
    out = model.generate(input_ids=ids.to(device), attention_mask=attn.to(device), generation_config=gen_cfg)
    return [tokenizer.decode(out[row, width:], skip_special_tokens=True) for row in range(len(prompts))]


def generate_outputs(model, tokenizer, task, examples: Sequence, cfg: EvalConfig | None = None,
                     progress: ProgressFn | None = None) -> list[str]:
    """Generate an answer for each example's prompt (chat template, left padding, batched).

    Args:
        model: causal LM or ``PeftModel``.
        tokenizer: its tokenizer.
        task: a ``TaskSpec`` (``igds.data.tasks.get_task``).
        examples: records (``content``: the input without instruction); ``cfg.n_examples`` is applied.
        cfg: evaluation settings.
        progress: ``progress(done, total, message)``.

    Returns:
        The decoded continuations (special tokens removed), in input order.
    """
    import torch

    cfg = cfg or EvalConfig()
    progress = progress or null_progress
    examples = _limit(examples, cfg)
    prompts = prompt_ids(tokenizer, task, examples, cfg)
    gen_cfg = generation_config(tokenizer, task, cfg)
    outputs: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    done = 0
    with torch.no_grad():
        for idx in generation_batches(prompts, cfg.batch_size):
            for i, text in zip(idx, generate_batch(model, tokenizer, [prompts[i] for i in idx], gen_cfg), strict=True):
                outputs[i] = text
            done += len(idx)
            progress(done, len(prompts), f"generate: {done}/{len(prompts)}")
    model.train(was_training)
    return outputs


def reference_nll(model, tokenizer, examples: Sequence, max_length: int = EVAL_LENGTH.max_length,
                  batch_tokens: int = 4096,
                  progress: ProgressFn | None = None) -> dict[str, float]:
    """Teacher-forced mean NLL of each reference response, ``{example_id: nll}``.

    Args:
        model: causal LM or ``PeftModel``.
        tokenizer: its tokenizer.
        examples: records with ``id``, ``task``, ``prompt``, ``response``.
        max_length: truncation in tokens.
        batch_tokens: token budget per batch.
        progress: ``progress(done, total, message)``.

    Returns:
        NLL per example id (NaN when the response was truncated away).
    """
    from igds.modeling.encoding import encode_examples
    from igds.modeling.nll import response_nll

    items = encode_examples(tokenizer, examples, max_length)
    return response_nll(base_transformer(model), items, _pad_id(tokenizer), batch_tokens, progress)


def _nanmean(values) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def eval_result(task, examples: Sequence, raw: Sequence[str], nll_by_id: dict[str, float], t0: float) -> dict:
    """Score generated outputs and assemble :func:`evaluate_model`'s result (every executor ends here).

    The task's metric runs once over all outputs (a corpus-level metric needs them together).

    Args:
        task: a ``TaskSpec``.
        examples: the evaluated records (``cfg.n_examples`` already applied), in result order.
        raw: the decoded continuation of each example, in that order.
        nll_by_id: reference NLL per example id (empty when not computed).
        t0: ``time.perf_counter()`` at the start of the evaluation.
    """
    refs = [ex.response for ex in examples]
    scored = task.score(raw, refs)
    nll_per = [nll_by_id.get(ex.id, math.nan) for ex in examples]
    slices = {}
    if task.metric == "exact_match":
        keep = [i for i, ex in enumerate(examples) if (ex.meta or {}).get("n_steps", 99) <= MAX_STEPS_SLICE]
        if keep:
            slices[f"le{MAX_STEPS_SLICE}_steps"] = sum(scored["per_example"][i] for i in keep) / len(keep)
            slices[f"le{MAX_STEPS_SLICE}_steps_n"] = len(keep)
    return {
        "task": task.name, "metric": scored["metric"], "score": float(scored["score"]), "n": len(examples),
        "example_ids": [ex.id for ex in examples], "raw_outputs": list(raw),
        "predictions": [task.extract_answer(r) for r in raw], "references": refs,
        "per_example": [float(v) for v in scored["per_example"]],
        "nll": _nanmean(nll_per), "nll_per_example": nll_per, "slices": slices,
        "seconds": time.perf_counter() - t0,
    }


def evaluate_model(model, tokenizer, task, examples: Sequence, cfg: EvalConfig | None = None,
                   progress: ProgressFn | None = None) -> dict:
    """Task metric (greedy generation) and mean reference NLL on ``examples``.

    Args:
        model: causal LM or ``PeftModel``.
        tokenizer: its tokenizer.
        task: a ``TaskSpec``.
        examples: test records (``cfg.n_examples`` applied).
        cfg: evaluation settings.
        progress: ``progress(done, total, message)``.

    Returns:
        dict with ``task``, ``metric``, ``score`` (corpus score), ``n``, ``example_ids``,
        ``predictions`` (extracted answers), ``raw_outputs``, ``references``, ``per_example``,
        ``nll`` (mean) and ``nll_per_example``, ``slices`` (math: ``le2_steps``) and ``seconds``.
        :meth:`igds.executor.evaluate.Evaluator.evaluate` returns the same on any pool.
    """
    cfg = cfg or EvalConfig()
    progress = progress or null_progress
    examples = _limit(examples, cfg)
    t0 = time.perf_counter()
    raw = generate_outputs(model, tokenizer, task, examples, cfg, scaled(progress, 0, 80, 100))
    nll_by_id = (reference_nll(model, tokenizer, examples, cfg.max_length, cfg.batch_tokens,
                               scaled(progress, 80, 20, 100)) if cfg.nll else {})
    progress(100, 100, "evaluate: done")
    return eval_result(task, examples, raw, nll_by_id, t0)


def activation_config(max_length: int, positions: str, batch_tokens: int):
    """The :class:`igds.method.extract.ExtractConfig` :func:`feature_activation` runs ``process_batch`` with."""
    from igds.method.extract import ExtractConfig

    return ExtractConfig(positions=positions, max_length=max_length, batch_tokens=max(batch_tokens, max_length))


def activation_batch(net, sae, site: str, batch: Sequence, cfg, pad_id: int,
                     feats: Sequence[int]) -> dict[str, dict[int, float]]:
    """Mean activation ``a_j(s)`` of each feature in ``feats`` on each example of one batch.

    Args:
        net: the plain transformer (:func:`base_transformer`).
        sae: the sae-lens SAE.
        site: its hook site.
        batch: one batch of :class:`igds.modeling.batching.EncodedItem` (the sink guard is per batch, so
            every executor runs the same ``length_batches``).
        cfg: :func:`activation_config`.
        pad_id: padding token id.
        feats: the features ``F``.

    Returns:
        ``{example_id: {feature: sum_act / n_tokens}}`` (0 where the feature did not fire), in batch order,
        for the examples with kept tokens only (the others have no defined mean).
    """
    from igds.method.extract import process_batch

    fset = set(feats)
    acts, stats = process_batch(net, sae, site, batch, cfg, pad_id)
    n_tok = dict(zip(stats.column("example_id").to_pylist(), stats.column("n_tokens").to_pylist(), strict=True))
    per_example: dict[str, dict[int, float]] = {}
    for eid, n in n_tok.items():
        if n > 0:  # an example without kept tokens has no defined mean activation
            per_example[eid] = dict.fromkeys(feats, 0.0)
    rows = zip(acts.column("example_id").to_pylist(), acts.column("feature").to_pylist(),
               acts.column("sum_act").to_pylist(), strict=True)
    for eid, f, s in rows:
        if f in fset and eid in per_example:
            per_example[eid][f] = s / n_tok[eid]
    return per_example


def aggregate_activation(per_example: dict[str, dict[int, float]], feats: Sequence[int]) -> dict:
    """:func:`feature_activation`'s result from its per-example means (summed in the dict's order)."""
    n = len(per_example)
    per_feature = {f: (sum(e[f] for e in per_example.values()) / n if n else math.nan) for f in feats}
    total = sum(sum(e.values()) for e in per_example.values()) / n if n else math.nan
    return {"A": total, "per_feature": per_feature, "features": list(feats), "n": n}


def feature_activation(model, tokenizer, sae, site: str, examples: Sequence, features: Sequence[int],
                       max_length: int = STAGE_LENGTH.max_length, positions: str = CONTENT.positions,
                       batch_tokens: int = 4096,
                       progress: ProgressFn | None = None) -> dict:
    """Task-feature activation ``A(model) = mean_s Σ_{j∈F} a_j(s)`` through the same SAE.

    ``a_j(s)`` is feature ``j``'s mean activation over the kept tokens of example ``s`` (BOS and
    attention sinks excluded, as in extraction): ``sum_act / n_tokens``, 0 where it did not fire.

    Args:
        model: causal LM or ``PeftModel``.
        tokenizer: its tokenizer.
        sae: the sae-lens SAE the features belong to.
        site: hook site of the SAE (``blocks.{L}.hook_resid_post``).
        examples: records (prompt and reference response are both run through the model).
        features: the task features ``F``.
        max_length: truncation in tokens.
        positions: token scope (``igds.modeling.batching.POSITION_SCOPES``), the extraction's by default.
        batch_tokens: token budget per batch.
        progress: ``progress(done, total, message)``.

    Returns:
        ``{"A": float, "per_feature": {j: mean_s a_j(s)}, "features": [...], "n": examples used}``.
    """
    from igds.modeling.batching import length_batches
    from igds.modeling.encoding import encode_examples

    progress = progress or null_progress
    feats = [int(f) for f in features]
    cfg = activation_config(max_length, positions, batch_tokens)
    items = encode_examples(tokenizer, examples, max_length)
    net = base_transformer(model)
    per_example: dict[str, dict[int, float]] = {}
    done = 0
    for batch in length_batches(items, cfg.batch_tokens):
        per_example.update(activation_batch(net, sae, site, batch, cfg, _pad_id(tokenizer), feats))
        done += len(batch)
        progress(done, len(items), f"feature activation: {done}/{len(items)}")
    return aggregate_activation(per_example, feats)


def restrict_activation(act: dict, features: Sequence[int]) -> dict:
    """:func:`feature_activation` of a subset of the measured features: ``A`` is additive over features
    (``A = Σ_j mean_s a_j(s)``), so any subset's value follows from the per-feature means of one pass."""
    feats = [int(f) for f in features]
    per = {f: act["per_feature"][f] for f in feats}
    return {"A": sum(per.values()) if feats else math.nan, "per_feature": per, "features": feats, "n": act["n"]}


def amplification(a_tuned: dict, a_base: dict) -> dict:
    """Feature amplification ``A(tuned) / A(base) - 1``, overall and per feature.

    Args:
        a_tuned: :func:`feature_activation` of the fine-tuned model.
        a_base: :func:`feature_activation` of the base model (same SAE, features and examples).

    Returns:
        ``{"amplification": float, "per_feature": {j: float}}``; NaN where the base value is 0.
    """
    def ratio(t: float, b: float) -> float:
        return t / b - 1.0 if b and not math.isnan(b) else math.nan

    per = {f: ratio(a_tuned["per_feature"].get(f, math.nan), b) for f, b in a_base["per_feature"].items()}
    return {"amplification": ratio(a_tuned["A"], a_base["A"]), "per_feature": per}
