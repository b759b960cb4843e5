"""IGDS's response NLL equals the model's own Hugging Face loss, final-logit processing included
(Gemma-2 soft-capping, Cohere ``logit_scale``, Granite ``logits_scaling``)."""

import pytest
import torch
from torch.nn import functional as F

from igds.demo import tiny_tokenizer
from igds.modeling.adapters import FAMILIES, final_logits, final_norm, n_layers
from igds.modeling.hooks import run_until
from igds.modeling.nll import response_nll
from tests.helpers import make_items

VOCAB = 260  # the byte-level tiny tokenizer has 258 tokens


def tiny_gemma2(final_cap: float | None = 3.0):
    """A random ``Gemma2ForCausalLM`` with small logit and attention soft-caps and a short sliding window."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    cfg = Gemma2Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                       final_logit_softcapping=final_cap, attn_logit_softcapping=5.0, sliding_window=16,
                       query_pre_attn_scalar=8, attn_implementation="eager")
    model = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():  # large logits, so that a cap of 3 changes them a lot
        model.get_output_embeddings().weight.mul_(40.0)
        final_norm(model).weight.normal_(0.0, 1.0)  # gemma norms scale by (1 + weight)
    return model


def tiny_llama():
    from igds.demo import tiny_model

    return tiny_model(vocab_size=VOCAB)


SMALL = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def tiny_cohere(version: str = ""):
    """A random ``CohereForCausalLM`` (or ``Cohere2ForCausalLM``, window 16) whose logits are multiplied by 0.3."""
    import transformers

    torch.manual_seed(0)
    extra = dict(sliding_window=16) if version else {}
    cfg = getattr(transformers, f"Cohere{version}Config")(**SMALL, **extra, logit_scale=0.3)
    return getattr(transformers, f"Cohere{version}ForCausalLM")(cfg).eval()


def tiny_granite(moe: str = ""):
    """A random ``GraniteForCausalLM`` (or ``GraniteMoeForCausalLM``) whose logits are divided by 4."""
    import transformers

    torch.manual_seed(0)
    extra = dict(num_local_experts=2, num_experts_per_tok=1) if moe else {}
    cfg = getattr(transformers, f"Granite{moe}Config")(**SMALL, **extra, logits_scaling=4.0, embedding_multiplier=3.0,
                                                      residual_multiplier=0.5)
    return getattr(transformers, f"Granite{moe}ForCausalLM")(cfg).eval()


BUILDERS = {"gemma2": tiny_gemma2, "llama": tiny_llama, "cohere": tiny_cohere, "cohere2": lambda: tiny_cohere("2"),
            "granite": tiny_granite, "granitemoe": lambda: tiny_granite("Moe")}


def hf_response_loss(model, items) -> dict[str, float]:
    """The model's own loss per item: ``model(input_ids, labels=labels).loss`` with prompt labels at -100."""
    out = {}
    for it in items:
        ids = torch.tensor([it.input_ids])
        labels = ids.clone()
        labels[0, : it.prompt_len] = -100
        with torch.no_grad():
            out[it.example_id] = model(input_ids=ids, labels=labels).loss.item()
    return out


def max_gap(a: dict[str, float], b: dict[str, float]) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) for k in a)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def items(tok):
    return make_items(tok, repeat=2)  # 16 items, 10 to 60 tokens: several padded batches, beyond the window


@pytest.mark.parametrize("family", list(BUILDERS))
def test_response_nll_equals_the_hf_loss(family, tok, items):
    model = BUILDERS[family]()
    assert model.config.model_type == family and family in FAMILIES
    got = response_nll(model, items, tok.pad_token_id, batch_tokens=256)
    assert max_gap(got, hf_response_loss(model, items)) < 1e-5


def test_gemma2_softcap_matters_and_is_applied(tok, items):
    model = tiny_gemma2(final_cap=3.0)
    ref = hf_response_loss(model, items)
    assert max_gap(response_nll(model, items, tok.pad_token_id, batch_tokens=256), ref) < 1e-5
    # the same weights without the cap: what the NLL was before final_logits, far from the model's loss
    model.config.final_logit_softcapping = None
    uncapped = response_nll(model, items, tok.pad_token_id, batch_tokens=256)
    assert max_gap(uncapped, ref) > 1e-3
    assert max_gap(uncapped, hf_response_loss(model, items)) < 1e-5  # and parity holds without it too


@pytest.mark.parametrize("family", list(BUILDERS))
def test_final_logits_reproduce_the_forward_logits(family, tok, items):
    """run_until + final norm + final_logits = the model's logits at every position (Gemma-2's sqrt(d)
    embedding scale lives inside the embedding module, before the first block, so early exit keeps it)."""
    model = BUILDERS[family]()
    ids = torch.tensor([items[0].input_ids])
    with torch.no_grad():
        expected = model(input_ids=ids).logits
        got = final_logits(model, final_norm(model)(run_until(model, n_layers(model) - 1, ids)))
    assert torch.allclose(got, expected, atol=1e-5)


def test_gemma2_cap_bounds_the_logits(items):
    model = tiny_gemma2(final_cap=3.0)
    ids = torch.tensor([items[0].input_ids])
    with torch.no_grad():
        h = final_norm(model)(run_until(model, n_layers(model) - 1, ids))
        raw = model.get_output_embeddings()(h)
        capped = final_logits(model, h)
    assert raw.abs().max() > 6.0 and capped.abs().max() <= 3.0
    assert torch.allclose(capped, 3.0 * torch.tanh(raw / 3.0))
    assert F.cross_entropy(capped[0], ids[0]).item() != pytest.approx(F.cross_entropy(raw[0], ids[0]).item())


@pytest.mark.parametrize("family", ["gemma2", "cohere2"])
def test_replay_through_sliding_window_layers_gives_the_forward_logits(family, tok, items):
    """What interventions do: capture a site, replay the later blocks with their recorded inputs (local and
    global masks alike), then final norm + final_logits: the padded batch's logits are the forward's."""
    from igds.modeling.batching import pad_batch
    from igds.modeling.hooks import capture, record_replay_inputs, replay_from

    model = BUILDERS[family]()
    ids, attn = pad_batch(items[:4], tok.pad_token_id, "cpu")
    assert ids.shape[1] > 16  # longer than Gemma-2's sliding window
    with torch.no_grad():
        with capture(model, [0]) as store, record_replay_inputs(model, 0) as recorded:
            expected = model(input_ids=ids, attention_mask=attn, use_cache=False).logits
        out = replay_from(model, 0, store["blocks.0.hook_resid_post"], recorded)
        got = final_logits(model, final_norm(model)(out))
    real = attn.bool()
    assert torch.allclose(got[real], expected[real], atol=1e-5)
