"""Feature checks: the token-injection test flags a feature that fires on its top tokens out of context and
spares one that does not; decoder matching across SAE seeds; the checks feed recall as a filter."""

import random

import pandas as pd
import pytest

from igds.data.records import Example
from igds.method import checks
from igds.method.checks import CheckConfig, decoder_match, inject, token_injection, top_tokens
from tests.helpers import tiny_workspace


def contexts(feature: int, tokens: list[str], acts: list[float], max_act: float = 4.0) -> pd.DataFrame:
    return pd.DataFrame([{"feature": feature, "rank": 0, "tokens": tokens, "acts": acts,
                          "in_scope": [True] * len(tokens), "max_act": max_act}])


def test_top_tokens_are_the_highest_in_scope_activations_distinct():
    ctx = pd.DataFrame([
        {"feature": 1, "tokens": ["<s>", " sum", "mary", " sum", " ", "x"], "acts": [9.0, 3.0, 2.0, 2.5, 5.0, 0.0],
         "in_scope": [False, True, True, True, True, True], "max_act": 3.0},
        {"feature": 1, "tokens": [" of", " pkg"], "acts": [1.0, 2.2], "in_scope": [True, True], "max_act": 2.2}])
    assert top_tokens(ctx, 3) == [" sum", " pkg", "mary"]  # BOS out of scope, whitespace and zeros skipped


def test_inject_puts_the_tokens_at_one_word_boundary():
    out = inject("the quick brown fox", [" sum", "mary "], random.Random(0))
    assert "sum mary" in out and out.replace("sum mary", "").split() == ["the", "quick", "brown", "fox"]


def test_a_token_detector_is_flagged_and_a_contextual_feature_is_not(monkeypatch):
    reference = [Example(f"r{i}", "general", "ref", "reference", f"plain text number {i}", "ok") for i in range(20)]
    ctx = pd.concat([contexts(7, [" zap", " zip"], [5.0, 4.0]), contexts(8, [" deep"], [4.0])])

    def planted(model, tok, sae, site, examples, features, **kw):
        rows = []
        for ex in examples:
            if ex.id.startswith("inj-7-"):      # feature 7 fires strongly wherever its tokens appear
                rows.append({"example_id": ex.id, "feature": 7, "max_act": 3.0})
            if ex.id.startswith("inj-8-") and ex.id.endswith(("r1", "r2")):  # feature 8 needs its context
                rows.append({"example_id": ex.id, "feature": 8, "max_act": 3.0})
            if ex.id == "r3":                   # a little base rate on plain text
                rows.append({"example_id": ex.id, "feature": 7, "max_act": 2.5})
        return pd.DataFrame(rows)

    monkeypatch.setattr(checks, "max_activations", planted)
    res = token_injection(None, None, None, "blocks.1.hook_resid_post", ctx, reference, CheckConfig(n_texts=20))
    by = res.set_index("feature")
    assert by.loc[7, "flagged"] and by.loc[7, "value"] == 1.0
    assert not by.loc[8, "flagged"] and by.loc[8, "value"] == pytest.approx(0.1)
    assert by.loc[7, "detail"]["tokens"] == [" zap", " zip"] and by.loc[7, "detail"]["base_rate"] == 0.05
    assert by.loc[7, "detail"]["cut"] == 0.5 * 4.0  # half the median top activation


def test_decoder_match_across_seeds():
    from igds.demo import tiny_sae

    a, b = tiny_sae(seed=0), tiny_sae(seed=1)
    same = decoder_match(a, a, [0, 5, 9])
    assert same.value.round(5).tolist() == [1.0, 1.0, 1.0] and [d["match"] for d in same.detail] == [0, 5, 9]
    other = decoder_match(a, b, range(128))
    assert (other.value < 0.999).all() and other.flagged.equals(other.value < 0.7)


def test_checks_on_the_tiny_workspace_are_stored_shown_and_filter_recall(tmp_path):
    from igds.data.corpus import probe_set, reference_set
    from igds.demo import build_tiny_workspace, tiny_sae
    from igds.method.recall import RecallConfig, load_recall, recall_features
    from igds.store import ActivationStore
    from igds.workflow.checks import check_seed_stability, check_token_injection

    store = ActivationStore()
    built = build_tiny_workspace(store)
    ws = tiny_workspace(store, built)
    feats = load_recall(store, built["recall_id"]).candidates[:4]
    res = check_token_injection(ws, "summarization", built["run_id"], feats, CheckConfig(n_texts=12, max_length=96))
    assert set(res.feature) <= set(feats) and res.value.between(0, 1).all()
    assert all(len(d["tokens"]) <= 5 and d["n_texts"] == 12 for d in res.detail)
    check_seed_stability(ws, tiny_sae(d_in=32, layer=1, seed=7), "tiny-seed-7", feats)
    shown = store.feature_checks(built["sae_key"])
    assert set(shown.feature) == set(feats) and shown.seed_match.between(-1, 1).all()
    # a flagged feature is left out of a recall that asks for it; the next ranked takes its place
    probe = [e.id for e in probe_set("summarization")[:48]]
    ids = set(store.query_df("SELECT example_id FROM example_stats WHERE run_id = ?", [built["run_id"]]).example_id)
    ref = [e.id for e in reference_set(10**6) if e.id in ids] or probe[:8]
    base = recall_features(store, built["run_id"], "summarization", probe, ref,
                           RecallConfig(min_freq=0.05, dense_ref=1.0, k_recall=64))
    store.add_feature_checks(built["sae_key"], "token_injection", pd.DataFrame(
        {"feature": [base.candidates[0]], "value": [0.9], "flagged": [True], "detail": [{}]}))
    flagged = set(store.feature_checks(built["sae_key"]).query("token_detector == True").feature)
    filtered = recall_features(store, built["run_id"], "summarization", probe, ref,
                               RecallConfig(min_freq=0.05, dense_ref=1.0, k_recall=4, drop_token_detectors=True))
    assert base.candidates[0] in flagged and not flagged & set(filtered.candidates)
    assert filtered.candidates == [f for f in base.candidates if f not in flagged][:4]
    assert RecallConfig().to_dict() == {k: v for k, v in RecallConfig(drop_token_detectors=True).to_dict().items()
                                        if k != "drop_token_detectors"}  # the default keeps old keys
