"""Map canonical hook sites (``blocks.{L}.hook_resid_post``) to Hugging Face modules per family.

One table row per architecture family: where the decoder blocks live, where the final norm is, and
which final-logit steps the family's ``*ForCausalLM.forward`` applies after the unembedding
(:func:`final_logits`). SAEs trained by sae-lens on HF models name module paths directly
(``model.layers.15``); both spellings resolve to the same site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torch import nn

# Final-logit steps, in the order the HF forwards apply them to ``lm_head``'s output (transformers 5):
SOFTCAP = "softcap"
"""``logits = cap * tanh(logits / cap)`` with ``cap = config.final_logit_softcapping`` when it is set
(``Gemma2ForCausalLM``, ``Gemma3ForCausalLM``)."""
LOGIT_SCALE = "logit_scale"
"""``logits = logits * model.logit_scale`` (``CohereForCausalLM``, ``Cohere2ForCausalLM``)."""
LOGITS_SCALING = "logits_scaling"
"""``logits = logits / config.logits_scaling`` (``GraniteForCausalLM``, ``GraniteMoeForCausalLM``)."""
LOGIT_STEPS = (SOFTCAP, LOGIT_SCALE, LOGITS_SCALING)


@dataclass(frozen=True)
class FamilyLayout:
    """Where a family keeps its decoder blocks and final norm, as dotted attribute paths, and the
    final-logit steps (:data:`LOGIT_STEPS`) its forward applies after the unembedding, in order."""

    blocks: str
    final_norm: str
    logit_steps: tuple[str, ...] = ()


# Families share a layout when their HF modules are named alike.
_LLAMA_LIKE = FamilyLayout(blocks="model.layers", final_norm="model.norm")
_SOFTCAPPED = FamilyLayout(blocks="model.layers", final_norm="model.norm", logit_steps=(SOFTCAP,))
FAMILIES: dict[str, FamilyLayout] = {
    "llama": _LLAMA_LIKE,
    "mistral": _LLAMA_LIKE,
    "qwen2": _LLAMA_LIKE,
    "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE,
    "gemma2": _SOFTCAPPED,
    "gemma3_text": _SOFTCAPPED,
    # Gemma3ForConditionalGeneration.forward applies no softcap (transformers 5), unlike Gemma3ForCausalLM
    "gemma3": FamilyLayout(blocks="model.language_model.layers", final_norm="model.language_model.norm"),
    "olmo2": _LLAMA_LIKE,
    "phi3": _LLAMA_LIKE,
    "cohere": FamilyLayout(blocks="model.layers", final_norm="model.norm", logit_steps=(LOGIT_SCALE,)),
    "cohere2": FamilyLayout(blocks="model.layers", final_norm="model.norm", logit_steps=(LOGIT_SCALE,)),
    "granite": FamilyLayout(blocks="model.layers", final_norm="model.norm", logit_steps=(LOGITS_SCALING,)),
    "granitemoe": FamilyLayout(blocks="model.layers", final_norm="model.norm", logit_steps=(LOGITS_SCALING,)),
    "gpt2": FamilyLayout(blocks="transformer.h", final_norm="transformer.ln_f"),
}

_CANONICAL = re.compile(r"^blocks\.(\d+)\.hook_resid_(post|pre)$")


class HookSiteError(ValueError):
    """A hook site that does not exist on the model."""


@dataclass(frozen=True)
class Site:
    """A resolved residual-stream site: after (``post``) or before (``pre``) block ``layer``.

    The one place that says where a site is read and where a replay from it starts:
    ``blocks.L.hook_resid_pre`` is the *input* of block L (for L = 0 the embeddings output), so a
    replay of an edited residual runs blocks L..N-1; ``blocks.L.hook_resid_post`` is the *output*
    of block L, so the replay runs blocks L+1..N-1. Both spellings of the same residual
    (``blocks.L.hook_resid_pre`` and ``blocks.{L-1}.hook_resid_post``) therefore read, edit and
    replay identically.
    """

    layer: int
    kind: str  # "post" | "pre"

    @property
    def name(self) -> str:
        """Canonical name, e.g. ``blocks.15.hook_resid_post``."""
        return f"blocks.{self.layer}.hook_resid_{self.kind}"

    @property
    def reads_input(self) -> bool:
        """Whether the residual is block ``layer``'s input (``pre``) rather than its output (``post``)."""
        return self.kind == "pre"

    @property
    def first_replayed(self) -> int:
        """Index of the first block that runs on the residual at this site: ``L`` for pre, ``L+1`` for post."""
        return self.layer if self.reads_input else self.layer + 1


def family_of(model: nn.Module) -> str:
    """Return the architecture family (``config.model_type``) and check it is supported."""
    family = getattr(getattr(model, "config", None), "model_type", None)
    if family not in FAMILIES:
        raise HookSiteError(
            f"architecture {family!r} has no adapter; supported: {', '.join(sorted(FAMILIES))}"
        )
    return family


def _get(model: nn.Module, dotted: str) -> nn.Module:
    obj = model
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def blocks(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder blocks."""
    return _get(model, FAMILIES[family_of(model)].blocks)


def final_norm(model: nn.Module) -> nn.Module:
    """The final normalisation applied before the unembedding."""
    return _get(model, FAMILIES[family_of(model)].final_norm)


def final_logits(model: nn.Module, hidden_normed: torch.Tensor) -> torch.Tensor:
    """Logits from final-normed hidden states, exactly as the model's own ``forward`` computes them.

    Applies the unembedding (``model.get_output_embeddings()``) and then every final-logit step of the
    family (:attr:`FamilyLayout.logit_steps`), in the forward's order and in the unembedding's dtype:
    Gemma-2/Gemma-3 soft-capping ``cap * tanh(logits / cap)`` (when ``config.final_logit_softcapping``
    is set), Cohere's ``* logit_scale``, Granite's ``/ logits_scaling``. Every place in IGDS that turns
    hidden states into logits goes through here, so its NLLs equal the model's own loss.

    Args:
        model: A causal LM of a supported family.
        hidden_normed: ``[..., d_model]`` states after :func:`final_norm`.

    Returns:
        ``[..., vocab]`` logits in the unembedding's dtype (callers upcast for the loss).
    """
    logits = model.get_output_embeddings()(hidden_normed)
    config = model.config
    for step in FAMILIES[family_of(model)].logit_steps:
        if step == SOFTCAP:
            cap = getattr(config, "final_logit_softcapping", None)
            if cap is not None:
                logits = torch.tanh(logits / cap) * cap
        elif step == LOGIT_SCALE:
            logits = logits * getattr(model, "logit_scale", config.logit_scale)
        elif step == LOGITS_SCALING:
            logits = logits / config.logits_scaling
        else:  # pragma: no cover - the table only names known steps
            raise ValueError(f"unknown final-logit step {step!r}")
    return logits


def n_layers(model: nn.Module) -> int:
    """Number of decoder blocks."""
    return len(blocks(model))


def parse_site(model: nn.Module, site: str | int | Site) -> Site:
    """Resolve a canonical name, an HF module path, or a layer index to a :class:`Site`.

    The single site resolver: extraction, SAE training and quality, interventions, attribution and
    steering all resolve their site here, and :mod:`igds.modeling.hooks` reads and edits it through
    the returned :class:`Site` (capture point and first replayed block). ``blocks.0.hook_resid_pre``
    is the input of block 0, i.e. the embeddings output.

    Args:
        model: the HF causal LM.
        site: ``blocks.{L}.hook_resid_post``/``..._pre``, ``model.layers.{L}`` (the block's output,
            as sae-lens names HF sites), an int ``L`` (the block's output) or an already resolved
            :class:`Site` (checked against the model).

    Raises:
        HookSiteError: when the site does not parse or the layer is out of range.
    """
    n = n_layers(model)
    if isinstance(site, Site):
        layer, kind = site.layer, site.kind
    elif isinstance(site, int):
        layer, kind = site, "post"
    else:
        m = _CANONICAL.match(site)
        prefix = FAMILIES[family_of(model)].blocks + "."
        if m:
            layer, kind = int(m.group(1)), m.group(2)
        elif site.startswith(prefix) and site[len(prefix):].isdigit():
            layer, kind = int(site[len(prefix):]), "post"
        else:
            raise HookSiteError(
                f"cannot resolve hook site {site!r}; use 'blocks.<L>.hook_resid_post' or '{prefix}<L>'"
            )
    if not 0 <= layer < n:
        shown = site.name if isinstance(site, Site) else site
        raise HookSiteError(f"layer {layer} of hook site {shown!r} is out of range: the model has {n} blocks "
                            f"(0..{n - 1})")
    return Site(layer=layer, kind=kind)


def block_output(output) -> torch.Tensor:
    """Normalise a block's output: transformers 5 returns a Tensor, 4.x a tuple."""
    return output[0] if isinstance(output, tuple) else output


def replace_block_output(output, hidden: torch.Tensor):
    """Return ``output`` with its hidden state replaced, preserving tuple-ness."""
    if isinstance(output, tuple):
        return (hidden, *output[1:])
    return hidden
