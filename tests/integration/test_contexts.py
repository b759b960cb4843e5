"""Top-activating contexts: the recomputed windows equal a brute-force token-level pass, honour the run's
token scope, and are cached so a second read needs no model."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from igds.data.corpus import load_corpus
from igds.executor.extract import extract_here
from igds.method.config import ExtractConfig
from igds.modeling.batching import keep_mask, scope_positions
from igds.modeling.encoding import encode_examples
from igds.modeling.hooks import run_until
from igds.store import ActivationStore
from igds.workflow.explore import (
    compute_contexts,
    context_text,
    contexts_markdown,
    ensure_contexts,
    max_token_summary,
    top_contexts,
)
from tests.helpers import tiny_setup

SITE = "blocks.1.hook_resid_post"
K, WINDOW = 5, 6


def build(path, positions: str):
    """A store with one extraction run of 16 summarization + 16 general examples on the tiny model."""
    model, tok, sae = tiny_setup()
    examples = [*load_corpus(["summarization"], ["train"])[:16], *load_corpus(["general"])[:16]]
    store = ActivationStore(path)
    store.add_examples(examples, "test")
    cfg = ExtractConfig(positions=positions, max_length=64, batch_tokens=256)
    store.start_run("run", "extract", {"extract": cfg.to_dict(), "site": SITE}, "tiny-model", "tiny-sae")
    extract_here(store, "run", model, sae, SITE, encode_examples(tok, examples, cfg.max_length), cfg,
                   tok.pad_token_id)
    return SimpleNamespace(store=store, model=model, tokenizer=tok, sae=sae, site=SITE, sae_key="tiny-sae",
                           examples={e.id: e for e in examples}, cfg=cfg)


@pytest.fixture(scope="module", params=["content", "response"])
def ws(request, tmp_path_factory):
    torch.set_num_threads(1)
    return build(tmp_path_factory.mktemp("ctx") / "s.duckdb", request.param)


def firing_features(store, n: int) -> list[int]:
    df = store.query_df("SELECT feature, count(*) AS n FROM feature_acts WHERE run_id = 'run' GROUP BY feature "
                        "ORDER BY n DESC, feature LIMIT ?", [n])
    return df.feature.astype(int).tolist()


def brute_force(ws, example_id: str, feature: int):
    """One example alone: every token's activation, the positions that count, the decoded tokens."""
    ex = ws.examples[example_id]
    item = encode_examples(ws.tokenizer, [ex], ws.cfg.max_length)[0]
    ids = torch.tensor([item.input_ids])
    with torch.no_grad():
        h = run_until(ws.model, SITE, ids)
        keep = keep_mask(h, torch.ones_like(ids), ws.cfg.sink_norm_factor)[0]
        z = ws.sae.encode(h[0])[:, feature] * keep
    counts = np.zeros(len(item.input_ids), bool)
    counts[scope_positions(item, ws.cfg.positions)] = True
    counts &= keep.numpy()
    return item, z.numpy(), counts, [ws.tokenizer.decode([t]) for t in item.input_ids], keep.numpy()


def test_contexts_equal_brute_force_and_respect_the_scope(ws):
    feats = firing_features(ws.store, 128)
    ctx = compute_contexts(ws.store, "run", feats, ws.model, ws.tokenizer, ws.sae, k=K, window=WINDOW)
    assert set(ctx.feature) == set(feats)
    acts = ws.store.query_df("SELECT feature, example_id, max_act FROM feature_acts WHERE run_id = 'run'")
    outside = 0
    for f, g in ctx.groupby("feature"):
        # the k examples with the highest stored max, ties by id, in rank order
        top = acts[acts.feature == f].sort_values(["max_act", "example_id"], ascending=[False, True]).head(K)
        assert g.example_id.tolist() == top.example_id.tolist()
        assert g["rank"].tolist() == list(range(len(top)))
        for r in g.itertuples():
            item, z, counts, tokens, keep = brute_force(ws, r.example_id, f)
            p = int(np.argmax(np.where(counts, z, -np.inf)))
            assert r.max_pos == p
            assert r.max_act == pytest.approx(float(z[p]), rel=1e-4, abs=1e-5)
            assert r.max_act == pytest.approx(r.stored_max, rel=1e-4, abs=1e-5)  # the run's own aggregate
            assert r.max_pos in scope_positions(item, ws.cfg.positions)
            assert r.max_token == tokens[p]
            lo, hi = max(0, p - WINDOW), min(len(z), p + WINDOW + 1)
            assert (r.start_pos, r.n_positions) == (lo, len(z))
            assert r.tokens == tokens[lo:hi]
            np.testing.assert_allclose(r.acts, z[lo:hi], rtol=1e-4, atol=1e-5)
            assert r.in_scope == counts[lo:hi].tolist()
            outside += int(np.argmax(np.where(keep, z, -np.inf))) not in np.flatnonzero(counts)
    assert outside, "no context had its unrestricted max outside the scope: the scope check tested nothing"


def test_contexts_are_cached_and_read_without_the_model(ws, monkeypatch):
    f, g = firing_features(ws.store, 2)
    first = top_contexts(ws.store, "run", f, k=3, window=4, model=ws.model, tokenizer=ws.tokenizer, sae=ws.sae)
    assert len(first) == 3

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran")

    monkeypatch.setattr("igds.modeling.hooks.run_until", no_forward)
    again = top_contexts(ActivationStore(ws.store.path), "run", f, k=3, window=4)  # a fresh handle, no model
    pd.testing.assert_frame_equal(first, again)
    assert compute_contexts(ws.store, "run", [f], None, None, None, k=3, window=4).equals(first)
    with pytest.raises(LookupError, match="not cached"):
        top_contexts(ws.store, "run", g, k=3, window=4)
    assert top_contexts(ws.store, "run", 10**6, k=3, window=4).empty  # a feature that never fires


def test_ensure_contexts_batches_features_and_checks_the_sae(ws):
    feats = firing_features(ws.store, 6)
    calls = []
    out = ensure_contexts(ws, "run", feats, k=2, window=3, progress=lambda d, t, m: calls.append((d, t, m)))
    assert sorted(set(out.feature)) == sorted(feats) and (out.groupby("feature").size() <= 2).all()
    assert calls and calls[-1][0] == calls[-1][1] and calls[-1][2].startswith("contexts:")
    assert set(out.sae_key) == {"tiny-sae"}
    calls.clear()
    ensure_contexts(ws, "run", feats, k=2, window=3, progress=lambda d, t, m: calls.append(m))
    assert calls == []  # all cached: no forward
    with pytest.raises(ValueError, match="extracted with SAE"):
        ensure_contexts(SimpleNamespace(**{**vars(ws), "sae_key": "other"}), "run", feats, k=2, window=3)
    with pytest.raises(ValueError, match="extracted at"):
        compute_contexts(ws.store, "run", [10**6], ws.model, ws.tokenizer, ws.sae, site="blocks.0.hook_resid_post")


def test_plain_text_and_token_summary():
    row = {"tokens": ["the", " library", " for", "\n"], "max_pos": 6, "start_pos": 5, "n_positions": 20}
    assert context_text(row) == "…the ⟦library⟧ for↵…"
    assert context_text({**row, "start_pos": 0, "max_pos": 1, "n_positions": 4}) == "the ⟦library⟧ for↵"
    ctx = pd.DataFrame({"feature": [3, 3, 3, 3, 7], "rank": [0, 1, 2, 3, 0],
                        "max_token": [" library", " Java", " library", "Haskell", "\n"],
                        "max_act": [4.0, 3.0, 2.0, 1.0, 1.5], "task": ["general"] * 5,
                        "tokens": [["a", " library"], ["a", " Java"], [" library"], ["Haskell"], ["\n"]],
                        "max_pos": [1, 1, 0, 0, 0], "start_pos": [0] * 5, "n_positions": [2, 2, 1, 1, 1]})
    assert max_token_summary(ctx) == {3: '" library" ×2 · " Java" · "Haskell"', 7: '"\\n"'}
    md = contexts_markdown(ctx, n=2)
    assert md.splitlines()[:3] == ['- **feature 3** (max 4.00, 4 examples): " library" ×2 · " Java" · "Haskell"',
                                   "  - a ⟦library⟧ (4.00, general)", "  - a ⟦Java⟧ (3.00, general)"]
