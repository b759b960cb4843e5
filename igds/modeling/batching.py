"""Batching of tokenized examples shared by every stage that runs the model: the encoded item,
padding, token-budget batches and the masks of positions that statistics keep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch


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


def position_mask(items: Sequence[EncodedItem], width: int, positions: str) -> torch.Tensor:
    """bool ``[batch, pos]`` selecting prompt, response or all positions of each item."""
    idx = torch.arange(width).unsqueeze(0)
    plen = torch.tensor([it.prompt_len for it in items]).unsqueeze(1)
    length = torch.tensor([len(it.input_ids) for it in items]).unsqueeze(1)
    if positions == "prompt":
        return idx < plen
    if positions == "response":
        return (idx >= plen) & (idx < length)
    return idx < length


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
