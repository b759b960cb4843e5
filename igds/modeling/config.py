"""The modeling layer's configs and the token scopes, free of torch so importing them stays cheap.

:class:`ModelSpec` (which language model, :mod:`igds.modeling.load`), :class:`SaeSpec` and :class:`SaeTrainConfig`
(which SAE and the default SAE's recipe, :mod:`igds.modeling.sae`); :data:`POSITION_SCOPES` (the token scopes
every stage honours) is defined in :mod:`igds.scope`. The modules that use them re-export them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from igds.config import ConfigBase
from igds.scope import CONTENT, POSITION_SCOPES, SAE_TRAIN_LENGTH, check_positions

__all__ = ["POSITION_SCOPES", "ModelSpec", "SaeSpec", "SaeTrainConfig", "check_positions"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec(ConfigBase):
    """Which language model to load and how.

    Args:
        name_or_path: ``default`` (SmolLM2-135M-Instruct, offline), a local HF model folder, or a hub id.
        dtype: ``auto`` (the precision of record: bf16 on CUDA, float32 on every CPU), ``float32``, ``bfloat16``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...
        trust_remote_code: allow custom modelling code from a hub repository (off by default).
    """

    name_or_path: str = field(default="default", metadata={"help": "'default', a local folder or a hub id"})
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    trust_remote_code: bool = field(default=False, metadata={"help": "allow custom code from the hub"})

    def __post_init__(self):
        if self.dtype not in ("auto", "float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, not {self.dtype!r}")


@dataclass(frozen=True, kw_only=True)
class SaeSpec(ConfigBase):
    """Which SAE to use.

    Args:
        source: ``default`` (trained by IGDS on the default model), a local sae-lens folder
            (``cfg.json`` + ``sae_weights.safetensors``), or ``<release>::<sae_id>`` of a sae-lens
            pretrained release (downloads; needs ``IGDS_OFFLINE=0``).
        site: hook site override, when the SAE's config does not name one.
        min_explained_variance: refuse SAEs reconstructing less than this share of variance.
    """

    source: str = field(default="default", metadata={"help": "'default', a local folder or '<release>::<sae_id>'"})
    site: str = field(default="", metadata={"help": "hook site override, e.g. blocks.15.hook_resid_post"})
    min_explained_variance: float = field(default=0.7, metadata={"help": "refuse SAEs below this EV"})


@dataclass(frozen=True, kw_only=True)
class SaeTrainConfig(ConfigBase):
    """Training recipe of the default SAE (TopK, sae-lens ``SAETrainer`` on our own activations).

    Args:
        layer: residual stream after this block.
        d_sae: number of latents.
        k: active latents per token.
        positions: token scope the SAE is trained (and evaluated) on; the pipeline's scope, ``content``.
        n_tokens: at most this many training activations (every one the training texts give, up to it).
        epochs: passes over the collected activations.
        lr: Adam learning rate.
        batch_size: activations per training step.
        max_length: tokens per sequence (the shipped SAE's recipe: 256; bench/sae_positions.py measures it beyond).
        holdout_examples: texts held out of training; quality (EV, CE recovered) is measured on them.
        dead_tokens: training activations the dead-latent share is counted over.
        seed: seeds the text split, shuffling and initialisation.
    """

    layer: int = field(default=15, metadata={"help": "block whose output the SAE reads"})
    d_sae: int = field(default=4096, metadata={"help": "number of SAE latents"})
    k: int = field(default=32, metadata={"help": "TopK: active latents per token"})
    positions: str = field(default=CONTENT.positions, metadata={"help": "token scope of training and quality"})
    n_tokens: int = field(default=800_000, metadata={"help": "max training activations"})
    epochs: int = field(default=5, metadata={"help": "passes over the activations"})
    lr: float = field(default=4e-4, metadata={"help": "learning rate"})
    batch_size: int = field(default=4096, metadata={"help": "activations per step"})
    max_length: int = field(default=SAE_TRAIN_LENGTH.max_length, metadata={"help": "tokens per sequence"})
    holdout_examples: int = field(default=200, metadata={"help": "held-out texts for the quality figures"})
    dead_tokens: int = field(default=200_000, metadata={"help": "training activations for the dead share"})
    sink_norm_factor: float = field(default=10.0, metadata={"help": "sink guard factor"})
    seed: int = field(default=0, metadata={"help": "random seed"})

    def __post_init__(self):
        check_positions(self.positions)
