"""Capture and patch residual-stream sites through context managers that always remove their hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from igds.modeling.adapters import Site, block_output, blocks, parse_site, replace_block_output


class StopForward(Exception):
    """Raised by a capture hook to end the forward pass right after the deepest captured site."""


def _register(model: nn.Module, site: Site, fn) -> torch.utils.hooks.RemovableHandle:
    block = blocks(model)[site.layer]
    if site.kind == "post":
        return block.register_forward_hook(fn)
    # resid_pre = the block's first positional input (hidden_states)
    return block.register_forward_pre_hook(fn, with_kwargs=True)


@contextmanager
def capture(model: nn.Module, sites: list[str | int], stop: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record the residual stream at ``sites`` during forwards run inside the block.

    Args:
        model: an HF causal LM with a supported adapter.
        sites: canonical names, HF module paths or layer indices.
        stop: raise :class:`StopForward` after the deepest site so later blocks never run
            (callers use :func:`run_until`, which swallows it).

    Yields:
        dict from canonical site name to the captured ``[batch, pos, d_model]`` tensor.
    """
    resolved = [parse_site(model, s) for s in sites]
    deepest = max(resolved, key=lambda s: (s.layer, s.kind == "post"))
    store: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for site in resolved:
            def hook(module, args, *rest, _site=site):
                if _site.kind == "post":
                    store[_site.name] = block_output(rest[-1])
                else:
                    kwargs = rest[0] if rest else {}
                    store[_site.name] = args[0] if args else kwargs["hidden_states"]
                if stop and _site == deepest:
                    raise StopForward
                # capture hooks return None so they never alter the model

            handles.append(_register(model, site, hook))
        yield store
    finally:
        for h in handles:
            h.remove()


@contextmanager
def patch(model: nn.Module, site: str | int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the residual stream at ``site`` by ``fn(h)`` during forwards inside the block."""
    resolved = parse_site(model, site)

    def hook(module, args, *rest):
        if resolved.kind == "post":
            out = rest[-1]
            return replace_block_output(out, fn(block_output(out)))
        kwargs = rest[0] if rest else {}
        if args:
            return (fn(args[0]), *args[1:]), kwargs
        kwargs = dict(kwargs)
        kwargs["hidden_states"] = fn(kwargs["hidden_states"])
        return args, kwargs

    handle = _register(model, resolved, hook)
    try:
        yield
    finally:
        handle.remove()


def run_until(model: nn.Module, site: str | int, input_ids: torch.Tensor,
              attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Forward only as far as ``site`` and return the residual there (early exit).

    Blocks after the site and the unembedding never run, which is what makes extraction cheap.
    """
    name = parse_site(model, site).name
    with capture(model, [name], stop=True) as store:
        try:
            model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except StopForward:
            pass
    return store[name]
