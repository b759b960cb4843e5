import pytest
import torch

from igds.modeling.adapters import HookSiteError, parse_site
from igds.modeling.hooks import capture, patch, record_replay_inputs, replay_from, run_until
from tests.helpers import tiny_setup


# HF applies the final norm to the last hidden_states entry, so parity holds for all but the last block.
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_captured_residual_equals_hidden_states(layer):
    model, tok, _ = tiny_setup()
    ids = tok(["hello world, this is a test"], return_tensors="pt").input_ids
    with torch.no_grad():
        expected = model(ids, output_hidden_states=True).hidden_states[layer + 1]
        got = run_until(model, f"blocks.{layer}.hook_resid_post", ids)
    assert torch.allclose(got, expected, atol=1e-6)


def test_resid_pre_equals_previous_post_and_hf_path_alias():
    model, tok, _ = tiny_setup()
    ids = tok(["abc def"], return_tensors="pt").input_ids
    sites = ["blocks.2.hook_resid_pre", "blocks.1.hook_resid_post", "model.layers.3"]
    with torch.no_grad(), capture(model, sites) as c:
        model(ids)
    assert torch.allclose(c["blocks.2.hook_resid_pre"], c["blocks.1.hook_resid_post"])
    assert "blocks.3.hook_resid_post" in c


def test_hooks_removed_even_after_error():
    model, tok, _ = tiny_setup()
    ids = tok(["abc"], return_tensors="pt").input_ids
    with pytest.raises(RuntimeError), patch(model, 1, lambda h: h * 0):
        raise RuntimeError("boom")
    assert all(not b._forward_hooks and not b._forward_pre_hooks for b in model.model.layers)
    with torch.no_grad():
        base = model(ids).logits
        with patch(model, 1, lambda h: h + 1.0):
            patched = model(ids).logits
        again = model(ids).logits
    assert not torch.allclose(base, patched)
    assert torch.equal(base, again)


@pytest.mark.parametrize("site", ["blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre", "blocks.1.hook_resid_post",
                                  "blocks.3.hook_resid_post"])
def test_replay_from_recorded_inputs_reproduces_the_forward(site):
    from igds.modeling.adapters import final_norm

    model, tok, _ = tiny_setup()
    ids = tok(["hello world, this is a test", "abc"], return_tensors="pt", padding=True)
    with torch.no_grad():
        expected = model(**ids, output_hidden_states=True, use_cache=False).hidden_states[-1]
        hooks_before = [(list(b._forward_hooks), list(b._forward_pre_hooks)) for b in model.model.layers]
        with capture(model, [site]) as c, record_replay_inputs(model, site) as rec:
            model(**ids, use_cache=False)
        assert len(rec) == 4 - parse_site(model, site).first_replayed and None not in rec
        replayed = replay_from(model, site, c[site], rec)
    assert torch.allclose(final_norm(model)(replayed), expected, atol=1e-6)
    with pytest.raises(RuntimeError), record_replay_inputs(model, "blocks.0.hook_resid_pre"):
        raise RuntimeError("boom")
    assert [(list(b._forward_hooks), list(b._forward_pre_hooks)) for b in model.model.layers] == hooks_before


def test_early_exit_skips_later_blocks():
    model, tok, _ = tiny_setup()
    ids = tok(["abc"], return_tensors="pt").input_ids
    calls = []
    h = model.model.layers[3].register_forward_hook(lambda *a: calls.append(1))
    try:
        run_until(model, 1, ids)
    finally:
        h.remove()
    assert calls == []


@pytest.mark.parametrize("site", ["blocks.4.hook_resid_post", "blocks.-1.hook_resid_post", "transformer.h.1", 17])
def test_bad_layer_index_is_a_clear_error(site):
    model, _, _ = tiny_setup()
    with pytest.raises(HookSiteError, match="out of range|cannot resolve"):
        parse_site(model, site)


def test_unsupported_architecture_named():
    model, _, _ = tiny_setup()
    model.config.model_type = "mamba"
    with pytest.raises(HookSiteError, match="mamba"):
        parse_site(model, 1)


def test_gpt2_family_maps_to_transformer_h():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=32, n_head=4, vocab_size=100, n_positions=64)).eval()
    ids = torch.randint(0, 100, (1, 10))
    with torch.no_grad():
        expected = model(ids, output_hidden_states=True).hidden_states[1]
        got = run_until(model, "blocks.0.hook_resid_post", ids)
    assert torch.allclose(got, expected, atol=1e-6)
