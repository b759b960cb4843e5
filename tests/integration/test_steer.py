import torch

from igds.method.steer import generate_steered, token_activations
from tests.helpers import make_items, tiny_setup

SITE = "blocks.1.hook_resid_post"


def test_token_activations_match_sae_encode_and_skip_first_position():
    model, tok, sae = tiny_setup()
    it = make_items(tok)[0]
    tokens, acts = token_activations(model, tok, sae, SITE, it.input_ids, [3, 5], sink_norm_factor=1e6)
    assert len(tokens) == len(it.input_ids) and acts.shape == (len(it.input_ids), 2)
    from igds.modeling.hooks import run_until

    with torch.no_grad():
        z = sae.encode(run_until(model, SITE, torch.tensor([it.input_ids]))[0])
    assert torch.allclose(acts[1:], z[1:, [3, 5]], atol=1e-6) and (acts[0] == 0).all()


def test_steering_changes_generation_and_leaves_model_clean():
    model, tok, sae = tiny_setup()
    out = generate_steered(model, tok, sae, SITE, "hello there", feature=3, alpha=200.0, mean_act=1.0,
                           max_new_tokens=8)
    assert out["base"] != out["steered"]
    again = generate_steered(model, tok, sae, SITE, "hello there", feature=3, alpha=0.0, max_new_tokens=8)
    assert again["base"] == again["steered"] == out["base"]
