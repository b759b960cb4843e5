"""On-demand model work for the dashboard: per-token feature activations of a few examples (for
highlighting) and generation with one feature amplified or ablated ("try it")."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from igds.modeling.batching import keep_mask
from igds.modeling.hooks import patch, run_until
from igds.modeling.sae import decoder_directions


@torch.no_grad()
def token_activations(model, tokenizer, sae, site: str, input_ids: Sequence[int], features: Sequence[int],
                      sink_norm_factor: float = 10.0) -> tuple[list[str], torch.Tensor]:
    """Tokens of one encoded example and the activations of ``features`` at each (0 at excluded positions).

    Returns:
        ``(tokens, acts [n_tokens, len(features)])``.
    """
    device = next(model.parameters()).device
    ids = torch.tensor([list(input_ids)], device=device)
    h = run_until(model, site, ids)
    keep = keep_mask(h, torch.ones_like(ids), sink_norm_factor)[0]
    z = sae.encode(h[0].to(next(sae.parameters()).dtype)).float().cpu()
    acts = z[:, list(features)] * keep.cpu().unsqueeze(-1)
    return [tokenizer.decode([t]) for t in input_ids], acts


@torch.no_grad()
def generate_steered(model, tokenizer, sae, site: str, prompt: str, feature: int, kind: str = "amplify",
                     alpha: float = 4.0, mean_act: float = 1.0, max_new_tokens: int = 48, task=None) -> dict[str, str]:
    """Greedy generation from ``prompt`` unmodified and with ``feature`` amplified or ablated.

    Amplify adds ``alpha · mean_act · d_j`` at every position but the first (the attention sink);
    ablate subtracts the feature's own contribution ``z_j · d_j`` wherever it fires. With ``task`` (a
    ``TaskSpec`` or task name), ``prompt`` is a record's content and is rendered through the task exactly
    as in training; without it, ``prompt`` is the whole user message.
    """
    device = next(model.parameters()).device
    msgs = [{"role": "user", "content": prompt}]
    if task is not None:
        from igds.modeling.encoding import render_example

        enc = {"input_ids": torch.tensor([render_example(tokenizer, task, prompt, None, 10**6).input_ids])}
    elif getattr(tokenizer, "chat_template", None):
        enc = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    else:
        enc = tokenizer(prompt, return_tensors="pt")
    ids = enc["input_ids"].to(device)
    d = decoder_directions(sae, [feature])[0].to(device)
    sae_dtype = next(sae.parameters()).dtype

    def edit(h: torch.Tensor) -> torch.Tensor:
        dd = d.to(h.dtype)
        if kind == "amplify":
            delta = (alpha * mean_act) * dd.expand_as(h).clone()
            if h.shape[1] == ids.shape[1]:  # the prompt pass: leave the first position alone
                delta[:, 0] = 0
            return h + delta
        z = sae.encode(h.to(sae_dtype))[..., feature].to(h.dtype)
        return h - z.unsqueeze(-1) * dd

    def gen() -> str:
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)
        return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()

    base = gen()
    with patch(model, site, edit):
        steered = gen()
    return {"base": base, "steered": steered}
