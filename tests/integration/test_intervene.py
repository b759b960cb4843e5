"""Interventions on the tiny model: the cached-suffix replay equals a full forward with the same edit, edits
stay at their token scope, ``scale`` is exact where a feature is silent, the null is deterministic, and the
filter keeps exactly what beats the null and the paired test."""

import dataclasses
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

from igds import settings
from igds.executor.intervene import Candidates, measure_here
from igds.method import intervene as iv
from igds.method.intervene import (
    ABLATE,
    ADD,
    AMPLIFY,
    DIRECTION,
    NULL_NEIGHBOURS,
    SCALE,
    InterventionConfig,
    Job,
    benjamini_hochberg,
    compute_mode,
    edit_sizes,
    feature_acts_at,
    fstar_bootstrap,
    job_edit,
    null_direction_vectors,
    null_edit_size,
    null_plan,
    prepare_dev,
    run_jobs,
    summarize_effect,
)
from igds.modeling.hooks import patch
from igds.modeling.sae import decoder_directions
from igds.store import ActivationStore
from tests.helpers import make_items, tiny_setup

SITE = "blocks.1.hook_resid_post"


def naive_nll(model, item, edit_fn):
    """Full forward of one unpadded item with a patch hook; mean response NLL from the logits."""
    ids = torch.tensor([item.input_ids])
    with torch.no_grad(), patch(model, SITE, edit_fn):
        logits = model(ids).logits[0]
    t = torch.arange(item.prompt_len - 1, len(item.input_ids) - 1)
    return F.cross_entropy(logits[t], ids[0, t + 1]).item()


def firing_features(acts: torch.Tensor, n: int) -> list[int]:
    """The ``n`` features firing at the most edited positions (``acts`` of every feature ``[B, T, d_sae]``)."""
    count = (acts > 0).sum((0, 1))
    return [int(f) for f in torch.argsort(count, descending=True, stable=True)[:n] if count[f] > 0]


@pytest.mark.parametrize(("kind", "mode"), [(AMPLIFY, SCALE), (AMPLIFY, ADD), (ABLATE, SCALE), (DIRECTION, SCALE)])
def test_fast_path_equals_naive_full_forward(kind, mode):
    model, tok, sae = tiny_setup()
    items = make_items(tok, repeat=3)  # 24 rows: two length buckets
    # exact fp32 path; stack rows across chunks
    cfg = InterventionConfig(batch_rows=5, sink_norm_factor=1e6, precision="fp32", edit_mode=mode)
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    assert len(cache.buckets) == 2
    all_acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    feats = firing_features(all_acts, 2)
    assert len(feats) == 2
    dirs = dict(zip(feats, decoder_directions(sae, feats), strict=True))
    acts = {f: all_acts[:, :, f] for f in feats}
    mean_act = dict(zip(feats, (0.7, 1.3), strict=True))
    directions = {k: v * 0.8 for k, v in enumerate(null_direction_vectors(model.config.hidden_size, 2, seed=3))}
    if kind == DIRECTION:
        jobs = [Job(k, DIRECTION, 1.0) for k in directions]
    else:
        jobs = [Job(f, kind, 2.0 if kind == AMPLIFY else 0.0) for f in feats]
    fast = run_jobs(model, cache, jobs, dirs, mean_act, acts, cfg, directions=directions)
    changed = 0
    for job in jobs:
        for r, it in enumerate(items):
            n = len(it.input_ids)
            e = cache.edit_mask[r, :n].unsqueeze(-1).float()
            if kind == DIRECTION:
                delta = e * directions[job.feature] / e.sum().sqrt()
            elif kind == ABLATE:
                delta = -acts[job.feature][r, :n].unsqueeze(-1) * dirs[job.feature]
            elif mode == SCALE:
                delta = job.alpha * acts[job.feature][r, :n].unsqueeze(-1) * dirs[job.feature]
            else:
                delta = e * (job.alpha * mean_act[job.feature]) * dirs[job.feature]
            ref = naive_nll(model, it, lambda h, delta=delta: h + delta)
            assert fast[job][r] == pytest.approx(ref, abs=1e-5)
            changed += abs(ref - cache.nll_base[r].item()) > 1e-5
    assert changed  # the edits are not no-ops, so the parity is informative
    # base NLL from the replay equals a clean forward
    for r, it in enumerate(items):
        assert cache.nll_base[r].item() == pytest.approx(naive_nll(model, it, lambda h: h), abs=1e-5)


@pytest.mark.parametrize(("kind", "mode"), [(AMPLIFY, SCALE), (AMPLIFY, ADD), (ABLATE, SCALE), (DIRECTION, ADD)])
def test_prompt_content_edits_leave_the_residual_at_response_positions_unchanged(monkeypatch, kind, mode):
    model, tok, sae = tiny_setup()
    items = make_items(tok)
    cfg = InterventionConfig(positions="prompt_content", edit_mode=mode, precision="fp32", sink_norm_factor=1e6)
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    all_acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    f = firing_features(all_acts, 1)[0]
    job = Job(0, DIRECTION, 1.0) if kind == DIRECTION else Job(f, kind, 1.0)
    seen = []  # the residuals the replay receives at the site

    def recording_replay(model_, site, h, inputs):
        seen.append(h.clone())
        return replay_from(model_, site, h, inputs)

    replay_from = iv.replay_from
    monkeypatch.setattr(iv, "replay_from", recording_replay)
    run_jobs(model, cache, [job], {f: decoder_directions(sae, [f])[0]}, {f: 1.0}, {f: all_acts[:, :, f]}, cfg,
             directions={0: torch.ones(model.config.hidden_size)})
    assert seen
    rows = iv.job_rows(cache, job, {f: all_acts[:, :, f]}, cfg)
    edited = [h for chunk in seen for h in chunk]  # one bucket here; rows in order within it
    order = [r for b in range(len(cache.buckets)) for r in rows if int(cache.row_bucket[r]) == b]
    assert len(order) == len(edited) > 0
    n_changed_prompt = 0
    for h, r in zip(edited, order, strict=True):
        it = items[r]
        w = h.shape[0]
        base = cache.hidden[r, :w]
        response = torch.arange(it.prompt_len, len(it.input_ids))
        content = torch.arange(1, it.prompt_len)
        assert torch.equal(h[response], base[response])                       # untouched, bit for bit
        n_changed_prompt += int((h[content] != base[content]).any(-1).sum())
    assert n_changed_prompt > 0
    # the same holds for the edit itself on every row
    for r in range(len(items)):
        delta = job_edit(cache, job, r, {f: decoder_directions(sae, [f])[0]}, {f: 1.0}, {f: all_acts[:, :, f]}, cfg,
                         {0: torch.ones(model.config.hidden_size)})
        assert not delta[~cache.edit_mask[r]].any()


def test_scale_on_a_feature_that_never_fires_is_a_noop():
    model, tok, sae = tiny_setup()
    items = make_items(tok)
    cfg = InterventionConfig(precision="fp32")
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    all_acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    silent = [f for f in range(int(sae.cfg.d_sae)) if not all_acts[:, :, f].any()]
    assert silent, "the tiny SAE has features that never fire on these items"
    f = silent[0]
    dirs, acts = {f: decoder_directions(sae, [f])[0] * 100}, {f: all_acts[:, :, f]}
    job = Job(f, AMPLIFY, 4.0)
    out = run_jobs(model, cache, [job], dirs, {f: 1.0}, acts, cfg)
    assert np.array_equal(out[job], cache.nll_base.numpy())
    # the same feature added (add mode) is not a no-op: the no-op is scale's, not the direction's
    added = run_jobs(model, cache, [job], dirs, {f: 1.0}, acts, dataclasses.replace(cfg, edit_mode=ADD))
    assert not np.allclose(added[job], cache.nll_base.numpy())


def test_ablation_of_a_feature_that_never_fires_changes_nothing():
    model, tok, sae = tiny_setup()
    cfg = InterventionConfig(positions="all")
    cache = prepare_dev(model, SITE, make_items(tok), tok.pad_token_id, cfg)
    acts = {5: torch.zeros(cache.hidden.shape[:2])}
    out = run_jobs(model, cache, [Job(5, "ablate", 0.0)], {5: torch.ones(32)}, {5: 1.0}, acts, cfg)
    assert np.array_equal(out[Job(5, "ablate", 0.0)], cache.nll_base.numpy())


def test_edit_sizes_and_random_directions_have_the_documented_norms():
    model, tok, sae = tiny_setup()
    items = make_items(tok)
    cfg = InterventionConfig(precision="fp32", sink_norm_factor=1e6)
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    all_acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    feats = firing_features(all_acts, 3)
    dirs = decoder_directions(sae, feats)
    acts = all_acts[:, :, feats]
    for mode in (SCALE, ADD):
        c = dataclasses.replace(cfg, edit_mode=mode)
        sizes = edit_sizes(cache, dirs, acts, [0.5, 1.0, 2.0], mode)
        for i, f in enumerate(feats):  # RMS over rows of the per-row norm of the α = 1 edit
            norms = [job_edit(cache, Job(f, AMPLIFY, 1.0), r, {f: dirs[i]}, {f: [0.5, 1.0, 2.0][i]},
                              {f: acts[:, :, i]}, c).norm().item() for r in range(len(items))]
            assert sizes[i] == pytest.approx(float(np.sqrt(np.mean(np.square(norms)))), rel=1e-5)
    s = null_edit_size([0.0, 3.0, np.nan, 1.0, 2.0])
    assert s == 2.0  # median over the candidates whose edit is not a no-op
    u = null_direction_vectors(model.config.hidden_size, 4, seed=0)
    assert torch.allclose(u.norm(dim=1), torch.ones(4))
    for r in range(len(items)):  # every row with edited positions gets an edit of norm s
        delta = job_edit(cache, Job(1, DIRECTION, 1.0), r, {}, {}, {}, cfg, {1: u[1] * s})
        assert delta.norm().item() == pytest.approx(s, rel=1e-5) if cache.edit_mask[r].any() else delta.norm() == 0


def test_null_plan_is_seeded_and_density_matched_to_non_candidates():
    rng = np.random.default_rng(5)
    density = rng.uniform(1e-4, 0.5, 200)
    density[rng.choice(200, 30, replace=False)] = 0.0  # never fired: not eligible
    cands = [3, 17, 40, 41, 90, 150]
    density[cands] = [0.01, 0.02, 0.2, 0.3, 0.001, 0.05]
    cfg = InterventionConfig(null_directions=4, null_features=16, null_placed=2)
    plan = null_plan(cands, density, cfg)
    again = null_plan(list(reversed(cands)), density, cfg)
    other = null_plan(cands, density, dataclasses.replace(cfg, null_seed=1))
    pd.testing.assert_frame_equal(plan, again)
    assert not plan.equals(other)
    assert plan.kind.tolist() == ["direction"] * 4 + ["feature"] * 16 + ["placed"] * 12
    assert plan.null_id.tolist() == list(range(32))
    placed = plan[plan.kind == "placed"]
    assert sorted(placed.matched) == sorted(cands * 2) and set(placed.feature) == {0, 1}
    feats = plan[plan.kind == "feature"]
    assert feats.feature.is_unique and not feats.feature.isin(cands).any()
    assert (density[feats.feature] > 0).all() and feats.matched.isin(cands).all()
    for f, c in zip(feats.feature, feats.matched, strict=True):  # among the nearest in log density
        eligible = [g for g in np.flatnonzero(density > 0) if g not in cands]
        dist = sorted(abs(np.log(density[g]) - np.log(density[c])) for g in eligible)
        assert abs(np.log(density[f]) - np.log(density[c])) <= dist[NULL_NEIGHBOURS + 16 - 1]
    u0, u1 = null_direction_vectors(32, 4, 0), null_direction_vectors(32, 4, 1)
    assert torch.equal(u0, null_direction_vectors(32, 4, 0)) and not torch.allclose(u0, u1)
    assert torch.equal(u0[:2], null_direction_vectors(32, 2, 0))  # direction k does not depend on the count
    with pytest.raises(ValueError, match="density"):
        null_plan(cands, None, cfg)


def _measure(tmp_path, name, cfg, max_null=None, max_features=None):
    model, tok, sae = tiny_setup()
    items = make_items(tok, repeat=2)
    store = ActivationStore(tmp_path / f"{name}.duckdb")
    cache = prepare_dev(model, SITE, items, tok.pad_token_id, cfg)
    all_acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    cands = firing_features(all_acts, 4)
    density = (all_acts > 0).float().mean((0, 1)).numpy()
    mean_act = np.where(density > 0, 1.0, np.nan)
    store.start_run(name, "intervene", cfg.to_dict())
    res = measure_here(store, name, model, sae, SITE, items, Candidates(cands, mean_act, density), cfg,
                       tok.pad_token_id, max_features=max_features, max_null=max_null)
    return store, res, cands, density


def test_null_is_identical_for_a_seed_differs_for_another_and_resumes(tmp_path):
    cfg = InterventionConfig(null_directions=6, null_features=3, null_placed=1, precision="fp32", sweep_top=2,
                             min_fired=2, require_significance=False, delta=0.0, looks=())
    store, a, cands, density = _measure(tmp_path, "a", cfg)
    _, b, _, _ = _measure(tmp_path, "b", cfg)
    _, c, _, _ = _measure(tmp_path, "c", dataclasses.replace(cfg, null_seed=7))
    cols = ["null_id", "kind", "feature", "matched", "edit_norm", "effect"]
    assert len(a.null) == 9 + len(cands) and (a.null.kind == "direction").sum() == 6
    assert sorted(a.null[a.null.kind == "placed"].matched) == sorted(cands)
    pd.testing.assert_frame_equal(a.null[cols], b.null[cols])
    assert a.null_cut == b.null_cut
    assert not np.allclose(a.null.effect, c.null.effect)
    assert not a.null[a.null.kind == "feature"].feature.isin(cands).any()
    assert (a.null.effect != 0).any()
    # interrupted inside the null: no candidate runs before the null is complete; the resume has no duplicates
    _, part, _, _ = _measure(tmp_path, "d", cfg, max_null=4)
    assert len(part.null) == 4 and part.summary.n.sum() == 0 and not part.kept
    model, tok, sae = tiny_setup()
    st = ActivationStore(tmp_path / "d.duckdb")
    full = measure_here(st, "d", model, sae, SITE, make_items(tok, repeat=2),
                        Candidates(cands, np.where(density > 0, 1.0, np.nan), density), cfg, tok.pad_token_id)
    assert len(full.null) == 9 + len(cands) and full.null.null_id.is_unique
    assert st.scalar("SELECT count(*) FROM null_effects WHERE effect_id = 'd'") == (9 + len(cands)) * 16
    np.testing.assert_allclose(full.null.effect, a.null.effect, atol=1e-6)
    # the sweep and ablation: F*'s strongest 2 get every α and ablation, every other candidate α = 1 only
    alphas = a.summary[a.summary.kind == AMPLIFY].groupby("feature").alpha.nunique()
    swept = set(alphas[alphas == 3].index)
    assert swept == set(a.kept[:2]) and set(a.summary[a.summary.kind == ABLATE].feature) == swept
    assert (alphas[~alphas.index.isin(swept)] == 1).all()


def test_summary_signs_and_paired_test():
    base = np.array([2.0, 2.0, 2.0, 2.0])
    s = summarize_effect(Job(1, "amplify", 1.0), base, base - np.array([0.1, 0.2, 0.15, 0.12]), 4)
    assert s["effect"] == pytest.approx(0.1425) and s["p_value"] < 0.01 and s["ci_low"] > 0
    s = summarize_effect(Job(1, "ablate", 0.0), base, base + 0.3, 4)
    assert s["effect"] == pytest.approx(0.3) and s["p_value"] == 0.0
    s = summarize_effect(Job(1, DIRECTION, 1.0), base, base - 0.2, 4)
    assert s["effect"] == pytest.approx(0.2)


def test_benjamini_hochberg_matches_hand_computation():
    q = benjamini_hochberg([0.01, 0.04, 0.03, 0.5])
    # sorted p: .01 .03 .04 .5 → ×4/rank: .04 .06 .0533 .5 → running min from the top: .04 .0533 .0533 .5
    assert q == pytest.approx([0.04, 0.05333333, 0.05333333, 0.5])


def test_stability_is_seeded_and_separates_clear_from_marginal_features():
    rng = np.random.default_rng(1)
    n = 40
    deltas = np.stack([rng.normal(0.2, 0.05, n), rng.normal(0.03, 0.2, n), rng.normal(-0.1, 0.05, n),
                       np.full(n, np.nan)])
    nulls = rng.normal(0.0, 0.1, (30, n))
    cfg = InterventionConfig()
    fired = [40, 40, 40, 40]
    s = fstar_bootstrap(deltas, nulls, fired, cfg, n_boot=200, seed=0)
    assert np.array_equal(s, fstar_bootstrap(deltas, nulls, fired, cfg, n_boot=200, seed=0))
    assert not np.array_equal(s, fstar_bootstrap(deltas, nulls, fired, cfg, n_boot=200, seed=1))
    assert s[0] == 1.0 and 0.0 < s[1] < 1.0 and s[2] == 0.0 and s[3] == 0.0
    assert fstar_bootstrap(deltas, nulls, [5, 40, 40, 40], cfg, n_boot=20)[0] == 0.0  # untestable: never kept


def test_config_validates_edit_mode_positions_alphas_and_the_null():
    assert InterventionConfig().edit_mode == SCALE and InterventionConfig().positions == "content"
    assert InterventionConfig().alphas == (0.5, 1.0, 2.0) and InterventionConfig().delta is None
    for bad in ({"edit_mode": "multiply"}, {"positions": "prompt"}, {"alphas": (0.5, 2.0)},
                {"null_directions": 0, "null_features": 0, "null_placed": 0}, {"futility": 1.0},
                {"looks": (128, 64)}, {"null_fit": "cauchy"}, {"min_fired": -1}):
        with pytest.raises(ValueError):
            InterventionConfig(**bad)
    assert InterventionConfig(null_features=0, null_placed=0, delta=0.0, require_significance=False).delta == 0.0
    back = InterventionConfig.from_dict(InterventionConfig().to_dict())
    assert back == InterventionConfig()


def test_run_key_includes_the_compute_mode_and_weight_dtype(monkeypatch):
    from igds.workflow.stages import effect_id_for

    model, _, _ = tiny_setup()
    ws = SimpleNamespace(model_key="m", sae_key="s")
    recall = SimpleNamespace(recall_id="r")
    fp32, auto = InterventionConfig(precision="fp32"), InterventionConfig(precision="auto")
    assert compute_mode(model, fp32) == "fp32"
    assert compute_mode(model, auto) == "fp32"  # the precision of record: no autocast on any CPU
    keys = {effect_id_for(ws, recall, ["a", "b"], fp32, model)}
    assert effect_id_for(ws, recall, ["b", "a"], fp32, model) in keys  # dev order does not matter
    bf16 = tiny_setup()[0].to(torch.bfloat16)
    assert compute_mode(bf16, fp32) == "bfloat16"
    keys.add(effect_id_for(ws, recall, ["a", "b"], fp32, bf16))
    assert len(keys) == 2
    # where auto autocasts (CUDA's policy, applied here), the mode and so the key differ
    monkeypatch.setattr(settings, "fast_bf16_by_default", lambda device: True)
    assert compute_mode(model, auto) == "fp32+bf16-autocast"
    assert effect_id_for(ws, recall, ["a", "b"], auto, model) not in keys


def test_autocast_keeps_an_fp32_residual_stream_for_edits(monkeypatch):
    model, tok, _ = tiny_setup()
    cfg = InterventionConfig(positions="all")
    assert not prepare_dev(model, SITE, make_items(tok), tok.pad_token_id, cfg).autocast  # auto on a CPU: fp32
    monkeypatch.setattr(settings, "fast_bf16_by_default", lambda device: True)  # CUDA's policy, here
    cache = prepare_dev(model, SITE, make_items(tok), tok.pad_token_id, cfg)
    assert cache.hidden.dtype == torch.float32 and cache.autocast
    fp32 = prepare_dev(model, SITE, make_items(tok), tok.pad_token_id, dataclasses.replace(cfg, precision="fp32"))
    assert not fp32.autocast
    # autocast changes the numbers only at bf16 matmul precision
    assert torch.allclose(cache.nll_base, fp32.nll_base, atol=0.05)


def test_items_without_spans_need_positions_all():
    model, tok, _ = tiny_setup()
    bare = [dataclasses.replace(it, spans={}) for it in make_items(tok)]
    with pytest.raises(ValueError, match="spans"):
        prepare_dev(model, SITE, bare, tok.pad_token_id, InterventionConfig())
    assert prepare_dev(model, SITE, bare, tok.pad_token_id, InterventionConfig(positions="all")).edit_mask.any()
