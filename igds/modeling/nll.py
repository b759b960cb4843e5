"""Teacher-forced response NLL: the task metric of interventions and the Loss/IFD baselines.

Only response positions go through the final norm and the unembedding: with a 49k vocabulary the
logits of every position dominate the cost of a small model's forward. Logits come from
:func:`igds.modeling.adapters.final_logits`, which applies the family's final-logit steps (Gemma-2
soft-capping, ...), so the NLL equals the model's own loss on the same tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch
from torch.nn import functional as F

from igds.data.records import Example
from igds.modeling.adapters import final_logits, final_norm, n_layers
from igds.modeling.batching import EncodedItem, length_batches, pad_batch
from igds.modeling.hooks import run_until
from igds.progress import ProgressFn, null_progress, scaled
from igds.scope import STAGE_LENGTH


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

    Logits are the model's own (:func:`igds.modeling.adapters.final_logits`: final norm, unembedding,
    then the family's soft-capping or logit scaling). Rows without any masked position get NaN.
    """
    h = final_norm(model)(hidden[mask.to(hidden.device)])
    logits = final_logits(model, h).float()
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


def unconditioned_prefix(tokenizer) -> list[int]:
    """Token ids the prompt-free pass puts before a response: the chat template's assistant header.

    The header (:func:`igds.data.tasks.assistant_header`, e.g. ``<|im_start|>assistant\\n``) is tokenized
    as prompts are, with BOS in front where the tokenizer adds one (:func:`igds.data.tasks.assemble`).
    A tokenizer without chat template (or whose template has no header) gets a single start token: its
    ``bos_token_id``, else its ``eos_token_id`` (GPT-2-style document separator).

    Args:
        tokenizer: A Hugging Face tokenizer.

    Returns:
        The prefix ids.

    Raises:
        ValueError: If there is no header and the tokenizer has neither a bos nor an eos token.
    """
    from igds.data.tasks import assemble, assistant_header, tokenize

    header = assistant_header(tokenizer)
    if header:
        return assemble(tokenizer, tokenize(tokenizer, header), None, 1 << 30)[0]  # no budget: nothing cut
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    if start is None:
        raise ValueError("the tokenizer has neither a bos nor an eos token to start the prompt-free sequence")
    return [start]


def unconditioned_items(tokenizer, cond: Sequence[EncodedItem]) -> list[EncodedItem]:
    """The prompt-free twins of conditioned items: :func:`unconditioned_prefix` + the same response ids.

    Args:
        tokenizer: The tokenizer that encoded ``cond``.
        cond: Items encoded with their prompts (``input_ids[prompt_len:]`` is the response).

    Returns:
        One item per input, same ids, ``prompt_len`` = the prefix length.
    """
    prefix = unconditioned_prefix(tokenizer)
    return [EncodedItem(it.example_id, [*prefix, *it.input_ids[it.prompt_len:]], len(prefix)) for it in cond]


def nll_table(model, tokenizer, examples: Sequence[Example], max_length: int = STAGE_LENGTH.max_length,
              batch_tokens: int = 4096,
              progress: ProgressFn | None = None) -> pd.DataFrame:
    """Mean response NLL with and without the prompt, the inputs of the Loss and IFD baselines.

    ``nll_cond`` scores the response tokens after the formatted prompt, encoded whole by the example's task (chat
    template, exact prompt/response boundary); an example longer than ``max_length`` is dropped (NaN), never cut.
    ``nll_uncond`` scores **the same response token ids** (eos included) after the chat template's
    assistant header only (:func:`unconditioned_prefix`: e.g. ``<|im_start|>assistant\\n``; a single start
    token without a chat template), so the answer is scored where answers start, as in the conditioned
    pass, rather than after a bare turn opener whose role the first answer tokens would have to predict.
    Both average over exactly the same targets, so ``IFD = nll_cond / nll_uncond`` compares like with like.
    The procedure's version is :data:`igds.constants.NLL_PROCEDURE` (the store's NLL cache is keyed by it).

    Args:
        model: A causal LM (any architecture :mod:`igds.modeling.adapters` supports).
        tokenizer: Its tokenizer.
        examples: Pool examples.
        max_length: Token cap of the conditioned encoding.
        batch_tokens: Padded tokens per forward batch.
        progress: ``progress(done, total, message)``.

    Returns:
        DataFrame ``example_id, nll_cond, nll_uncond`` in the order of ``examples`` (NaN for an example over
        ``max_length`` or without response tokens).
    """
    from igds.modeling.encoding import encode_examples

    prefix = unconditioned_prefix(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else prefix[0]
    if len({ex.id for ex in examples}) != len(examples):
        raise ValueError("examples have duplicate ids")
    from igds.scope import UNCUT

    cond = [it for it in encode_examples(tokenizer, examples, UNCUT) if len(it.input_ids) <= max_length]
    uncond = unconditioned_items(tokenizer, cond)
    total = 2 * len(examples)
    nc = response_nll(model, cond, pad, batch_tokens, scaled(progress, 0, len(examples), total))
    nu = response_nll(model, uncond, pad, batch_tokens, scaled(progress, len(examples), len(examples), total))
    ids = [ex.id for ex in examples]
    nan = float("nan")  # an example over max_length is dropped (never cut): no score
    return pd.DataFrame({"example_id": ids, "nll_cond": [nc.get(i, nan) for i in ids],
                         "nll_uncond": [nu.get(i, nan) for i in ids]})
