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
