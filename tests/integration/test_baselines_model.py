"""Loss and IFD inputs on the tiny random Llama: nll_table against hand-computed cross-entropies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from igds.data.records import Example
from igds.data.tasks import get_task, record_task
from igds.demo import tiny_model, tiny_tokenizer
from igds.method.baselines import ifd_ranking, loss_ranking
from igds.modeling.nll import nll_table

EXAMPLES = [
    Example("s1", "summarization", "t", "train", "Summarize: a tool that converts images.", "image converter", {}),
    Example("m1", "math", "t", "train", "What is 12 plus 30?", "12 + 30 = 42\n#### 42", {}),
    Example("g1", "general", "t", "train", "Tell me about cats.", "Cats are small carnivorous mammals.", {}),
    Example("t1", "translation", "t", "train", "Translate to English: Der Hund schläft.", "The dog sleeps.", {}),
]


def chatml_header(tok) -> list[int]:
    """The tiny tokenizer's ChatML assistant header, ``<|im_start|>assistant\n``."""
    return tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]


def mean_ce(model, ids: list[int], first_target: int) -> float:
    """Mean cross-entropy of tokens ``ids[first_target:]`` from one full forward pass."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(x).logits[0]
    t = torch.arange(first_target - 1, len(ids) - 1)
    return F.cross_entropy(logits[t], x[0, t + 1]).item()


@pytest.fixture(scope="module")
def setup():
    model, tok = tiny_model(), tiny_tokenizer()
    return model, tok, nll_table(model, tok, EXAMPLES, max_length=256, batch_tokens=512)


def test_nll_table_matches_full_forward_cross_entropy(setup):
    model, tok, df = setup
    assert list(df.columns) == ["example_id", "nll_cond", "nll_uncond"]
    assert df["example_id"].tolist() == [ex.id for ex in EXAMPLES]
    row = df.set_index("example_id")
    for ex in EXAMPLES:
        # each record rendered through its task (general records: no instruction)
        enc = record_task(ex.task).encode(tok, ex.prompt, ex.response, 256)
        response = enc.input_ids[enc.prompt_len:]
        assert response[-1] == tok.eos_token_id
        assert row.loc[ex.id, "nll_cond"] == pytest.approx(mean_ce(model, enc.input_ids, enc.prompt_len), rel=1e-5)
        # the prompt-free pass starts where an answer starts: after the template's assistant header
        header = chatml_header(tok)
        uncond = mean_ce(model, [*header, *response], len(header))
        assert row.loc[ex.id, "nll_uncond"] == pytest.approx(uncond, rel=1e-5)


def test_an_example_over_the_cap_is_dropped_never_cut():
    model, tok = tiny_model(), tiny_tokenizer()
    long = Example("long", "summarization", "t", "train", "word " * 200, "short answer", {})
    short = Example("short", "summarization", "t", "train", "word", "short answer", {})
    df = nll_table(model, tok, [long, short], max_length=128, batch_tokens=512).set_index("example_id")
    assert np.isnan(df.loc["long", "nll_cond"]) and np.isnan(df.loc["long", "nll_uncond"])  # no score, no cut
    enc = get_task("summarization").encode(tok, short.prompt, short.response, 1 << 20)  # whole
    assert len(enc.input_ids) <= 128
    response = enc.input_ids[enc.prompt_len:]
    assert df.loc["short", "nll_cond"] == pytest.approx(mean_ce(model, enc.input_ids, enc.prompt_len), rel=1e-5)
    header = chatml_header(tok)
    assert df.loc["short", "nll_uncond"] == pytest.approx(mean_ce(model, [*header, *response], len(header)), rel=1e-5)


def test_ifd_and_loss_on_a_fixed_model(setup):
    _, _, df = setup
    ifd = ifd_ranking(df)
    for ex in EXAMPLES:
        row = df.set_index("example_id").loc[ex.id]
        assert ifd.scores[ex.id] == pytest.approx(row["nll_cond"] / row["nll_uncond"])
        assert (ex.id in ifd.excluded) == (ifd.scores[ex.id] >= 1)
    assert [ifd.scores[i] for i in ifd.order] == sorted((v for v in ifd.scores.values() if v < 1), reverse=True)
    loss = loss_ranking(df)
    assert loss.order == df.sort_values("nll_cond", ascending=False)["example_id"].tolist()
    assert all(math.isfinite(v) for v in df["nll_cond"])


def test_nll_table_reports_progress_and_rejects_duplicates():
    model, tok = tiny_model(), tiny_tokenizer()
    seen = []
    nll_table(model, tok, EXAMPLES[:2], progress=lambda d, t, m: seen.append((d, t)))
    assert seen[-1] == (4, 4) and all(t == 4 for _, t in seen)
    with pytest.raises(ValueError, match="duplicate"):
        nll_table(model, tok, [EXAMPLES[0], EXAMPLES[0]])
