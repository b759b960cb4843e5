import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from igds.data.corpus import Example
from igds.method.pool import pool_frame
from igds.method.resonance import (
    PAPER_RESONANCE,
    ResonanceConfig,
    length_confound,
    load_resonance_matrix,
    spearman,
)
from igds.method.selection import (
    SelectionConfig,
    load_overrides,
    load_selection,
    save_selection,
    select_from_ranking,
    set_example_override,
    set_feature_override,
)
from igds.ranking import rank_key
from igds.scope import PoolSpec
from igds.store import ActivationStore


def make_store(path, acts: np.ndarray, n_tokens: np.ndarray, task_of=None):
    """A store whose pool has ``acts.shape[0]`` examples; acts[i, j] = sum_act of feature j (0 = not fired)."""
    store = ActivationStore(path)
    n, f = acts.shape
    ids = [f"ex{i:04d}" for i in range(n)]
    tasks = task_of or ["t" if i % 2 == 0 else "general" for i in range(n)]
    store.add_examples([Example(id=ids[i], task=tasks[i], source=tasks[i], split="train", prompt=f"p{i}",
                                response="r", meta={}) for i in range(n)], dataset="test")
    rows = [(ids[i], j, float(acts[i, j]) / 2, float(acts[i, j]), 1) for i in range(n) for j in range(f) if acts[i, j]]
    a = pa.table({"example_id": [r[0] for r in rows], "feature": pa.array([r[1] for r in rows], pa.int32()),
                  "max_act": pa.array([r[2] for r in rows], pa.float32()),
                  "sum_act": pa.array([r[3] for r in rows], pa.float32()),
                  "n_active": pa.array([r[4] for r in rows], pa.int32())})
    s = pa.table({"example_id": ids, "n_tokens": pa.array(n_tokens, pa.int32()),
                  "n_positions": pa.array(n_tokens + 1, pa.int32()), "n_sinks": pa.array([0] * n, pa.int32())})
    store.ingest_shard("run", "k", a, s)
    return store, ids


def matrix_of(store, pool="mixed", feats=(0, 1, 2, 3), limit=0):
    return load_resonance_matrix(store, "run", pool_frame(store, "t", PoolSpec(pool, limit), "run"), feats)


def score(store, pool, feats, cfg, effects=None):
    return matrix_of(store, pool).score(feats, cfg, effects)


def brute_frs(acts, n_tokens, feats, cfg, pool_mask, weights=None):
    a = acts[:, feats].astype(float)
    if cfg.aggregation == "mean":
        a = a / n_tokens[:, None]
    elif cfg.aggregation == "max":
        a = a / 2
    scale, center = np.ones(len(feats)), np.zeros(len(feats))
    if cfg.scale == "p99":
        for k in range(len(feats)):
            fired = a[pool_mask & (acts[:, feats[k]] > 0), k]
            scale[k] = np.percentile(fired, 99) if len(fired) and np.percentile(fired, 99) > 0 else 1.0
    elif cfg.scale == "zscore":  # over every pool example, "did not fire" = 0, population std
        for k in range(len(feats)):
            col = a[pool_mask, k]
            if col.max() > col.min():
                center[k], scale[k] = col.mean(), col.std()
            else:  # constant over the pool: contributes nothing
                center[k] = col[0]
    w = np.ones(len(feats)) if weights is None else np.asarray(weights, dtype=float)
    return (w * (a - center) / scale).sum(1)


acts_st = st.integers(6, 14).flatmap(lambda n: st.tuples(
    st.lists(st.lists(st.integers(0, 9), min_size=4, max_size=4), min_size=n, max_size=n),
    st.lists(st.integers(1, 30), min_size=n, max_size=n)))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=acts_st, agg=st.sampled_from(["mean", "sum", "max"]), scale=st.sampled_from(["p99", "zscore", "none"]),
       direction=st.sampled_from(["resonant", "hard"]))
def test_frs_equals_brute_force_and_explanations_sum_to_it(tmp_path_factory, data, agg, scale, direction):
    acts, n_tok = np.array(data[0], dtype=float), np.array(data[1])
    store, ids = make_store(tmp_path_factory.mktemp("r") / "s.duckdb", acts, n_tok)
    cfg = ResonanceConfig(aggregation=agg, scale=scale, direction=direction)
    feats = [0, 2, 3]
    matrix = matrix_of(store)
    ranked = matrix.score(feats, cfg)
    got = ranked.set_index("example_id").frs
    want = brute_frs(acts, n_tok, feats, cfg, np.ones(len(ids), bool))
    for i, eid in enumerate(ids):
        assert got[eid] == pytest.approx(want[i], rel=1e-4, abs=1e-6)
    # the direction orders the ranking and leaves the score alone
    steps = np.diff(rank_key(ranked.frs))  # at the ranking resolution
    assert (steps <= 0).all() if direction == "resonant" else (steps >= 0).all()
    for eid in ids[:3]:
        ex = matrix.explain(eid, feats, cfg)
        assert ex.term.sum() == pytest.approx(got[eid], rel=1e-9, abs=1e-12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=acts_st, agg=st.sampled_from(["mean", "sum", "max"]), weights=st.sampled_from(["uniform", "effect"]),
       limit=st.integers(1, 4), feats=st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True),
       scale=st.sampled_from(["p99", "zscore"]))
def test_scales_come_from_the_pool_being_selected_from(tmp_path_factory, data, agg, weights, limit, feats, scale):
    acts, n_tok = np.array(data[0], dtype=float), np.array(data[1])
    store, ids = make_store(tmp_path_factory.mktemp("m") / "s.duckdb", acts, n_tok)
    cfg = ResonanceConfig(aggregation=agg, scale=scale, weights=weights)
    effects = {0: 0.3, 1: 0.1, 2: 0.05, 3: 0.2}
    matrix = matrix_of(store, limit=limit)
    assert matrix.covers(feats) and not matrix.covers([7])
    kept = set(matrix.pool.example_id)
    assert len(kept) == min(limit, (len(ids) + 1) // 2) + min(limit, len(ids) // 2)  # limit per task
    in_pool = np.array([i in kept for i in ids])
    got = matrix.score(feats, cfg, effects)
    # the p99 scale (the z-score's mean and std) of each feature is taken over the limited pool only
    w = [effects[f] if weights == "effect" else 1.0 for f in feats]
    by_id = dict(zip(ids, brute_frs(acts, n_tok, feats, cfg, in_pool, w), strict=True))
    assert np.allclose(got.frs, [by_id[i] for i in got.example_id], rtol=1e-6, atol=1e-12)
    # ranked at the ranking resolution (7 significant digits; near-ties by the pool's canonical key)
    assert (np.diff(rank_key(got.frs)) <= 0).all() and set(got.example_id) == kept


def test_permutation_invariance_and_monotonicity(tmp_path):
    rng = np.random.default_rng(0)
    acts = rng.integers(0, 5, size=(12, 3)).astype(float)
    n_tok = rng.integers(5, 20, size=12)
    cfg = ResonanceConfig(scale="none")
    s1, ids = make_store(tmp_path / "a.duckdb", acts, n_tok)
    base = score(s1, "mixed", [0, 1], cfg).set_index("example_id").frs
    perm = rng.permutation(12)
    s2, ids2 = make_store(tmp_path / "b.duckdb", acts[perm], n_tok[perm],
                          task_of=[("t" if p % 2 == 0 else "general") for p in perm])
    permuted = score(s2, "mixed", [0, 1], cfg).set_index("example_id").frs
    for new_i, old_i in enumerate(perm):
        assert permuted[ids2[new_i]] == pytest.approx(base[ids[old_i]])
    bumped = acts.copy()
    bumped[3, 0] += 5
    s3, _ = make_store(tmp_path / "c.duckdb", bumped, n_tok)
    up = score(s3, "mixed", [0, 1], cfg).set_index("example_id").frs
    assert up[ids[3]] > base[ids[3]] and (up.drop(ids[3]) == base.drop(ids[3])).all()


def test_task_only_pool_excludes_general(tmp_path):
    acts = np.ones((10, 2))
    store, ids = make_store(tmp_path / "s.duckdb", acts, np.full(10, 5))
    mixed = score(store, "mixed", [0], ResonanceConfig())
    only = score(store, "task-only", [0], ResonanceConfig())
    assert len(mixed) == 10 and len(only) == 5 and set(only.task) == {"t"}


def test_overrides_persist_and_selection_roundtrip(tmp_path):
    acts = np.arange(20, dtype=float).reshape(10, 2)
    store, ids = make_store(tmp_path / "s.duckdb", acts, np.full(10, 5))
    set_example_override(store, "t", [ids[0]], "pin")
    set_example_override(store, "t", [ids[9], ids[8]], "reject")
    set_feature_override(store, "t", "sae", 1, "veto")
    ov = load_overrides(store, "t", "sae")
    assert ov.pinned_examples == {ids[0]} and ov.rejected_examples == {ids[8], ids[9]}
    feats = ov.apply_to_features([0, 1])
    assert feats == [0]
    ranked = score(store, "mixed", feats, ResonanceConfig()).rename(columns={"frs": "score"})
    chosen = select_from_ranking(ranked, SelectionConfig(ratio=0.3), ov, n_pool=10)
    assert list(chosen.example_id) == [ids[0], ids[7], ids[6]]
    sid = save_selection(store, "s", "t", "igds", "mixed", 10, chosen, {"features": feats})
    assert save_selection(store, "s", "t", "igds", "mixed", 10, chosen, {"features": feats}) == sid
    info, members = load_selection(store, sid)
    assert info["n_selected"] == 3 and list(members.id) == list(chosen.example_id)
    set_example_override(store, "t", [ids[0]], None)
    assert load_overrides(store, "t").pinned_examples == frozenset()


def test_config_options_and_the_paper_literal():
    assert PAPER_RESONANCE.to_dict() == {"aggregation": "sum", "scale": "none", "weights": "uniform",
                                         "direction": "resonant"}
    assert ResonanceConfig().direction == "resonant" and ResonanceConfig().higher_first
    assert not ResonanceConfig(direction="hard").higher_first
    assert ResonanceConfig.from_dict({"aggregation": "mean"}) == ResonanceConfig()  # old lineages still load
    for bad in ({"scale": "p95"}, {"direction": "easy"}, {"aggregation": "median"}, {"weights": "abs"}):
        with pytest.raises(ValueError):
            ResonanceConfig(**bad)


def test_hard_reverses_resonant_and_keeps_scores_pins_and_rejects(tmp_path):
    rng = np.random.default_rng(3)
    acts = rng.integers(0, 6, size=(16, 3)).astype(float)
    acts[5] = acts[6]  # a tie
    store, ids = make_store(tmp_path / "s.duckdb", acts, rng.integers(3, 30, size=16))
    matrix = matrix_of(store)
    for scale in ("p99", "zscore", "none"):
        top = matrix.score([0, 1, 2], ResonanceConfig(scale=scale))
        bottom = matrix.score([0, 1, 2], ResonanceConfig(scale=scale, direction="hard"))
        assert top.set_index("example_id").frs.sort_index().equals(bottom.set_index("example_id").frs.sort_index())
        # reversed apart from the order inside ties (pool order in both directions)
        assert list(bottom.frs) == list(top.frs[::-1])
        distinct = top.groupby("frs").example_id.transform("size") == 1
        assert list(bottom.example_id[bottom.frs.isin(top.frs[distinct])]) == \
            list(top.example_id[distinct][::-1])
    cfg = ResonanceConfig(scale="none", aggregation="sum", direction="hard")
    ranked = matrix.score([0, 1, 2], cfg).rename(columns={"frs": "score"})
    set_example_override(store, "t", [ranked.example_id.iloc[-1]], "pin")  # the most resonant example
    set_example_override(store, "t", [ranked.example_id.iloc[0]], "reject")  # the least resonant one
    ov = load_overrides(store, "t")
    chosen = select_from_ranking(ranked, SelectionConfig(ratio=0.25), ov, n_pool=16, higher_first=False)
    assert list(chosen.example_id) == [ranked.example_id.iloc[-1], *ranked.example_id.iloc[1:4]]
    tau = float(ranked.score.iloc[6])
    by_tau = select_from_ranking(ranked, SelectionConfig(threshold=tau), ov, higher_first=False)
    rest = ranked[~ranked.example_id.isin(ov.pinned_examples | ov.rejected_examples)]
    assert set(by_tau.example_id) == {ranked.example_id.iloc[-1], *rest.example_id[rest.score <= tau]}
    assert (by_tau.score.iloc[1:] <= tau).all()
    for eid in chosen.example_id:
        assert matrix.explain(eid, [0, 1, 2], cfg).term.sum() == pytest.approx(
            float(ranked.set_index("example_id").score[eid]), rel=1e-12, abs=1e-12)


def test_length_confound_matches_scipy_and_sees_the_length_bias_of_sum(tmp_path):
    from scipy.stats import spearmanr

    rng = np.random.default_rng(1)
    n_tok = rng.integers(2, 60, size=30)
    acts = np.stack([n_tok * rng.integers(1, 3, size=30), rng.integers(0, 4, size=30)], axis=1).astype(float)
    store, ids = make_store(tmp_path / "s.duckdb", acts, n_tok)
    matrix = matrix_of(store, feats=(0, 1))
    summed = matrix.score([0, 1], ResonanceConfig(aggregation="sum", scale="none"))
    chosen = select_from_ranking(summed.rename(columns={"frs": "score"}), SelectionConfig(ratio=0.3))
    conf = length_confound(summed, chosen.example_id)
    assert conf.spearman == pytest.approx(spearmanr(summed.frs, summed.n_tokens).statistic, abs=1e-12)
    sel = summed[summed.example_id.isin(chosen.example_id)]
    assert conf.spearman_selected == pytest.approx(spearmanr(sel.frs, sel.n_tokens).statistic, abs=1e-12)
    assert (conf.n_pool, conf.n_selected) == (30, 9)
    assert conf.mean_tokens_pool == pytest.approx(n_tok.mean())
    assert conf.mean_tokens_selected == pytest.approx(sel.n_tokens.mean())
    assert conf.spearman > 0.5 and conf.length_ratio > 1.3  # sum ranks by length here
    hard = length_confound(summed, select_from_ranking(
        summed.iloc[::-1].rename(columns={"frs": "score"}), SelectionConfig(ratio=0.3)).example_id)
    assert hard.spearman == conf.spearman and hard.length_ratio < 0.8
    assert np.isnan(length_confound(summed).mean_tokens_selected)
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3])) and np.isnan(spearman([1], [2]))
