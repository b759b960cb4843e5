"""Batching of tokenized examples shared by every stage that runs the model: the encoded item,
padding, token-budget batches and the masks of positions that statistics keep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch

from igds.modeling.config import POSITION_SCOPES, check_positions  # noqa: F401 - re-exported


@dataclass(frozen=True)
class EncodedItem:
    """One formatted, tokenized example: tokens ``[0:prompt_len]`` are the prompt.

    ``spans`` maps each part of the rendered example (``template``, ``instruction``, ``content``,
    ``response``) to its half-open token ranges ``((start, end), ...)``; empty when unknown (see
    ``igds.modeling.encoding``).
    """

    example_id: str
    input_ids: list[int]
    prompt_len: int
    spans: Mapping[str, tuple[tuple[int, int], ...]] = field(default_factory=dict, compare=False)


def pad_batch(items: Sequence[EncodedItem], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token ids; return ``(input_ids, attention_mask)`` of shape ``[batch, pos]``."""
    width = max(len(it.input_ids) for it in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for i, it in enumerate(items):
        ids[i, : len(it.input_ids)] = torch.tensor(it.input_ids)
        mask[i, : len(it.input_ids)] = 1
    return ids.to(device), mask.to(device)


def keep_mask(h: torch.Tensor, attention_mask: torch.Tensor, sink_norm_factor: float) -> torch.Tensor:
    """Positions that count for statistics: real tokens, not position 0, not attention sinks.

    Args:
        h: residual ``[batch, pos, d_model]``.
        attention_mask: ``[batch, pos]`` (1 for real tokens).

    Returns:
        bool ``[batch, pos]``.
    """
    keep = attention_mask.bool().clone()
    keep[:, 0] = False  # BOS / first position behaves as a sink in every model we measured
    norms = h.float().norm(dim=-1)
    if keep.any():
        median = norms[keep].median()
        keep &= norms <= sink_norm_factor * median
    return keep


def scope_positions(item: EncodedItem, positions: str) -> list[int]:
    """Token positions of one item inside a scope (see :data:`POSITION_SCOPES`), ascending.

    Raises:
        ValueError: for an unknown scope, or a span scope on an item without token spans (a slow
            tokenizer gives none; spans are what keeps template tokens out of ``content``).
    """
    check_positions(positions)
    if positions == "all":
        return list(range(len(item.input_ids)))
    if not item.spans:
        raise ValueError(f"positions={positions!r} needs the token spans of the rendered example, and item "
                         f"{item.example_id!r} has none (use a fast tokenizer, or positions='all')")
    ranges = {"content": ("content", "response"), "prompt_content": ("content",), "response": ("response",),
              "last_prompt_token": ("content",)}[positions]
    out = sorted(p for kind in ranges for a, b in item.spans.get(kind, ()) for p in range(a, b))
    return out[-1:] if positions == "last_prompt_token" else out


def position_mask(items: Sequence[EncodedItem], width: int, positions: str) -> torch.Tensor:
    """bool ``[batch, pos]`` selecting each item's positions inside a scope (:data:`POSITION_SCOPES`)."""
    mask = torch.zeros((len(items), width), dtype=torch.bool)
    for i, it in enumerate(items):
        pos = scope_positions(it, positions)
        if pos:
            mask[i, torch.tensor(pos)] = True
    return mask


def length_batches(items: Sequence[EncodedItem], batch_tokens: int) -> list[list[EncodedItem]]:
    """Group items of similar length so padding stays small (length bucketing)."""
    ordered = sorted(items, key=lambda it: (len(it.input_ids), it.example_id))
    batches, cur, width = [], [], 0
    for it in ordered:
        w = max(width, len(it.input_ids))
        if cur and w * (len(cur) + 1) > batch_tokens:
            batches.append(cur)
            cur, w = [], len(it.input_ids)
        cur.append(it)
        width = w
    if cur:
        batches.append(cur)
    return batches
