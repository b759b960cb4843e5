import math

import pytest
import torch
from torch.nn import functional as F

from igds.modeling.nll import response_nll
from tests.helpers import make_items, tiny_setup


def test_response_nll_matches_full_forward_cross_entropy():
    model, tok, _ = tiny_setup()
    items = make_items(tok)
    got = response_nll(model, items, tok.pad_token_id, batch_tokens=128)
    for it in items:
        ids = torch.tensor([it.input_ids])
        with torch.no_grad():
            logits = model(ids).logits[0]
        t = torch.arange(it.prompt_len - 1, len(it.input_ids) - 1)
        ref = F.cross_entropy(logits[t], ids[0, t + 1]).item()
        assert got[it.example_id] == pytest.approx(ref, rel=1e-5)


def test_truncated_response_is_nan():
    from igds.modeling.batching import EncodedItem

    model, tok, _ = tiny_setup()
    it = EncodedItem("x", [1, 2, 3, 4], prompt_len=4)
    assert math.isnan(response_nll(model, [it], tok.pad_token_id)["x"])


# ----------------------------------------------------------------------------- the prompt-free pass of IFD

# what each family's template writes before an answer (BOS in front where the tokenizer adds one itself)
HEADERS = {
    "chatml": "<|im_start|>assistant\n",
    "smollm2": "<|im_start|>assistant\n",
    "llama31": "<|begin_of_text|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "gemma2": "<bos><start_of_turn>model\n",
    "gpt2": "<|endoftext|>",  # no chat template: a single start token
}


@pytest.mark.parametrize("family", list(HEADERS))
def test_unconditioned_items_follow_exactly_the_assistant_header(family):
    from igds.data.records import Example
    from igds.data.tasks import assistant_header
    from igds.modeling.encoding import encode_examples
    from igds.modeling.nll import unconditioned_items, unconditioned_prefix
    from tests.integration.test_spans import family_tokenizer

    tok = family_tokenizer(family)
    exs = [Example("s1", "summarization", "t", "train", "A tool that converts images.", "image converter", {}),
           Example("g1", "general", "t", "train", "Tell me about cats.", "Cats are small mammals.", {})]
    cond = encode_examples(tok, exs, 256)
    uncond = unconditioned_items(tok, cond)
    prefix = unconditioned_prefix(tok)
    assert tok.decode(prefix, clean_up_tokenization_spaces=False) == HEADERS[family]
    for c, u in zip(cond, uncond, strict=True):
        assert u.example_id == c.example_id and u.prompt_len == len(prefix)
        assert u.input_ids == [*prefix, *c.input_ids[c.prompt_len:]]  # the same response ids, eos included
        header = assistant_header(tok)
        if header:  # the conditioned prompt ends with the very header tokens the prompt-free pass starts from
            ids = tok(header, add_special_tokens=False)["input_ids"]
            assert c.input_ids[c.prompt_len - len(ids): c.prompt_len] == ids
            assert prefix[-len(ids):] == ids


@pytest.mark.parametrize("family", ["chatml", "llama31"])
def test_nll_uncond_is_the_response_loss_after_the_header(family):
    from igds.data.records import Example
    from igds.demo import tiny_model
    from igds.modeling.encoding import encode_examples
    from igds.modeling.nll import nll_table
    from tests.integration.test_spans import family_tokenizer

    tok, model = family_tokenizer(family), tiny_model()
    ex = Example("m1", "math", "t", "train", "What is 12 plus 30?", "12 + 30 = 42\n#### 42", {})
    df = nll_table(model, tok, [ex], max_length=256, batch_tokens=512)
    item = encode_examples(tok, [ex], 256)[0]
    header = tok(HEADERS[family], add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[*header, *item.input_ids[item.prompt_len:]]])
    with torch.no_grad():
        logits = model(ids).logits[0]
    t = torch.arange(len(header) - 1, ids.shape[1] - 1)
    assert df["nll_uncond"][0] == pytest.approx(F.cross_entropy(logits[t], ids[0, t + 1]).item(), rel=1e-5)
