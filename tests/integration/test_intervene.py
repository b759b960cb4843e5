import numpy as np
import pytest
import torch
from torch.nn import functional as F

from igds.method.intervene import (
    InterventionConfig,
    Job,
    benjamini_hochberg,
    feature_acts_at,
    filter_features,
    prepare_dev,
    run_jobs,
    summarize_effect,
)
from igds.modeling.hooks import patch
from igds.modeling.sae import decoder_directions
from tests.helpers import make_items, tiny_setup

SITE = "blocks.1.hook_resid_post"


def naive_nll(model, item, edit_fn):
    """Full forward of one unpadded item with a patch hook; mean response NLL from the logits."""
    ids = torch.tensor([item.input_ids])
    with torch.no_grad(), patch(model, SITE, edit_fn):
        logits = model(ids).logits[0]
    t = torch.arange(item.prompt_len - 1, len(item.input_ids) - 1)
    return F.cross_entropy(logits[t], ids[0, t + 1]).item()


@pytest.mark.parametrize("kind", ["amplify", "ablate"])
def test_fast_path_equals_naive_full_forward(kind):
    model, tok, sae = tiny_setup()
    items = make_items(tok)
    # exact fp32 path; stack rows across chunks
    cfg = InterventionConfig(batch_rows=5, sink_norm_factor=1e6, precision="fp32")
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    feats = [3, 17]
    dirs = dict(zip(feats, decoder_directions(sae, feats), strict=True))
    acts_t = feature_acts_at(sae, cache, feats)
    acts = {f: acts_t[:, :, i] for i, f in enumerate(feats)}
    mean_act = {3: 0.7, 17: 1.3}
    jobs = [Job(f, kind, 2.0 if kind == "amplify" else 0.0) for f in feats]
    fast = run_jobs(model, cache, jobs, dirs, mean_act, acts, cfg)
    for job in jobs:
        for r, it in enumerate(items):
            n = len(it.input_ids)
            edit = cache.edit_mask[r, :n].unsqueeze(-1).float()
            d = dirs[job.feature]
            if job.kind == "amplify":
                fn = lambda h, e=edit, d=d, j=job: h + e * (j.alpha * mean_act[j.feature]) * d  # noqa: E731
            else:
                z = acts[job.feature][r, :n].unsqueeze(-1)
                fn = lambda h, z=z, d=d: h - z * d  # noqa: E731
            assert fast[job][r] == pytest.approx(naive_nll(model, it, fn), abs=1e-5)
    # base NLL from the replay equals a clean forward
    for r, it in enumerate(items):
        assert cache.nll_base[r].item() == pytest.approx(naive_nll(model, it, lambda h: h), abs=1e-5)


def test_ablation_of_a_feature_that_never_fires_changes_nothing():
    model, tok, sae = tiny_setup()
    items = make_items(tok)
    cfg = InterventionConfig()
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    acts = {5: torch.zeros(cache.hidden.shape[:2])}
    out = run_jobs(model, cache, [Job(5, "ablate", 0.0)], {5: torch.ones(32)}, {5: 1.0}, acts, cfg)
    assert np.array_equal(out[Job(5, "ablate", 0.0)], cache.nll_base.numpy())


def test_summary_signs_and_paired_test():
    base = np.array([2.0, 2.0, 2.0, 2.0])
    s = summarize_effect(Job(1, "amplify", 1.0), base, base - np.array([0.1, 0.2, 0.15, 0.12]), 4)
    assert s["effect"] == pytest.approx(0.1425) and s["p_value"] < 0.01 and s["ci_low"] > 0
    s = summarize_effect(Job(1, "ablate", 0.0), base, base + 0.3, 4)
    assert s["effect"] == pytest.approx(0.3) and s["p_value"] == 0.0


def test_benjamini_hochberg_matches_hand_computation():
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    # sorted p: .01 .03 .04 .5 → ×4/rank: .04 .06 .0533 .5 → running min from the top: .04 .0533 .0533 .5
    assert q == pytest.approx([0.04, 0.05333333, 0.05333333, 0.5])


def test_filter_requires_positive_significant_effect():
    import pandas as pd

    summary = pd.DataFrame({"feature": [1, 2, 3], "kind": "amplify", "alpha": 1.0,
                            "effect": [0.2, -0.1, 0.05], "p_value": [0.001, 0.001, 0.4]})
    v = filter_features(summary, [1, 2, 3, 4], InterventionConfig())
    assert v.set_index("feature").kept.to_dict() == {1: True, 2: False, 3: False, 4: False}
    assert v.set_index("feature").loc[4, "reason"] == "not measured"
    paper = filter_features(summary, [1, 2, 3], InterventionConfig(require_significance=False))
    assert paper.kept.tolist() == [True, False, True]


def test_auto_precision_keeps_an_fp32_residual_stream_for_edits():
    from igds import settings

    model, tok, _ = tiny_setup()
    cache = prepare_dev(model, SITE, make_items(tok), tok.pad_token_id, InterventionConfig())
    assert cache.hidden.dtype == torch.float32
    assert cache.autocast == settings.cpu_has_bf16()
    fp32 = prepare_dev(model, SITE, make_items(tok), tok.pad_token_id, InterventionConfig(precision="fp32"))
    assert not fp32.autocast
    # autocast changes the numbers only at bf16 matmul precision
    assert torch.allclose(cache.nll_base, fp32.nll_base, atol=0.05)
