"""Token scope through extraction, recall and the FRS, on the tiny model with planted features.

The SAE reads the embeddings (``blocks.0.hook_resid_pre``), so a feature can be planted to fire on one
token id with an exact activation: three embedding dimensions are cleared for every token and set only
on the planted tokens, and each planted feature's encoder reads one of them (no bias, nothing else).

- ``INSTR`` fires on ``:`` — only in the summarization instruction (content never has one);
- ``TEMPL`` fires on ``<|im_start|>`` — only in the chat template;
- ``CONTENT`` fires on ``q`` (activation 4) and ``x`` (activation 8) — only in the examples' content.

Extracted with ``positions='content'`` the first two never count, so they are not recalled and add
nothing to any example's FRS; extracted with ``positions='all'`` (the check that the test can fail)
they are recalled / add ``c / n`` under ``mean``, a pure length effect.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from igds.data.corpus import Example, example_id
from igds.executor.extract import extract_here
from igds.method.config import ExtractConfig
from igds.method.pool import pool_frame
from igds.method.recall import RecallConfig, recall_features
from igds.method.resonance import ResonanceConfig, length_confound, load_resonance_matrix
from igds.method.selection import SelectionConfig, select_from_ranking
from igds.modeling.encoding import encode_examples
from igds.scope import PoolSpec
from igds.store import ActivationStore
from tests.helpers import tiny_setup

SITE = "blocks.0.hook_resid_pre"  # the embeddings: a token's residual depends on its id only
TASK = "summarization"
INSTR, TEMPL, CONTENT = 3, 5, 9
GAIN = 64.0  # encoder weight on a planted dimension; dimension value 1/16 -> activation 4
PLANTS = {":": (0, 1 / 16), "<|im_start|>": (1, 1 / 16), "q": (2, 1 / 16), "x": (2, 2 / 16)}
ACT = {"q": 4.0, "x": 8.0}  # CONTENT's activation per token
C_INSTR = 4.0  # INSTR's activation on the instruction's one ':'
FILLER = "abcdefghijklmnop rstuvw"  # no q, x, ':' or newline
RESPONSE = "ok"
# recall membership does not depend on the ranking key when k_recall exceeds the eligible features
RECALL = RecallConfig(min_freq=0.5, k_recall=128, dense_ref=0.5)


def filler(n: int, seed: int) -> str:
    rng = np.random.default_rng(seed)
    return "".join(rng.choice(list(FILLER), size=n))


def planted_content(length: int, k: int, token: str, seed: int) -> str:
    """``length`` characters with ``k`` copies of ``token`` spread through filler."""
    chars = list(filler(length - k, seed))
    for i in range(k):
        chars.insert((i + 1) * len(chars) // (k + 1), token)
    return "".join(chars)


def make_examples() -> tuple[list[Example], dict[str, tuple[int, float, int]]]:
    """Pool (train), probe and reference examples; for each pool example (k, a, content tokens)."""
    out, truth = [], {}

    def add(task, split, content):
        ex = Example(id=example_id(content, RESPONSE), task=task, source=task, split=split, prompt=content,
                     response=RESPONSE)
        out.append(ex)
        return ex

    seed = 0
    for length in (12, 30, 75):
        for k in (1, 2, 3):
            for token in ("q", "x"):
                seed += 1
                ex = add(TASK, "train", planted_content(length, k, token, seed))
                truth[ex.id] = (k, ACT[token], length + len(RESPONSE) + 1)  # content + response + eos
    for i in range(12):
        add(TASK, "probe", planted_content(20 + i, 1 + i % 3, "qx"[i % 2], 100 + i))
        add("general", "train", filler(20 + i, 200 + i))
    return out, truth


def plant(model, sae) -> None:
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb[:, :3] = 0
        sae.W_enc[:3, :] = 0
        for token, (dim, value) in PLANTS.items():
            emb[TOKEN_IDS[token], dim] = value
        for feature, dim in ((INSTR, 0), (TEMPL, 1), (CONTENT, 2)):
            sae.W_enc[:, feature] = 0
            sae.W_enc[dim, feature] = GAIN
            sae.b_enc[feature] = 0


TOKEN_IDS: dict[str, int] = {}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    model, tok, sae = tiny_setup()
    TOKEN_IDS.update({t: tok.convert_tokens_to_ids(t) for t in PLANTS})
    plant(model, sae)
    examples, truth = make_examples()
    items = encode_examples(tok, examples, 256)
    store = ActivationStore(tmp_path_factory.mktemp("scope") / "s.duckdb")
    store.add_examples(examples, dataset="scope")
    for scope in ("content", "all"):
        cfg = ExtractConfig(positions=scope, max_length=256)
        store.start_run(scope, "extract", cfg.to_dict())
        extract_here(store, scope, model, sae, SITE, items, cfg, tok.pad_token_id)
    probe = [e.id for e in examples if e.split == "probe"]
    ref = [e.id for e in examples if e.task == "general"]
    lengths = {it.example_id: len(it.input_ids) for it in items}
    return store, truth, probe, ref, lengths


def matrix(store, scope):
    pool = pool_frame(store, TASK, PoolSpec("task-only"), scope)
    return load_resonance_matrix(store, scope, pool, [INSTR, TEMPL, CONTENT])


def by_id(scored):
    return scored.set_index("example_id")


def test_extraction_counts_only_content_tokens(planted):
    store, truth, probe, ref, lengths = planted
    m_content, m_all = matrix(store, "content"), matrix(store, "all")
    n_content = m_content.pool.set_index("example_id").n_tokens
    n_all = m_all.pool.set_index("example_id").n_tokens
    for eid, (_, _, n) in truth.items():
        assert n_content[eid] == n  # the example's own content, its response and the eos token
        assert n_all[eid] == lengths[eid] - 1  # every real token but position 0
    assert store.scalar("SELECT sum(n_sinks) FROM example_stats") == 0


def test_template_and_instruction_features_are_not_recalled_under_content(planted):
    store, truth, probe, ref, lengths = planted
    content = recall_features(store, "content", TASK, probe, ref, RECALL)
    assert CONTENT in content.candidates
    assert INSTR not in content.candidates and TEMPL not in content.candidates
    assert not content.table.feature.isin([INSTR, TEMPL]).any()  # they never fire on content
    # extracted over every token, the instruction feature is a perfect task feature: the test can fail
    everything = recall_features(store, "all", TASK, probe, ref, RECALL)
    row = everything.table.set_index("feature").loc[INSTR]
    assert INSTR in everything.candidates and row.freq_task == 1.0 and row.freq_ref == 0.0
    assert everything.table.set_index("feature").loc[TEMPL].freq_ref == 1.0  # general records have the template


@pytest.mark.parametrize("aggregation", ["mean", "sum", "max"])
def test_template_features_add_nothing_under_content_and_c_over_n_under_all(planted, aggregation):
    store, truth, probe, ref, lengths = planted
    cfg = ResonanceConfig(aggregation=aggregation, scale="none")
    content = by_id(matrix(store, "content").score([INSTR, TEMPL], cfg))
    assert (content.frs == 0).all()  # equal (zero) at every length
    with_content = by_id(matrix(store, "content").score([INSTR, TEMPL, CONTENT], cfg)).frs
    alone = by_id(matrix(store, "content").score([CONTENT], cfg)).frs
    assert (with_content == alone.reindex(with_content.index)).all()
    if aggregation != "mean":
        return
    everything = by_id(matrix(store, "all").score([INSTR], cfg))
    want = pd.Series({eid: C_INSTR / n for eid, n in everything.n_tokens.items()}, dtype=float)
    assert np.allclose(everything.frs, want.reindex(everything.index), rtol=1e-6)
    assert everything.frs.nunique() > 1  # a pure length effect: shorter examples score higher
    assert length_confound(everything.reset_index()).spearman == pytest.approx(-1.0)
    assert np.isnan(length_confound(content.reset_index()).spearman)


def expected_order(m, value: dict[str, float]) -> list[str]:
    """Pool ids by value desc, ties in pool order."""
    pos = {e: i for i, e in enumerate(m.pool.example_id)}
    return sorted(value, key=lambda e: (-value[e], pos[e]))


def test_content_feature_ranks_by_k_a_under_sum_and_k_a_over_n_under_mean(planted):
    store, truth, probe, ref, lengths = planted
    m = matrix(store, "content")
    want = {"sum": {e: k * a for e, (k, a, n) in truth.items()},
            "mean": {e: k * a / n for e, (k, a, n) in truth.items()}}
    orders = {}
    for agg, value in want.items():
        scored = m.score([INSTR, TEMPL, CONTENT], ResonanceConfig(aggregation=agg, scale="none"))
        got = by_id(scored).frs
        for eid, v in value.items():
            assert got[eid] == pytest.approx(v, rel=1e-6)
        assert list(scored.example_id) == expected_order(m, value)
        orders[agg] = list(scored.example_id)
    assert orders["sum"] != orders["mean"]  # the two aggregations disagree on this pool
    maxed = by_id(m.score([CONTENT], ResonanceConfig(aggregation="max", scale="none"))).frs
    assert all(maxed[e] == pytest.approx(a) for e, (k, a, n) in truth.items())
    # every length has the same (k, token) mix here: sum is free of length, mean divides by it
    summed = length_confound(m.score([CONTENT], ResonanceConfig(aggregation="sum", scale="none")))
    meaned = length_confound(m.score([CONTENT], ResonanceConfig(aggregation="mean", scale="none")))
    assert summed.spearman == pytest.approx(0.0, abs=1e-9) and meaned.spearman < -0.5


@pytest.mark.parametrize("aggregation", ["sum", "mean"])
def test_zscore_is_the_brute_force_z_sum_and_hard_reverses_resonant(planted, aggregation):
    store, truth, probe, ref, lengths = planted
    m = matrix(store, "content")
    ids = list(m.pool.example_id)
    raw = np.array([k * a / (n if aggregation == "mean" else 1) for k, a, n in (truth[e] for e in ids)])
    brute = (raw - raw.mean()) / raw.std()  # INSTR and TEMPL never fire: constant 0, no contribution
    cfg = ResonanceConfig(aggregation=aggregation, scale="zscore")
    resonant = m.score([INSTR, TEMPL, CONTENT], cfg)
    got = by_id(resonant).frs
    assert np.allclose([got[e] for e in ids], brute, rtol=1e-6, atol=1e-9)
    hard_cfg = ResonanceConfig(aggregation=aggregation, scale="zscore", direction="hard")
    hard = m.score([INSTR, TEMPL, CONTENT], hard_cfg)
    assert np.allclose(by_id(hard).frs.reindex(ids), got.reindex(ids), rtol=0, atol=0)
    assert list(hard.example_id) == expected_order(m, {e: -got[e] for e in ids})
    unique = resonant.frs.map(resonant.frs.value_counts()) == 1
    assert list(hard.example_id[hard.example_id.isin(resonant.example_id[unique])]) == \
        list(resonant.example_id[unique][::-1])
    chosen = select_from_ranking(hard.rename(columns={"frs": "score"}), SelectionConfig(ratio=0.25),
                                 higher_first=False)
    assert set(chosen.example_id) == set(hard.example_id.head(len(chosen)))
    assert chosen.score.max() <= resonant.frs.median()
    for eid in chosen.example_id:
        ex = m.explain(eid, [INSTR, TEMPL, CONTENT], hard_cfg)
        assert ex.term.sum() == pytest.approx(got[eid], rel=1e-12, abs=1e-12)
        assert (ex.set_index("feature").term.loc[[INSTR, TEMPL]] == 0).all()
