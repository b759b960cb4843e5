"""End to end on a tiny model with planted structure: one SAE feature carries the task signal.

The feature's encoder reads the direction separating task residuals from general ones, and its
decoder writes the direction that lowers the task's response NLL. Recall must rank it among the
top candidates, amplification must lower the NLL and the filter keep it, and IGDS must prefer the
pool examples that activate it.
"""

import json
import os
import random
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from igds.data.corpus import Example, example_id
from igds.executor.extract import extract_here
from igds.executor.intervene import Candidates, measure_here
from igds.method.config import ExtractConfig, InterventionConfig
from igds.method.pool import pool_frame
from igds.method.recall import RecallConfig, recall_features
from igds.method.resonance import ResonanceConfig, load_resonance_matrix
from igds.method.selection import SelectionConfig, select_from_ranking
from igds.modeling.encoding import encode_examples
from igds.modeling.hooks import run_until
from igds.scope import PoolSpec
from igds.store import ActivationStore
from igds.workflow.stages import candidates_of, fstar_stability, mean_activation_vector, token_density_vector
from tests.helpers import tiny_setup

SITE = "blocks.1.hook_resid_post"
GOLDEN = Path(__file__).parents[1] / "golden" / "fstar.json"
PLANTED = 7
# planted decoder norm: its edit of the prompt content must beat the null (random edits of the candidates'
# median edit size) while the dose-response still rises from alpha 0.5 to 2 (residual norms here are ~0.15)
DEC_NORM = 0.05
WORDS = ["river", "stone", "cloud", "green", "table", "music", "winter", "paper", "light", "garden", "bread", "horse"]


def make_examples():
    rng = random.Random(0)
    out = []

    def add(task, split, prompt, response):
        out.append(Example(id=example_id(prompt, response), task=task, source=task, split=split,
                           prompt=prompt, response=response, meta={}))

    for split, n in (("probe", 24), ("dev", 16), ("train", 40)):
        for i in range(n):
            add("planted", split, f"Echo the code {split}{i:02d}: zzzz zzzz", "zzzz zzzz zzzz")
    for i in range(60):
        words = " ".join(rng.choice(WORDS) for _ in range(6))
        add("general", "train", f"Describe {words} #{i}", " ".join(rng.choice(WORDS) for _ in range(5)))
    return out


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    model, tok, sae = tiny_setup()
    examples = make_examples()
    items = {e.id: it for e, it in zip(examples, encode_examples(tok, examples, 96), strict=True)}
    by = lambda task, split: [e for e in examples if e.task == task and e.split == split]  # noqa: E731

    z_id = tok.convert_tokens_to_ids("z")

    def resid(exs, only_z=False):
        out = []
        for e in exs:
            ids = items[e.id].input_ids
            h = run_until(model, SITE, torch.tensor([ids]))[0]
            keep = [t for t in range(1, len(ids)) if not only_z or ids[t] == z_id]
            out.append(h[keep])
        return torch.cat(out)

    with torch.no_grad():
        task_h, gen_h = resid(by("planted", "probe"), only_z=True), resid(by("general", "train"))
        task_dir = task_h.mean(0) - gen_h.mean(0)
        enc = task_dir / task_dir.norm()
        # fire only where the projection clearly exceeds anything seen on general text
        lo, hi = float((gen_h @ enc).max()), float((task_h @ enc).mean())
        threshold = lo + 0.3 * (hi - lo)
        # decoder: the direction that most lowers the task's response NLL (negative gradient)
        h = torch.cat([run_until(model, SITE, torch.tensor([items[e.id].input_ids])) for e in by("planted", "dev")])
    h = h.clone().requires_grad_(True)
    from igds.modeling.hooks import patch

    ids = torch.stack([torch.tensor(items[e.id].input_ids) for e in by("planted", "dev")])
    with patch(model, SITE, lambda x: h):
        logits = model(ids).logits
    plen = items[by("planted", "dev")[0].id].prompt_len
    F.cross_entropy(logits[:, plen - 1 : -1].reshape(-1, logits.shape[-1]), ids[:, plen:].reshape(-1)).backward()
    # interventions edit the prompt content, where the feature fires on the code's z tokens: take the
    # gradient there
    content = torch.zeros(ids.shape, dtype=torch.bool)
    for r, e in enumerate(by("planted", "dev")):
        for a, b in items[e.id].spans["content"]:
            content[r, a:b] = ids[r, a:b] == z_id
    grad_dir = -h.grad[content].sum(0)
    with torch.no_grad():
        assert hi > lo, "task and general residuals must be separable for the plant"
        sae.W_enc[:, PLANTED] = enc * 50.0
        sae.b_enc[PLANTED] = -50.0 * threshold
        sae.W_dec[PLANTED] = grad_dir / grad_dir.norm() * DEC_NORM
    store = ActivationStore(tmp_path_factory.mktemp("planted") / "s.duckdb")
    store.add_examples(examples, dataset="planted")
    cfg = ExtractConfig(max_length=96, shard_size=50)
    store.start_run("x", "extract", cfg.to_dict())
    extract_here(store, "x", model, sae, SITE, list(items.values()), cfg, tok.pad_token_id)
    return model, tok, sae, store, examples, items, by


def test_recall_ranks_planted_feature_first(planted):
    model, tok, sae, store, examples, items, by = planted
    res = recall_features(store, "x", "planted", [e.id for e in by("planted", "probe")],
                          [e.id for e in by("general", "train")], RecallConfig(min_freq=0.5, k_recall=5))
    assert PLANTED in res.candidates[:3]
    row = res.table.set_index("feature").loc[PLANTED]
    assert row.freq_task == 1.0 and row.freq_ref < 0.2


def test_amplification_lowers_nll_filter_keeps_it_and_igds_prefers_its_examples(planted):
    model, tok, sae, store, examples, items, by = planted
    rec = recall_features(store, "x", "planted", [e.id for e in by("planted", "probe")],
                          [e.id for e in by("general", "train")], RecallConfig(min_freq=0.5, k_recall=5))
    d_sae = int(sae.cfg.d_sae)
    mean_act, density = mean_activation_vector(rec, d_sae), token_density_vector(rec, d_sae)
    dev_items = [items[e.id] for e in by("planted", "dev")]
    # scale edits of the prompt content (where the plant sits); 16 dev items, one look and a 20-element null are
    # too few for the fitted null's test (tests/integration/test_planted_filter.py measures its power), so this
    # pipeline test keeps effect > 0 and checks the plant beats every null element
    cfg = InterventionConfig(positions="prompt_content", min_fired=2, looks=(), require_significance=False, delta=0.0)
    store.start_run("eff", "intervene", cfg.to_dict())
    # interrupted after one feature, then resumed: no duplicates, same final state
    first = measure_here(store, "eff", model, sae, SITE, dev_items, Candidates(rec.candidates, mean_act, density),
                         cfg, tok.pad_token_id, max_features=1)
    assert first.summary[first.summary.n > 0].feature.nunique() == 1
    res = measure_here(store, "eff", model, sae, SITE, dev_items, Candidates(rec.candidates, mean_act, density),
                       cfg, tok.pad_token_id)
    assert res.summary.groupby(["feature", "kind", "alpha"]).size().max() == 1
    tested = int((res.summary[res.summary.kind == "amplify"].n > 0).sum() - len(res.kept[: cfg.sweep_top]) * 2)
    assert store.scalar("SELECT count(*) FROM effects WHERE effect_id = 'eff'") == \
        (tested + 3 * len(res.kept[: cfg.sweep_top])) * len(dev_items)  # α = 1 for all; F* also α 0.5, 2, ablation
    amp = res.summary[(res.summary.kind == "amplify")].set_index(["feature", "alpha"]).effect
    assert amp[(PLANTED, 1.0)] > 0
    assert amp[(PLANTED, 2.0)] > amp[(PLANTED, 0.5)]  # dose–response
    assert PLANTED in res.kept
    assert amp[(PLANTED, 1.0)] > res.null.effect.max() and len(res.null) >= 20  # it beats every null element
    stability = fstar_stability(store, "eff").set_index("feature").stability
    assert stability[PLANTED] >= 0.9 and stability.min() < 0.9
    # the attribution screen agrees in sign for the planted feature
    attr = res.attribution.set_index("feature")
    assert attr.loc[PLANTED, "est_amplify"] > 0

    pool = pool_frame(store, "planted", PoolSpec("mixed"), run_id="x")
    scores = load_resonance_matrix(store, "x", pool, res.kept).score(res.kept, ResonanceConfig())
    chosen = select_from_ranking(scores.rename(columns={"frs": "score"}), SelectionConfig(ratio=0.4))
    assert len(chosen) == 40
    share = (chosen.task == "planted").mean()
    assert share >= 0.9


def test_fstar_and_null_match_the_golden_fixture(planted):
    """F*, the null threshold and the α = 1 effects of a fixed run are pinned in ``tests/golden/fstar.json``,
    so any change in what the run computes (edit, null draws, buckets, filter) fails here.

    The run is exact fp32 (no bf16 autocast, which depends on the CPU). Regenerate only on purpose, after a
    change meant to alter the numbers: ``IGDS_UPDATE_GOLDEN=1 pytest tests/integration/test_planted.py -k golden``,
    and say why in the commit.
    """
    model, tok, sae, store, examples, items, by = planted
    rec = recall_features(store, "x", "planted", [e.id for e in by("planted", "probe")],
                          [e.id for e in by("general", "train")], RecallConfig(min_freq=0.5, k_recall=5))
    d_sae = int(sae.cfg.d_sae)
    cfg = InterventionConfig(precision="fp32", positions="prompt_content", null_directions=16, null_features=8,
                             null_placed=2, null_seed=3, min_fired=2, looks=(), require_significance=False, delta=0.0)
    store.start_run("golden", "intervene", cfg.to_dict())
    res = measure_here(store, "golden", model, sae, SITE, [items[e.id] for e in by("planted", "dev")],
                       candidates_of(rec, d_sae), cfg, tok.pad_token_id)
    null = res.null
    got = {"config": cfg.to_dict(), "candidates": rec.candidates, "kept": res.kept, "null_cut": res.null_cut,
           "null_edit_size": float(null[null.kind == "direction"].edit_norm.iloc[0]),
           "null_features": [int(f) for f in null[null.kind == "feature"].feature],
           "effects": {str(int(r.feature)): float(r.effect) for r in res.amplification.itertuples()}}
    if os.environ.get("IGDS_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert {k: got["config"][k] for k in want["config"]} == want["config"]
    assert (got["candidates"], got["kept"], got["null_features"]) == \
        (want["candidates"], want["kept"], want["null_features"])
    assert PLANTED in got["kept"]
    assert got["null_cut"] == pytest.approx(want["null_cut"], abs=1e-6)
    assert got["null_edit_size"] == pytest.approx(want["null_edit_size"], rel=1e-6)
    assert set(got["effects"]) == set(want["effects"])
    for f, e in want["effects"].items():  # NaN: an untestable candidate, never replayed
        assert got["effects"][f] == pytest.approx(e, abs=1e-6, nan_ok=True), f"feature {f}"
