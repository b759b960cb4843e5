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
from igds.scope import CONTENT, EDIT_SCOPE, STAGE_LENGTH, Scoped

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
    """Causal validation of candidate features against a null of edits of the same size.

    Args:
        edit_mode: ``scale`` (``z ← (1+α)·z`` where the feature fires) or ``add`` (``α·ā·W_dec`` at
            every edited position); see the module docstring.
        positions: token scope the edits apply to (:data:`igds.modeling.config.POSITION_SCOPES`).
        alphas: amplification coefficients; ``PRIMARY_ALPHA`` (1.0) is required and decides the filter.
            The ``sweep_top`` candidates get all of them (dose–response), the others α = 1 only.
        sweep_top: candidates (strongest ``|attribution estimate|`` first) measured at every α.
        ablate: also measure ablation (subtract the feature's own contribution).
        max_length: truncate dev examples to this many tokens.
        batch_rows: (job, example) rows replayed per forward.
        sink_norm_factor: positions above this × median residual norm are never edited.
        null_directions: random directions in the null.
        null_features: density-matched random non-candidate features in the null.
        null_seed: seed of the null's directions and feature draws.
        null_quantile: quantile of the pooled null effects a candidate must exceed (when ``delta`` is None).
        delta: explicit minimum α = 1 effect (nats) instead of the null quantile; None uses the null.
        fdr: Benjamini–Hochberg level of the one-sided paired test.
        require_significance: keep only features whose BH-adjusted p-value is below ``fdr``.
        precision: ``auto`` (an fp32 residual stream, with bf16 matmuls where the precision of record is bf16:
            CUDA; fp32 on every CPU, :func:`igds.settings.fast_bf16_by_default`) or ``fp32``.
    """

    edit_mode: str = field(default=SCALE, metadata={"help": "scale (z ← (1+α)z where active) | add (α·ā·W_dec)"})
    positions: str = field(default=EDIT_SCOPE.positions, metadata={
        "help": "edited token scope: content | prompt_content | response | last_prompt_token | all"})
    alphas: tuple[float, ...] = field(default=(0.5, 1.0, 2.0), metadata={"help": "amplification coefficients α"})
    sweep_top: int = field(default=8, metadata={"help": "top candidates (by attribution) measured at every α"})
    ablate: bool = field(default=True, metadata={"help": "also measure ablation"})
    max_length: int = field(default=STAGE_LENGTH.max_length,
                            metadata={"help": "truncate dev examples to this many tokens"})
    batch_rows: int = field(default=64, metadata={"help": "rows per replayed forward"})
    sink_norm_factor: float = field(default=10.0, metadata={"help": "sink guard factor"})
    null_directions: int = field(default=32, metadata={"help": "random directions in the null"})
    null_features: int = field(default=16, metadata={"help": "density-matched non-candidate features in the null"})
    null_seed: int = field(default=0, metadata={"help": "seed of the null"})
    null_quantile: float = field(default=0.95, metadata={"help": "null quantile a kept effect must exceed"})
    delta: float | None = field(default=None, metadata={
        "help": "min amplification effect to keep (nats); unset: the null quantile"})
    fdr: float = field(default=0.05, metadata={"help": "BH false-discovery rate of the paired test"})
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
        if not 0 < self.fdr <= 1:
            raise ValueError("fdr must be in (0, 1]")
        if min(self.null_directions, self.null_features, self.sweep_top) < 0:
            raise ValueError("null_directions, null_features and sweep_top must be >= 0")
        if not 0 < self.null_quantile < 1:
            raise ValueError("null_quantile must be in (0, 1)")
        if self.delta is None and self.null_directions + self.null_features == 0:
            raise ValueError("delta=None compares effects with the null: keep null_directions or null_features > 0")


    @property
    def null_size(self) -> int:
        """Null elements asked for (fewer density-matched features exist when few features fire)."""
        return self.null_directions + self.null_features


@dataclass(frozen=True, kw_only=True)
class QuickLookConfig(ConfigBase):
    """The quick look a first run shows while the full filter waits (ours, not the paper's): the α = 1 amplification
    effect of the ``top`` strongest candidates by attribution against a small null, on the filter's dev items and
    edits (:class:`InterventionConfig` otherwise). A preview: it feeds no F*, ranking or selection.

    Args:
        top: candidates measured (strongest ``|attribution estimate|`` first).
        null_directions: random directions in the small null.
        null_features: density-matched non-candidate features in the small null.
        level: two-sided test level of the detectable effect.
        power: power of the detectable effect.
    """

    top: int = field(default=5, metadata={"help": "candidates measured, strongest attribution first"})
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
        """The intervention config the look runs: ``base``'s edits, scope and dev cut, α = 1 only, no ablation, no
        sweep, the small null."""
        import dataclasses

        return dataclasses.replace(base, alphas=(PRIMARY_ALPHA,), sweep_top=0, ablate=False,
                                   null_directions=self.null_directions, null_features=self.null_features)


# The paper's literal reading: keep every candidate whose amplification lowers the dev NLL, no test,
# no null requirement (the null is still measured and shown).
PAPER_INTERVENTION = InterventionConfig(require_significance=False, delta=0.0)


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
