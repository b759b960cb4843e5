"""The shipped filter procedure on a tiny model with planted features, replayed over 200 seeds: a feature whose
effect is twice the detectable size is validated in at least 80% of runs, a feature with no effect (a random
decoder direction) in at most 8.1% (0.05 + 2 SE), a feature firing on fewer than 10 dev items reads "untestable",
and the per-seed replay (:func:`igds.method.verdict.sequential_verdict`) decides what the look-by-look driver
decides.

A run: 256 dev items drawn (seeded) from 640, in the run's look order, the shipped null (128 density- and
response-share-matched features and 4 placed random directions per candidate, the seed's draws), α = 1 effects of
every element on every item, then the looks with futility stopping and the verdict. The model, SAE and items are
built once; a run costs the replays of its own null.
"""

from __future__ import annotations

import dataclasses
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from igds.demo import tiny_model, tiny_sae, tiny_tokenizer
from igds.executor.intervene import Candidates, measure_here
from igds.method.intervene import (
    AMPLIFY,
    InterventionConfig,
    dev_sample,
    feature_acts_at,
    feature_firing,
    look_bounds,
    null_plan,
    prepare_dev,
    replay_nll,
    run_feature_effects,
    run_null_elements,
)
from igds.method.verdict import detectable_effect, sequential_verdict
from igds.modeling.batching import EncodedItem
from igds.store import ActivationStore

SITE = "blocks.1.hook_resid_post"
N_POOL, N_RUNS = 384, 200
EFFECT, NULL, RARE = 0, 1, 2  # the planted features' ids
CANDIDATES = [EFFECT, NULL, RARE]
# the shipped procedure; only the batching differs (a tiny model affords every row of a run in a few forwards)
CFG = InterventionConfig(precision="fp32", batch_rows=4096, alphas=(1.0,), ablate=False, sweep_top=0)


def _items(tok) -> list[EncodedItem]:
    """640 short prompt/response items from the shipped summarization corpus (BOS, content, response)."""
    from igds.data.corpus import load_corpus

    out = []
    for ex in load_corpus(["summarization"], ["train"])[:N_POOL]:
        p = tok(ex.prompt[:22], add_special_tokens=False)["input_ids"]
        r = tok(ex.response[:14], add_special_tokens=False)["input_ids"]
        ids = [tok.bos_token_id, *p, *r]
        spans = {"template": ((0, 1),), "instruction": (), "content": ((1, 1 + len(p)),),
                 "response": ((1 + len(p), len(ids)),)}
        out.append(EncodedItem(example_id=ex.id, input_ids=ids, prompt_len=1 + len(p), spans=spans))
    return out


def _plant_encoder(sae, cache, feature: int, token: int) -> None:
    """Make ``feature`` fire only at positions holding ``token``: its encoder reads the residual along the direction
    that separates those positions, with a bias above every other position's score."""
    ids = torch.zeros(cache.edit_mask.shape, dtype=torch.long)
    for i, it in enumerate(cache.items):
        ids[i, : len(it.input_ids)] = torch.tensor(it.input_ids)
    h = cache.hidden[cache.edit_mask].float()
    is_tok = ids[cache.edit_mask] == token
    u = h[is_tok].mean(0) - h[~is_tok].mean(0)
    u = u / u.norm()
    score = (h - sae.b_dec) @ u
    thr = float(score[~is_tok].max()) + 1e-3
    above = score[is_tok] - thr
    gain = 1.0 / max(float(above[above > 0].median()), 1e-6) if (above > 0).any() else 1.0
    with torch.no_grad():  # activation about 1 where it fires
        sae.W_enc[:, feature] = gain * u
        sae.b_enc[feature] = -gain * thr


def _gradient_direction(model, cache, acts: torch.Tensor) -> torch.Tensor:
    """The unit direction along which adding ``acts``-weighted edits lowers the dev NLL fastest (first order)."""
    h = cache.hidden.clone().requires_grad_(True)
    with torch.enable_grad():
        nll = replay_nll(model, cache, torch.arange(len(cache.items)), h)
        nll[~torch.isnan(nll)].sum().backward()
    v = -(h.grad * acts.unsqueeze(-1)).sum((0, 1))
    return v / v.norm()


class Effects:
    """Per-item α = 1 effects over the whole pool of every feature asked for, computed once (a feature's edit of an
    item does not depend on which other items are in the dev set)."""

    def __init__(self, model, sae, items):
        self.model, self.sae, self.items = model, sae, items
        self.cache = prepare_dev(model, SITE, items, 0, CFG)
        self.row = {it.example_id: i for i, it in enumerate(items)}
        self.by_feature: dict[int, np.ndarray] = {}

    def of(self, features) -> dict[int, np.ndarray]:
        new = sorted({int(f) for f in features} - set(self.by_feature))
        ones = np.ones(int(self.sae.cfg.d_sae))
        for e, s in run_feature_effects(self.model, self.sae, self.cache, "pool", [(f, AMPLIFY, 1.0) for f in new],
                                        ones, CFG):
            self.by_feature[int(s.feature.iloc[0])] = (e.nll_base - e.nll_int).to_numpy()
        return {int(f): self.by_feature[int(f)] for f in features}

    def reset(self, features) -> None:
        for f in features:
            self.by_feature.pop(int(f), None)


def _run(effects: Effects, density, seed: int) -> tuple[object, float]:
    """One seeded run of the procedure: its verdict (one row per candidate) and its detectable effect."""
    model, sae, items = effects.model, effects.sae, effects.items
    cfg = dataclasses.replace(CFG, null_seed=seed)
    rng = np.random.default_rng([7, seed])
    sample = [items[i] for i in sorted(rng.choice(len(items), 256, replace=False))]
    dev, _ = dev_sample(sample, cfg)
    rows = [effects.row[it.example_id] for it in dev]
    pool = effects.cache  # the run's dev items are rows of the pool's cache: the same residuals, masks and NLLs
    firing = feature_firing(sae, SimpleNamespace(items=dev, hidden=pool.hidden[rows], edit_mask=pool.edit_mask[rows]))
    n_fired = firing.set_index("feature").n_fired
    plan = null_plan(CANDIDATES, density, cfg, firing)
    feats = effects.of(plan[plan.kind == "feature"].feature)
    placed = plan[plan.kind == "placed"]
    ones = np.ones(int(sae.cfg.d_sae))
    null = np.stack([feats[int(f)][rows] for f in plan[plan.kind == "feature"].feature]
                    + [(e.nll_base - e.nll_int).to_numpy() for e, _ in
                       run_null_elements(model, sae, pool, "run", placed, 0.0, ones, cfg, span=torch.tensor(rows))])
    tested = [c for c in CANDIDATES if n_fired[c] >= cfg.min_fired]
    got = effects.of(tested)
    cand = np.stack([got[c][rows] if c in got else np.full(len(dev), np.nan) for c in CANDIDATES])
    fired = [int(n_fired[c]) for c in CANDIDATES]
    placed_on = [-1] * int((plan.kind == "feature").sum()) + [CANDIDATES.index(int(c)) for c in placed.matched]
    verdict = sequential_verdict(cand, null, fired, look_bounds(len(dev), cfg), cfg, placed_on=placed_on)
    return verdict, detectable_effect(null, len(tested), cfg.fdr, cfg.null_fit)


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    # d_model 128: a random direction is as near orthogonal to the gradient as in a real model's residual (576)
    model, tok = tiny_model(n_layers=3, hidden=128), tiny_tokenizer()
    model.config._attn_implementation = "eager"  # faster than SDPA's masked path at this size
    sae = tiny_sae(d_in=128, d_sae=1024, k=16, seed=1)
    with torch.no_grad():  # a feature's edit about a tenth of the residual's norm, as in a trained SAE (not 10×)
        sae.W_dec.mul_(0.01)
    items = _items(tok)
    cache = prepare_dev(model, SITE, items, 0, CFG)
    # tokens by the number of items holding them in the response: a frequent one for the effect and the null
    # features, one in fewer than 10 items for the rare one
    holders, anywhere = {}, {}
    for it in items:
        for t in set(it.input_ids[it.prompt_len:]):
            holders[t] = holders.get(t, 0) + 1
        for t in set(it.input_ids[1:]):
            anywhere[t] = anywhere.get(t, 0) + 1
    common = sorted((t for t, n in holders.items() if 0.2 * N_POOL <= n <= 0.5 * N_POOL), key=lambda t: -holders[t])
    rare = next(t for t, n in sorted(anywhere.items(), key=lambda x: x[1]) if 2 <= n <= 5 and t in holders)
    for f, t in ((EFFECT, common[0]), (NULL, common[1]), (RARE, rare)):
        _plant_encoder(sae, cache, f, t)
    acts = feature_acts_at(sae, cache, CANDIDATES)
    with torch.no_grad():
        sae.W_dec[NULL] = torch.tensor(np.random.default_rng(3).standard_normal(128), dtype=torch.float32)
        sae.W_dec[RARE] = _gradient_direction(model, cache, acts[:, :, 2])
    direction = _gradient_direction(model, cache, acts[:, :, 0])
    all_acts = feature_acts_at(sae, cache, range(int(sae.cfg.d_sae)))
    density = (all_acts > 0).float().mean((0, 1)).numpy()

    effects = Effects(model, sae, items)
    unit = float(sae.W_dec[3:].norm(dim=1).median())  # a typical decoder norm

    def at(scale: float):  # the planted feature's effect and the detectable size, with the decoder at this norm
        with torch.no_grad():
            sae.W_dec[EFFECT] = scale * unit * direction
            sae.W_dec[NULL] = scale * unit * sae.W_dec[NULL] / sae.W_dec[NULL].norm()
        effects.reset([EFFECT, NULL])
        verdict, det = _run(effects, density, seed=10_000)
        return float(verdict.effect[EFFECT]), det

    lo, hi = 0.0, 1.0
    while at(hi)[0] < 2 * at(hi)[1] and hi < 64:
        lo, hi = hi, 2 * hi
    for _ in range(6):  # bisection: effect = 2 × detectable
        mid = (lo + hi) / 2
        eff, det = at(mid)
        lo, hi = (mid, hi) if eff < 2 * det else (lo, mid)
    eff, det = at(hi)
    return {"effects": effects, "density": density, "effect": eff, "detectable": det}


def test_planted_effect_is_found_and_a_planted_null_is_not(world):
    assert world["effect"] == pytest.approx(2 * world["detectable"], rel=0.1)
    t0 = time.perf_counter()
    kept = np.zeros((N_RUNS, 3), bool)
    untestable = np.zeros(N_RUNS, bool)
    for seed in range(N_RUNS):
        v, _ = _run(world["effects"], world["density"], seed)
        kept[seed] = v.kept.to_numpy()
        untestable[seed] = bool(v.untestable[RARE]) and v.reason[RARE].startswith("untestable")
    rate_effect, rate_null = kept[:, EFFECT].mean(), kept[:, NULL].mean()
    print(f"\nplanted effect {world['effect']:+.4f} nats = 2 × detectable {world['detectable']:+.4f}: validated in "
          f"{rate_effect:.1%} of {N_RUNS} runs; planted null: {rate_null:.1%}; {time.perf_counter() - t0:.1f} s")
    assert rate_effect >= 0.80
    assert rate_null <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / N_RUNS)  # 8.1%
    assert untestable.all() and not kept[:, RARE].any()


def test_the_replay_decides_what_the_look_by_look_driver_decides(world, tmp_path):
    effects, density = world["effects"], world["density"]
    model, sae, items = effects.model, effects.sae, effects.items
    cfg = dataclasses.replace(CFG, null_seed=5, batch_rows=512)
    rng = np.random.default_rng([7, 5])
    sample = [items[i] for i in sorted(rng.choice(len(items), 256, replace=False))]
    store = ActivationStore(tmp_path / "s.duckdb")
    store.start_run("r", "intervene", cfg.to_dict())
    res = measure_here(store, "r", model, sae, SITE, sample, Candidates(CANDIDATES, np.ones(1024), density), cfg, 0)
    replay, _ = _run(effects, density, seed=5)
    v = res.verdict.set_index("feature")
    assert v.kept.tolist() == replay.kept.tolist()
    assert v.n.tolist() == replay.n.tolist()
    np.testing.assert_allclose(v.effect.to_numpy(dtype=float), replay.effect.to_numpy(dtype=float), atol=1e-6)
    np.testing.assert_allclose(v.p.to_numpy(dtype=float), replay.p.to_numpy(dtype=float), atol=1e-6)
    assert v.loc[RARE, "reason"].startswith("untestable")
