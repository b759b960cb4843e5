"""Evaluation's one driver: generation, reference NLL and feature activation split over a pool's workers by
batches.

The driver tokenizes and plans the batches exactly as the local functions of :mod:`igds.training.evaluate` do
(:func:`~igds.training.evaluate.generation_batches`, ``length_batches``), ships whole batches to the workers and puts
their per-example outputs back in place; the metric, the means and the result dict come from the same functions
(:func:`~igds.training.evaluate.eval_result`, :func:`~igds.training.evaluate.aggregate_activation`). Padding and the
sink guard depend on a batch's members, so per-example outputs are identical on every pool (bit for bit with the
same weights, dtype and thread count).

A remote worker loads the base model (and the SAE when features are measured) from the stored specs, and a tuned
model's LoRA adapter from its folder on the shared filesystem; nothing model-sized goes through the object store. A
local worker serves the caller's model (a ``PeftModel`` too). One :class:`Evaluator` serves the base and the tuned
evaluation of a run on one set of workers: the base evaluation runs with the adapter disabled.
"""

from __future__ import annotations

from collections.abc import Sequence

from igds.executor.pool import PoolRequest
from igds.executor.registry import Opener
from igds.progress import ProgressFn, null_progress, scaled


class Evaluator:
    """Workers that evaluate one base model, with or without one LoRA adapter. Use as a context manager (leaving it
    releases the workers).

    Args:
        pool: opens the pool (:func:`igds.executor.pool.stage_pool`; a remote worker's spec names the adapter).
        tokenizer: the model's tokenizer, here on the driver (prompts and batches are planned here).
        n_examples: how many examples an evaluation has (no more workers than that).
        tuned: whether the workers hold a tuned model (a LoRA adapter) beside its base weights.
        progress: ``progress(done, total, message)`` for starting the workers.
    """

    def __init__(self, pool: Opener, tokenizer, n_examples: int, tuned: bool = False,
                 progress: ProgressFn | None = None):
        self.tokenizer = tokenizer
        self.tuned = tuned
        self.pool = pool(PoolRequest("evaluate", max(1, n_examples), progress=progress))

    def close(self) -> None:
        """Release the workers."""
        self.pool.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _base(self, base: bool) -> bool:
        if not base and not self.tuned:
            raise ValueError("this evaluator has no tuned model: evaluate the base model (base=True)")
        return base

    def _run(self, method: str, batches: list, args: tuple, progress: ProgressFn, what: str) -> list:
        """``worker.<method>([batch], *args)`` for every batch (one batch an item, so free workers balance the load);
        returns the results in batch order."""
        out: list = [None] * len(batches)
        done, total = 0, sum(len(b) for b in batches)
        for k, res in self.pool.imap(method, [([b], *args) for b in batches]):
            out[k] = res[0] if isinstance(res, list) else res  # a list has one entry per batch; eval_nll merges
            done += len(batches[k])
            progress(done, total, f"{what}: {done}/{total}")
        return out

    def evaluate(self, task, examples: Sequence, cfg=None, progress: ProgressFn | None = None,
                 base: bool = False) -> dict:
        """:func:`igds.training.evaluate.evaluate_model` on the workers: the same result dict.

        Args:
            task: a ``TaskSpec``.
            examples: test records (``cfg.n_examples`` applied).
            cfg: an :class:`igds.training.evaluate.EvalConfig`.
            progress: ``progress(done, total, message)``.
            base: evaluate the base weights (else the adapter).
        """
        import time

        from igds.modeling.batching import length_batches
        from igds.modeling.encoding import encode_examples
        from igds.training.evaluate import (
            EvalConfig,
            _limit,
            _pad_id,
            eval_result,
            generation_batches,
            generation_config,
            prompt_ids,
        )

        cfg = cfg or EvalConfig()
        progress = progress or null_progress
        base = self._base(base)
        examples = _limit(examples, cfg)
        t0 = time.perf_counter()
        prompts = prompt_ids(self.tokenizer, task, examples, cfg)
        plan = generation_batches(prompts, cfg.batch_size)
        texts = self._run("eval_generate", [[prompts[i] for i in idx] for idx in plan],
                          (generation_config(self.tokenizer, task, cfg), base), scaled(progress, 0, 80, 100),
                          "generate")
        raw = [""] * len(prompts)
        for idx, batch_texts in zip(plan, texts, strict=True):
            for i, text in zip(idx, batch_texts, strict=True):
                raw[i] = text
        nll_by_id: dict[str, float] = {}
        if cfg.nll:
            batches = length_batches(encode_examples(self.tokenizer, examples, cfg.max_length), cfg.batch_tokens)
            for part in self._run("eval_nll", batches, (_pad_id(self.tokenizer), cfg.batch_tokens, base),
                                  scaled(progress, 80, 20, 100), "response NLL"):
                nll_by_id.update(part)
        progress(100, 100, "evaluate: done")
        return eval_result(task, examples, raw, nll_by_id, t0)

    def feature_activation(self, examples: Sequence, features: Sequence[int], max_length: int,
                           positions: str, batch_tokens: int = 4096, progress: ProgressFn | None = None,
                           base: bool = False) -> dict:
        """:func:`igds.training.evaluate.feature_activation` on the workers (their SAE at its site): the same
        result dict, per-example means summed in the local order."""
        from igds.modeling.batching import length_batches
        from igds.modeling.encoding import encode_examples
        from igds.training.evaluate import _pad_id, activation_config, aggregate_activation

        progress = progress or null_progress
        feats = [int(f) for f in features]
        cfg = activation_config(max_length, positions, batch_tokens)
        batches = length_batches(encode_examples(self.tokenizer, examples, max_length), cfg.batch_tokens)
        per_example: dict[str, dict[int, float]] = {}
        for part in self._run("eval_activation", batches,
                              (cfg.to_dict(), _pad_id(self.tokenizer), feats, self._base(base)), progress,
                              "feature activation"):
            per_example.update(part)
        return aggregate_activation(per_example, feats)
