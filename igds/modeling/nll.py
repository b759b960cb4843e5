"""Teacher-forced response NLL: the task metric of interventions and the Loss/IFD baselines.

Only response positions go through the final norm and the unembedding: with a 49k vocabulary the
logits of every position dominate the cost of a small model's forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from igds.method.extract import EncodedItem, length_batches, pad_batch
from igds.modeling.adapters import final_norm, n_layers
from igds.modeling.hooks import run_until
from igds.progress import ProgressFn, null_progress


def response_targets(items: Sequence[EncodedItem], width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions whose next token is a response token, and those targets.

    Returns:
        ``(mask [batch, pos] bool, targets [batch, pos] long)``: ``mask[b, t]`` is True when token
        ``t + 1`` of item ``b`` belongs to the response; ``targets[b, t]`` is that token.
    """
    mask = torch.zeros(len(items), width, dtype=torch.bool)
    targets = torch.zeros(len(items), width, dtype=torch.long)
    for b, it in enumerate(items):
        n = len(it.input_ids)
        if n > it.prompt_len:
            mask[b, it.prompt_len - 1 : n - 1] = True
            targets[b, : n - 1] = torch.tensor(it.input_ids[1:])
    return mask, targets


def nll_from_hidden(model, hidden: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean NLL per row over masked positions, from the last block's output ``[batch, pos, d]``.

    Rows without any masked position get NaN.
    """
    h = final_norm(model)(hidden[mask.to(hidden.device)])
    logits = model.get_output_embeddings()(h).float()
    tok_nll = F.cross_entropy(logits, targets[mask].to(logits.device), reduction="none").cpu()
    rows = mask.nonzero(as_tuple=True)[0]
    sums = torch.zeros(mask.shape[0]).index_add_(0, rows, tok_nll)
    counts = mask.sum(1).float()
    return torch.where(counts > 0, sums / counts.clamp(min=1), torch.full_like(sums, float("nan")))


@torch.no_grad()
def response_nll(model, items: Sequence[EncodedItem], pad_id: int, batch_tokens: int = 4096,
                 progress: ProgressFn | None = None) -> dict[str, float]:
    """Mean response-token NLL of each item under ``model`` (teacher forcing).

    Returns:
        ``{example_id: nll}``; NaN for items whose response was truncated away.
    """
    progress = progress or null_progress
    device = next(model.parameters()).device
    last = n_layers(model) - 1
    out: dict[str, float] = {}
    for batch in length_batches(items, batch_tokens):
        ids, attn = pad_batch(batch, pad_id, device)
        hidden = run_until(model, last, ids, attn)  # last block output, before the final norm
        mask, targets = response_targets(batch, ids.shape[1])
        nll = nll_from_hidden(model, hidden, mask, targets)
        out.update({it.example_id: float(v) for it, v in zip(batch, nll, strict=True)})
        progress(len(out), len(items), f"response NLL: {len(out)}/{len(items)}")
    return out
