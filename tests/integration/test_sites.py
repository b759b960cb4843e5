"""One site resolver: extraction, SAE quality, interventions, attribution and steering read and edit the
same residual for ``hook_resid_pre`` and ``hook_resid_post`` SAEs (pre of block L = input of block L)."""

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from igds.method.extract import ExtractConfig, process_batch
from igds.method.intervene import (
    InterventionConfig,
    Job,
    attribution_estimates,
    feature_acts_at,
    prepare_dev,
    run_jobs,
)
from igds.method.steer import generate_steered, token_activations
from igds.modeling.adapters import HookSiteError, Site, parse_site
from igds.modeling.sae import ce_recovered, collect_activations, decoder_directions, sae_site
from tests.helpers import make_items, tiny_setup

ROOT = Path(__file__).parents[2]
N_LAYERS = 4  # tiny_model()
# the reference edits below add ā·W_dec at every edited position: the add edit mode
EXACT = InterventionConfig(batch_rows=5, sink_norm_factor=1e6, precision="fp32", edit_mode="add")


def setup_at(site: str):
    """Tiny model, tokenizer and an SAE whose own metadata names ``site`` (as sae-lens releases do)."""
    layer = int(site.split(".")[1])
    model, tok, sae = tiny_setup(layer=layer)
    sae.cfg.metadata.hook_name = site
    assert sae_site(sae) == site
    return model, tok, sae


def hidden_index(site: str) -> int:
    """Index into HF ``output_hidden_states`` of the residual at ``site``: L for pre, L+1 for post."""
    layer, kind = re.match(r"blocks\.(\d+)\.hook_resid_(pre|post)$", site).groups()
    return int(layer) + (kind == "post")


@contextmanager
def reference_edit(model, site: str, fn):
    """An edit applied by a hook written here, independent of ``igds.modeling.hooks``."""
    layer, kind = re.match(r"blocks\.(\d+)\.hook_resid_(pre|post)$", site).groups()
    block = model.model.layers[int(layer)]
    if kind == "pre":
        def pre(module, args, kwargs):
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

        handle = block.register_forward_pre_hook(pre, with_kwargs=True)
    else:
        def post(module, args, out):
            return fn(out) if torch.is_tensor(out) else (fn(out[0]), *out[1:])

        handle = block.register_forward_hook(post)
    try:
        yield
    finally:
        handle.remove()


def reference_nll(model, item, site: str, fn) -> torch.Tensor:
    """Mean response NLL of one unpadded item from a full forward with ``fn`` applied at ``site``."""
    ids = torch.tensor([item.input_ids])
    with reference_edit(model, site, fn):
        logits = model(ids).logits[0]
    t = torch.arange(item.prompt_len - 1, len(item.input_ids) - 1)
    return F.cross_entropy(logits[t], ids[0, t + 1])


# --- the resolver -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("site", "layer", "reads_input", "first_replayed"), [
    ("blocks.0.hook_resid_pre", 0, True, 0),
    ("blocks.2.hook_resid_pre", 2, True, 2),
    ("blocks.3.hook_resid_pre", 3, True, 3),
    ("blocks.0.hook_resid_post", 0, False, 1),
    ("blocks.3.hook_resid_post", 3, False, 4),
    ("model.layers.1", 1, False, 2),
    (2, 2, False, 3),
])
def test_resolver_gives_capture_point_and_first_replayed_block(site, layer, reads_input, first_replayed):
    model, _, _ = tiny_setup()
    s = parse_site(model, site)
    assert (s.layer, s.reads_input, s.first_replayed) == (layer, reads_input, first_replayed)
    assert parse_site(model, s) == s  # a resolved Site passes through (and is checked)
    with pytest.raises(HookSiteError, match="blocks.9.hook_resid_pre"):
        parse_site(model, Site(layer=9, kind="pre"))


@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre",
                                  "blocks.0.hook_resid_post", "blocks.2.hook_resid_post"])
def test_extraction_and_sae_collection_read_hidden_states_at_the_site(site):
    """Extraction's features are the SAE encoding of ``output_hidden_states[L]`` (pre) / ``[L+1]`` (post)."""
    model, tok, sae = setup_at(site)
    cfg = ExtractConfig(sink_norm_factor=1e6, max_length=64, batch_tokens=64)
    items = make_items(tok)[:4]
    for it in items:
        ids = torch.tensor([it.input_ids])
        with torch.no_grad():
            h = model(ids, output_hidden_states=True).hidden_states[hidden_index(site)][0]
            z = sae.encode(h[1:])  # position 0 is never kept
        acts, stats = process_batch(model, sae, site, [it], cfg, tok.pad_token_id)
        got = dict(zip(acts.column("feature").to_pylist(), acts.column("max_act").to_pylist(), strict=True))
        fired = (z > 0).any(0).nonzero().flatten().tolist()
        assert sorted(got) == fired
        for f in fired:
            assert got[f] == pytest.approx(float(z[:, f].max()), abs=1e-5)
        collected = collect_activations(model, site, [it], 10_000, tok.pad_token_id, sink_norm_factor=1e6)
        assert torch.allclose(collected, h[1:], atol=1e-6)


def test_block0_pre_site_is_the_embeddings_output():
    model, tok, _ = tiny_setup()
    it = make_items(tok)[0]
    ids = torch.tensor([it.input_ids])
    cache = prepare_dev(model, "blocks.0.hook_resid_pre", [it], tok.pad_token_id, EXACT)
    with torch.no_grad():
        assert torch.equal(cache.hidden, model.get_input_embeddings()(ids))
    assert len(cache.block_args) == N_LAYERS  # the replay runs every block


# --- interventions: cached-prefix replay == full forward with the edit -------------------------------------

@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.3.hook_resid_pre",
                                  "blocks.1.hook_resid_post", "blocks.3.hook_resid_post"])
def test_intervention_replay_equals_full_forward_with_the_edit_at_the_site(site):
    model, tok, sae = setup_at(site)
    items = make_items(tok)
    cache = prepare_dev(model, site, items, tok.pad_token_id, EXACT)
    assert len(cache.block_args) == N_LAYERS - parse_site(model, site).first_replayed
    with torch.no_grad():
        for r, it in enumerate(items):
            n = len(it.input_ids)
            full = model(torch.tensor([it.input_ids]), output_hidden_states=True).hidden_states
            if hidden_index(site) < N_LAYERS:  # HF norms the last entry
                assert torch.allclose(cache.hidden[r, :n], full[hidden_index(site)][0], atol=1e-6)
            assert cache.nll_base[r].item() == pytest.approx(reference_nll(model, it, site, lambda h: h).item(),
                                                             abs=1e-5)
    feats = [3, 17]
    dirs = dict(zip(feats, decoder_directions(sae, feats), strict=True))
    acts_t = feature_acts_at(sae, cache, feats)
    acts = {f: acts_t[:, :, i] for i, f in enumerate(feats)}
    mean_act = {3: 0.7, 17: 1.3}
    jobs = [Job(f, "amplify", 2.0) for f in feats] + [Job(f, "ablate", 0.0) for f in feats]
    fast = run_jobs(model, cache, jobs, dirs, mean_act, acts, EXACT)
    changed = 0
    with torch.no_grad():
        for job in jobs:
            d = dirs[job.feature]
            for r, it in enumerate(items):
                n = len(it.input_ids)
                if job.kind == "amplify":
                    delta = cache.edit_mask[r, :n].unsqueeze(-1).float() * (job.alpha * mean_act[job.feature]) * d
                else:
                    delta = -acts[job.feature][r, :n].unsqueeze(-1) * d
                ref = reference_nll(model, it, site, lambda h, delta=delta: h + delta).item()
                assert fast[job][r] == pytest.approx(ref, abs=1e-5)
                changed += abs(ref - cache.nll_base[r].item()) > 1e-4
    assert changed  # the edits are not no-ops, so the parity is informative


def test_pre_site_edits_the_residual_of_the_previous_post_site_not_one_block_late():
    """``blocks.2.hook_resid_pre`` and ``blocks.1.hook_resid_post`` name one residual; ``blocks.2.hook_resid_post``
    (where a layer-only resolver would edit a pre SAE) is a different one."""
    model, tok, sae = setup_at("blocks.2.hook_resid_pre")
    items = make_items(tok)
    caches = {s: prepare_dev(model, s, items, tok.pad_token_id, EXACT)
              for s in ("blocks.2.hook_resid_pre", "blocks.1.hook_resid_post", "blocks.2.hook_resid_post")}
    pre, prev_post, late = caches.values()
    assert torch.equal(pre.hidden, prev_post.hidden) and not torch.allclose(pre.hidden, late.hidden)
    assert torch.equal(pre.nll_base, prev_post.nll_base)
    dirs = {3: decoder_directions(sae, [3])[0]}
    job = Job(3, "amplify", 1.0)
    effects = {s: run_jobs(model, c, [job], dirs, {3: 1.0}, {3: feature_acts_at(sae, c, [3])[:, :, 0]}, EXACT)[job]
               for s, c in caches.items()}
    assert np.array_equal(effects["blocks.2.hook_resid_pre"], effects["blocks.1.hook_resid_post"])
    assert not np.allclose(effects["blocks.2.hook_resid_pre"], effects["blocks.2.hook_resid_post"])


# --- attribution: the gradient is taken at the same residual ----------------------------------------------

@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.1.hook_resid_post"])
def test_attribution_gradient_is_taken_at_the_site_residual(site):
    model, tok, sae = setup_at(site)
    items = make_items(tok)
    cache = prepare_dev(model, site, items, tok.pad_token_id, EXACT)
    d_sae = int(sae.cfg.d_sae)
    mean_act = np.linspace(0.5, 1.5, d_sae)
    est = attribution_estimates(model, sae, cache, mean_act)
    # reference: d(mean over items of the response NLL) / d(residual at the site), by a full forward per item
    g_sum = torch.zeros(model.config.hidden_size)
    per_token = []
    for r, it in enumerate(items):
        n = len(it.input_ids)
        delta = torch.zeros(1, n, model.config.hidden_size, requires_grad=True)
        (reference_nll(model, it, site, lambda h, delta=delta: h + delta) / len(items)).backward()
        edit = cache.edit_mask[r, :n]
        g_sum += delta.grad[0][edit].sum(0)
        per_token.append((cache.hidden[r, :n][edit], delta.grad[0][edit]))
    dirs = decoder_directions(sae)
    ref_amp = -(dirs @ g_sum).numpy() * mean_act
    with torch.no_grad():
        ref_abl = -sum((sae.encode(h) * (g @ dirs.T)).sum(0) for h, g in per_token).numpy()
    scale = np.abs(ref_amp).max()
    assert scale > 0
    np.testing.assert_allclose(est.est_amplify.to_numpy(), ref_amp, atol=1e-5 * scale)
    np.testing.assert_allclose(est.est_ablate.to_numpy(), ref_abl, atol=1e-5 * max(np.abs(ref_abl).max(), 1e-6))


# --- steering and SAE quality ------------------------------------------------------------------------------

def test_steering_and_sae_quality_read_and_edit_the_pre_site_residual():
    pre, prev_post = "blocks.2.hook_resid_pre", "blocks.1.hook_resid_post"
    model, tok, sae = setup_at(pre)
    it = make_items(tok)[0]
    with torch.no_grad():
        h = model(torch.tensor([it.input_ids]), output_hidden_states=True).hidden_states[2][0]
        z = sae.encode(h)
    _, acts = token_activations(model, tok, sae, pre, it.input_ids, [3, 5], sink_norm_factor=1e6)
    assert torch.allclose(acts[1:], z[1:, [3, 5]], atol=1e-6)
    kw = dict(feature=3, alpha=200.0, mean_act=1.0, max_new_tokens=6)
    assert generate_steered(model, tok, sae, pre, "hello there", **kw) == \
        generate_steered(model, tok, sae, prev_post, "hello there", **kw)
    items = make_items(tok)[:4]
    assert ce_recovered(model, sae, pre, items, tok.pad_token_id) == \
        ce_recovered(model, sae, prev_post, items, tok.pad_token_id)


# --- architecture: every hook lifetime goes through modeling/hooks.py -------------------------------------

def test_no_hook_registration_outside_modeling_hooks():
    pattern = re.compile(r"\.register_(forward_pre_hook|forward_hook|full_backward_hook|full_backward_pre_hook)\(")
    roots = [ROOT / "igds", ROOT / "bench", ROOT / "scripts", ROOT / "pages", ROOT / "app.py"]
    files = [p for r in roots if r.exists() for p in ([r] if r.is_file() else r.rglob("*.py"))]
    assert any(p.name == "intervene.py" for p in files)  # the scan sees the stage modules
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files if p != ROOT / "igds" / "modeling" / "hooks.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert hits == [], f"register hooks through igds.modeling.hooks context managers, not here: {hits}"
