"""The training layer's configs, free of torch so importing them stays cheap.

:class:`EvalConfig` (:mod:`igds.training.evaluate`, which re-exports it). Run ids hash these configs
(:meth:`igds.config.ConfigBase.stage_key`): a change of a field, default or class name changes the keys of
existing runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from igds.config import ConfigBase
from igds.data.tasks import MAX_NEW_TOKENS
from igds.scope import EVAL_LENGTH


@dataclass(frozen=True, kw_only=True)
class EvalConfig(ConfigBase):
    """How a model is evaluated.

    Args:
        max_new_tokens: generation budget (at most ``MAX_NEW_TOKENS``); 0 uses the task's own.
        batch_size: prompts per generation batch.
        n_examples: evaluate a seeded sample of N examples stratified by source (0: all; see
            :func:`igds.data.corpus.stratified_sample`).
        sample_seed: seed of that sample.
        greedy: greedy decoding (sampling otherwise).
        max_length: prompt / teacher-forcing truncation in tokens (512: no shipped test prompt is cut).
        nll: also compute the mean reference NLL.
        batch_tokens: token budget per NLL batch.
    """

    max_new_tokens: int = field(default=0, metadata={"help": "generation budget (0: the task's)"})
    batch_size: int = field(default=16, metadata={"help": "prompts per generation batch"})
    n_examples: int = field(default=0, metadata={"help": "a seeded sample stratified by source (0: all)"})
    sample_seed: int = field(default=0, metadata={"help": "seed of the stratified test sample"})
    greedy: bool = field(default=True, metadata={"help": "greedy decoding"})
    max_length: int = field(default=EVAL_LENGTH.max_length, metadata={"help": "prompt / teacher-forcing truncation"})
    nll: bool = field(default=True, metadata={"help": "also compute the mean reference NLL"})
    batch_tokens: int = field(default=4096, metadata={"help": "tokens per NLL batch"})

    def __post_init__(self):
        if self.max_new_tokens < 0 or self.n_examples < 0:
            raise ValueError("max_new_tokens and n_examples must be >= 0")
        if self.max_new_tokens > MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be at most {MAX_NEW_TOKENS:,}, not {self.max_new_tokens:,}")
        if self.batch_size < 1 or self.max_length < 2 or self.batch_tokens < self.max_length:
            raise ValueError("need batch_size >= 1, max_length >= 2 and batch_tokens >= max_length")
