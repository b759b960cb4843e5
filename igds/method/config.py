"""The method layer's stage configs, free of torch so importing them stays cheap.

:class:`ExtractConfig` (:mod:`igds.method.extract`), :class:`RecallConfig` and :data:`PAPER_RECALL`
(:mod:`igds.method.recall`), :class:`InterventionConfig`, :data:`PAPER_INTERVENTION` and the edit modes
(:mod:`igds.method.intervene`), :class:`QuickLookConfig` (:mod:`igds.method.quicklook`) and :class:`CheckConfig`
(:mod:`igds.method.checks`). The stage modules re-export
them. Run ids hash these configs (:meth:`igds.config.ConfigBase.stage_key`): a change of a field, default or
class name changes the keys of existing runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from igds.config import ConfigBase
from igds.modeling.config import check_positions
from igds.scope import CONTENT, NO_CUT, STAGE_LENGTH, Scoped

SCALE = "scale"
ADD = "add"
EDIT_MODES = (SCALE, ADD)
PRIMARY_ALPHA = 1.0  # the amplification coefficient whose effect decides F* (see InterventionConfig.alphas)


@dataclass(frozen=True, kw_only=True)
class ExtractConfig(Scoped, ConfigBase):
    """How activations are extracted and aggregated.

    Args:
        positions: which token positions count (``igds.modeling.config.POSITION_SCOPES``): ``content``
            (the example's own prompt content + response, default), ``prompt_content``, ``response``,
            ``last_prompt_token`` or ``all`` (template and instruction included).
        max_length: truncate formatted examples to this many tokens.
        batch_tokens: token budget per forward batch (padded length × rows).
        shard_size: examples per shard (the unit of resume and of scale-out).
        sink_norm_factor: drop positions whose residual norm exceeds this × the batch median.
    """

    positions: str = field(default=CONTENT.positions, metadata={
        "help": "token scope: content | prompt_content | response | last_prompt_token | all"})
    max_length: int = field(default=STAGE_LENGTH.max_length,
                            metadata={"help": "truncate examples to this many tokens"})
    batch_tokens: int = field(default=4096, metadata={"help": "tokens per forward batch"})
    shard_size: int = field(default=256, metadata={"help": "examples per resumable shard"})
    sink_norm_factor: float = field(default=10.0, metadata={"help": "sink guard: norm > factor × median"})

    def __post_init__(self):
        check_positions(self.positions)
        if self.max_length < 2 or self.batch_tokens < self.max_length or self.shard_size < 1:
            raise ValueError("need max_length >= 2, batch_tokens >= max_length and shard_size >= 1")
        if self.sink_norm_factor <= 1:
            raise ValueError("sink_norm_factor must be > 1")


FREQUENCIES = ("token", "example")


@dataclass(frozen=True, kw_only=True)
class RecallConfig(ConfigBase):
    """Frequency recall of task features.

    Frequencies are read over the extraction run's token scope (``content`` by default: the examples'
    own text, never template or instruction tokens).

    Args:
        frequency: ``token`` (default): share of probe tokens a feature fires on, against the same share
            on the reference set — free of the length confound; ``example``: share of probe examples
            (the paper's per-sample frequency; longer examples "fire" more often).
        min_freq: keep features firing on at least this share of probe examples (both modes).
        min_tok_freq: in ``token`` mode, keep features firing on at least this share of probe tokens.
        k_recall: at most this many candidates, by rank.
        dense_ref: drop features whose reference frequency (the mode's) is at least this (always-on guard;
            1.0 switches the guard off).
        contrast: rank by lift ``freq_task / (freq_ref + eps)`` (default) instead of ``freq_task``.
        eps: smoothing of the lift, on the mode's frequency scale.
        n_reference: size of the reference sample (the corpus's reference split, in no pool).
        seed: seed of the reference sample.
    """

    frequency: str = field(default="token", metadata={"help": "token (lift on token frequency) | example (paper)"})
    min_freq: float = field(default=0.05, metadata={"help": "min share of probe examples a feature fires on"})
    min_tok_freq: float = field(default=0.002, metadata={"help": "token mode: min share of probe tokens"})
    k_recall: int = field(default=32, metadata={"help": "max number of candidates"})
    dense_ref: float = field(default=0.5, metadata={"help": "drop features this frequent on reference text"})
    contrast: bool = field(default=True, metadata={"help": "rank by lift over reference instead of frequency"})
    eps: float = field(default=0.001, metadata={"help": "lift smoothing (on the mode's frequency scale)"})
    n_reference: int = field(default=512, metadata={"help": "reference sample size"})
    seed: int = field(default=0, metadata={"help": "reference sample seed"})
    drop_token_detectors: bool = field(default=False, metadata={
        "help": "leave out features the token-injection test flagged (igds check)", "added": True})

    def __post_init__(self):
        if self.frequency not in FREQUENCIES:
            raise ValueError(f"frequency must be one of {FREQUENCIES}, not {self.frequency!r}")
        if not 0 <= self.min_freq <= 1 or not 0 <= self.min_tok_freq <= 1 or not 0 < self.dense_ref <= 1:
            raise ValueError("min_freq and min_tok_freq must be in [0, 1] and dense_ref in (0, 1]")
        if self.k_recall < 1:
            raise ValueError("k_recall must be >= 1")


# the paper's literal reading: per-sample frequency, ranked by frequency, no dense guard
PAPER_RECALL = RecallConfig(frequency="example", min_freq=0.2, contrast=False, dense_ref=1.0, eps=0.01, k_recall=64)


@dataclass(frozen=True, kw_only=True)
class InterventionConfig(Scoped, ConfigBase):
    """Causal validation of candidate features against a fitted null of edits like theirs.

    Args:
        edit_mode: ``scale`` (``z ← (1+α)·z`` where the feature fires) or ``add`` (``α·ā·W_dec`` at
            every edited position); see the module docstring.
        positions: token scope the edits apply to (:data:`igds.modeling.config.POSITION_SCOPES`); ``content`` by
            default, the scope recall and FRS read.
        alphas: amplification coefficients; ``PRIMARY_ALPHA`` (1.0) is required and decides the filter. The
            features kept (F*) get all of them (dose–response) and ablation; the others α = 1 only.
        sweep_top: the strongest kept features (by effect) measured at every α and ablated.
        ablate: also measure ablation of the kept features.
        max_length: dev examples longer than this many tokens are dropped and counted, never cut.
        batch_rows: (job, example) rows replayed per forward.
        sink_norm_factor: positions above this × median residual norm are never edited.
        dev_items: dev items measured (a seeded sample in look order; 0: all).
        looks: futility looks after this many items; a candidate that can no longer reach the threshold stops
            there (:func:`igds.method.verdict.futile`), survivors run to ``dev_items``.
        futility: one-sided level of the upper confidence bound the futility rule reads.
        min_fired: a candidate whose edit changes fewer dev items than this is "untestable", not rejected.
        null_features: density-matched non-candidate features in the null, each edited by its own rule.
        null_placed: random directions per candidate, placed on its firing positions at its per-position edit
            norm.
        null_directions: random directions at the candidates' median edit size spread over every edited
            position (the earlier null; 0 by default).
        share_tol: a null feature's share of firing positions in the response is within this of its candidate's.
        null_seed: seed of the look order, the null's directions and feature draws.
        null_fit: ``t`` or ``normal``: the distribution fitted to the null's effects that gives each p.
        delta: an explicit minimum α = 1 effect (nats) on top of the test; None: the test alone.
        fdr: Benjamini–Hochberg level across the tested candidates.
        require_significance: keep only features whose BH-adjusted p-value is below ``fdr``.
        precision: ``auto`` (an fp32 residual stream, with bf16 matmuls where the precision of record is bf16:
            CUDA; fp32 on every CPU, :func:`igds.settings.fast_bf16_by_default`) or ``fp32``.
    """

    edit_mode: str = field(default=SCALE, metadata={"help": "scale (z ← (1+α)z where active) | add (α·ā·W_dec)"})
    positions: str = field(default=CONTENT.positions, metadata={
        "help": "edited token scope: content | prompt_content | response | last_prompt_token | all"})
    alphas: tuple[float, ...] = field(default=(0.5, 1.0, 2.0), metadata={"help": "amplification coefficients α"})
    sweep_top: int = field(default=8, metadata={"help": "kept features measured at every α and ablated"})
    ablate: bool = field(default=True, metadata={"help": "also measure ablation of the kept features"})
    max_length: int = field(default=NO_CUT.max_length,
                            metadata={"help": "drop (never cut) dev examples longer than this"})
    batch_rows: int = field(default=64, metadata={"help": "rows per replayed forward"})
    sink_norm_factor: float = field(default=10.0, metadata={"help": "sink guard factor"})
    dev_items: int = field(default=256, metadata={"help": "dev items measured (seeded sample; 0: all)"})
    looks: tuple[int, ...] = field(default=(64, 128, 192), metadata={"help": "futility looks (items)"})
    futility: float = field(default=0.01, metadata={"help": "level of the futility rule's upper bound"})
    min_fired: int = field(default=10, metadata={"help": "fewer dev items fired: untestable"})
    null_features: int = field(default=128, metadata={"help": "density-matched non-candidate features in the null"})
    null_placed: int = field(default=4, metadata={"help": "random directions per candidate on its positions"})
    null_directions: int = field(default=0, metadata={"help": "random directions spread over every edited position"})
    share_tol: float = field(default=0.1, metadata={"help": "response-share match of a null feature"})
    null_seed: int = field(default=0, metadata={"help": "seed of the look order and the null"})
    null_fit: str = field(default="t", metadata={"help": "distribution fitted to the null: t | normal"})
    delta: float | None = field(default=None, metadata={
        "help": "min amplification effect to keep (nats), on top of the test"})
    fdr: float = field(default=0.05, metadata={"help": "BH false-discovery rate"})
    require_significance: bool = field(default=True, metadata={"help": "keep only BH-significant features"})
    precision: str = field(default="auto", metadata={
        "help": "auto (fp32 residual stream; bf16 matmuls on CUDA, fp32 on every CPU) | fp32"})

    def __post_init__(self):
        if self.precision not in ("auto", "fp32"):
            raise ValueError("precision must be auto or fp32")
        if self.edit_mode not in EDIT_MODES:
            raise ValueError(f"edit_mode must be one of {', '.join(EDIT_MODES)}, not {self.edit_mode!r}")
        check_positions(self.positions)
        if not self.alphas or PRIMARY_ALPHA not in self.alphas:
            raise ValueError(f"alphas must include {PRIMARY_ALPHA} (it decides the filter)")
        if not 0 < self.fdr <= 1 or not 0 < self.futility < 1:
            raise ValueError("fdr must be in (0, 1] and futility in (0, 1)")
        if min(self.null_directions, self.null_features, self.null_placed, self.sweep_top, self.dev_items,
               self.min_fired) < 0:
            raise ValueError("null sizes, sweep_top, dev_items and min_fired must be >= 0")
        if list(self.looks) != sorted(set(self.looks)) or any(k < 2 for k in self.looks):
            raise ValueError("looks must be increasing item counts >= 2")
        if self.null_fit not in ("t", "normal"):
            raise ValueError(f"null_fit must be t or normal, not {self.null_fit!r}")
        if self.require_significance and self.null_size == 0:
            raise ValueError("the test compares effects with the null: keep null_features, null_placed or "
                             "null_directions > 0")

    @property
    def null_size(self) -> int:
        """Null elements per run that do not depend on the candidates (the placed directions add
        ``null_placed`` per tested candidate; fewer density-matched features exist when few features fire)."""
        return self.null_directions + self.null_features + self.null_placed


@dataclass(frozen=True, kw_only=True)
class QuickLookConfig(ConfigBase):
    """The quick look a first run shows while the full filter waits (ours, not the paper's): the α = 1 amplification
    effect of the ``top`` strongest candidates by attribution against a small null, on the filter's dev items and
    edits (:class:`InterventionConfig` otherwise). A preview: it feeds no F*, ranking or selection.

    Args:
        top: candidates measured (strongest ``|attribution estimate|`` first).
        dev_items: dev items measured (the first of the filter's look order).
        null_directions: random directions in the small null.
        null_features: density-matched non-candidate features in the small null.
        level: two-sided test level of the detectable effect.
        power: power of the detectable effect.
    """

    top: int = field(default=5, metadata={"help": "candidates measured, strongest attribution first"})
    dev_items: int = field(default=64, metadata={"help": "dev items the look measures"})
    null_directions: int = field(default=3, metadata={"help": "random directions in the small null"})
    null_features: int = field(default=3, metadata={"help": "density-matched features in the small null"})
    level: float = field(default=0.05, metadata={"help": "two-sided level of the detectable effect"})
    power: float = field(default=0.8, metadata={"help": "power of the detectable effect"})

    def __post_init__(self):
        if self.top < 1 or self.null_directions + self.null_features < 1:
            raise ValueError("a quick look measures at least one candidate against at least one null element")
        if not 0 < self.level < 1 or not 0 < self.power < 1:
            raise ValueError("level and power must be in (0, 1)")

    def intervention(self, base: InterventionConfig) -> InterventionConfig:
        """The intervention config the look runs: ``base``'s edits, scope and length rule, α = 1 only, no ablation,
        no sweep, no futility looks, ``dev_items`` items and the small null (global random directions and
        density-matched features)."""
        import dataclasses

        return dataclasses.replace(base, alphas=(PRIMARY_ALPHA,), sweep_top=0, ablate=False, looks=(),
                                   dev_items=self.dev_items, null_directions=self.null_directions,
                                   null_features=self.null_features, null_placed=0)


# The paper's literal reading: keep the candidates whose amplification significantly lowers the dev NLL. The paper
# names no test; this one is ours (the fitted null and BH of the default), with no explicit minimum effect.
PAPER_INTERVENTION = InterventionConfig()


@dataclass(frozen=True, kw_only=True)
class CheckConfig(ConfigBase):
    """Settings of the feature checks.

    Args:
        n_texts: reference texts the tokens are injected into.
        n_tokens: top-activating tokens injected per feature.
        threshold: a text counts when the feature fires above this share of its median top activation.
        majority: flagged as a token detector when more than this share of texts count.
        match_threshold: decoder cosine at which a feature counts as found again by the other seed's SAE.
        seed: seeds the reference sample and the insertion points.
        max_length: tokens per text.
    """

    n_texts: int = field(default=100, metadata={"help": "reference texts to inject into"})
    n_tokens: int = field(default=5, metadata={"help": "top-activating tokens injected"})
    threshold: float = field(default=0.5, metadata={"help": "share of the median top activation that counts"})
    majority: float = field(default=0.5, metadata={"help": "flag when more than this share of texts count"})
    match_threshold: float = field(default=0.7, metadata={"help": "decoder cosine of a stable feature"})
    seed: int = field(default=0, metadata={"help": "reference sample and insertion seed"})
    max_length: int = field(default=STAGE_LENGTH.max_length, metadata={"help": "tokens per text"})
