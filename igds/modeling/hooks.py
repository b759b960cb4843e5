"""Capture, patch and replay residual-stream sites; every hook lives in a context manager that removes it.

This is the only module that registers hooks on a model (a test greps for it). Sites resolve through
:func:`igds.modeling.adapters.parse_site`; the resolved :class:`~igds.modeling.adapters.Site` says
where the residual is read (a block's input for ``hook_resid_pre``, its output for
``hook_resid_post``) and which block a replay starts from, so reading, editing and replaying one
site always touch the same residual.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from igds.modeling.adapters import Site, block_output, blocks, parse_site, replace_block_output

BlockInputs = tuple[tuple, dict]
"""A block's recorded call arguments apart from the residual: ``(args after it, kwargs without it)``."""


class StopForward(Exception):
    """Raised by a capture hook to end the forward pass right after the deepest captured site."""


def _register(model: nn.Module, site: Site, fn) -> torch.utils.hooks.RemovableHandle:
    block = blocks(model)[site.layer]
    if not site.reads_input:
        return block.register_forward_hook(fn)
    # resid_pre = the block's first positional input (hidden_states)
    return block.register_forward_pre_hook(fn, with_kwargs=True)


def _block_inputs(args: tuple, kwargs: dict) -> BlockInputs:
    """Split a block call into its residual-free arguments (the residual is ``args[0]`` or a kwarg)."""
    rest = {k: v for k, v in kwargs.items() if k != "hidden_states"}
    return (tuple(args[1:]) if args else ()), rest


@contextmanager
def capture(model: nn.Module, sites: list[str | int | Site], stop: bool = False) -> Iterator[dict[str, torch.Tensor]]:
    """Record the residual stream at ``sites`` during forwards run inside the block.

    Args:
        model: an HF causal LM with a supported adapter.
        sites: canonical names, HF module paths, layer indices or resolved ``Site`` objects.
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
                if not _site.reads_input:
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
def patch(model: nn.Module, site: str | int | Site, fn: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Replace the residual stream at ``site`` by ``fn(h)`` during forwards inside the block."""
    resolved = parse_site(model, site)

    def hook(module, args, *rest):
        if not resolved.reads_input:
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


def run_until(model: nn.Module, site: str | int | Site, input_ids: torch.Tensor,
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


@contextmanager
def record_replay_inputs(model: nn.Module, site: str | int | Site) -> Iterator[list[BlockInputs | None]]:
    """Record what every block a replay from ``site`` runs was called with, apart from the residual.

    Blocks ``site.first_replayed``..N-1 are recorded (from block L for ``hook_resid_pre`` of block L,
    from L+1 for ``hook_resid_post``): masks, rotary tables, cache positions... so :func:`replay_from`
    can rerun them on an edited residual exactly as the full forward did (sliding-window layers get
    their own masks back). Combine with :func:`capture` of the same site for the residual itself.

    Yields:
        a list with one entry per replayed block, ``None`` until a forward inside the block fills it.
    """
    resolved = parse_site(model, site)
    replayed = list(blocks(model))[resolved.first_replayed:]
    recorded: list[BlockInputs | None] = [None] * len(replayed)
    handles = []
    try:
        for i, block in enumerate(replayed):
            def hook(module, args, kwargs, _i=i):
                recorded[_i] = _block_inputs(args, kwargs)
                # recording hooks return None so they never alter the model

            handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))
        yield recorded
    finally:
        for h in handles:
            h.remove()


def replay_from(model: nn.Module, site: str | int | Site, h: torch.Tensor,
                block_inputs: Sequence[BlockInputs]) -> torch.Tensor:
    """Run the blocks after ``site`` on residual ``h`` with recorded inputs; return the last block's output.

    ``block_inputs`` are what :func:`record_replay_inputs` recorded for the same site (rows may be
    selected from them); the final norm and unembedding are the caller's.
    """
    resolved = parse_site(model, site)
    replayed = list(blocks(model))[resolved.first_replayed:]
    for block, (args, kwargs) in zip(replayed, block_inputs, strict=True):
        h = block_output(block(h, *args, **kwargs))
    return h
