import pyarrow.parquet as pq
import pytest
import torch

from igds.executor.extract import extract_here
from igds.method.extract import ExtractConfig, aggregate
from igds.modeling.batching import keep_mask, length_batches
from igds.modeling.hooks import run_until
from igds.store import ActivationStore
from tests.helpers import make_items, tiny_setup

SITE = "blocks.1.hook_resid_post"


def brute_force(model, sae, items, cfg):
    """Per example, alone (no padding): every kept position, every feature, plain Python loops."""
    out, ntok = {}, {}
    for it in items:
        ids = torch.tensor([it.input_ids])
        with torch.no_grad():
            h = run_until(model, SITE, ids)[0]
            norms = h.norm(dim=-1)
            keep = [t for t in range(1, len(it.input_ids))]
            med = norms[keep].median()
            keep = [t for t in keep if norms[t] <= cfg.sink_norm_factor * med]
            # the helper items' spans: BOS template, [1, prompt_len) content, the rest response
            plen = it.prompt_len
            scope = {"all": range(len(it.input_ids)), "content": range(1, len(it.input_ids)),
                     "response": range(plen, len(it.input_ids)), "prompt_content": range(1, plen),
                     "last_prompt_token": range(plen - 1, plen)}[cfg.positions]
            keep = [t for t in keep if t in scope]
            ntok[it.example_id] = len(keep)
            for t in keep:
                z = sae.encode(h[t : t + 1])[0]
                for f in (z > 0).nonzero().flatten().tolist():
                    mx, sm, n = out.get((it.example_id, f), (0.0, 0.0, 0))
                    out[(it.example_id, f)] = (max(mx, float(z[f])), sm + float(z[f]), n + 1)
    return out, ntok


def stored_rows(store, run_id):
    df = store.query_df("SELECT example_id, feature, max_act, sum_act, n_active FROM feature_acts WHERE run_id = ? "
                        "ORDER BY example_id, feature", [run_id])
    return {(r.example_id, r.feature): (r.max_act, r.sum_act, r.n_active) for r in df.itertuples()}


@pytest.mark.parametrize("positions", ["all", "content", "prompt_content", "response", "last_prompt_token"])
def test_stored_aggregates_equal_brute_force(tmp_path, positions):
    model, tok, sae = tiny_setup()
    # one example alone per batch so the per-batch sink median equals the per-example one
    cfg = ExtractConfig(positions=positions, batch_tokens=64, max_length=64, shard_size=3)
    items = make_items(tok)
    store = ActivationStore(tmp_path / "s.duckdb")
    store.start_run("r", "extract", cfg.to_dict())
    res = extract_here(store, "r", model, sae, SITE, items, cfg, tok.pad_token_id)
    assert res.n_examples == len(items) and res.n_new == len(items)
    expected, ntok = brute_force(model, sae, items, cfg)
    got = stored_rows(store, "r")
    assert set(got) == set(expected)
    for key, (mx, sm, n) in expected.items():
        gmx, gsm, gn = got[key]
        assert gn == n
        assert gmx == pytest.approx(mx, rel=1e-4, abs=1e-5)
        assert gsm == pytest.approx(sm, rel=1e-4, abs=1e-4)
    stats = store.query_df("SELECT example_id, n_tokens FROM example_stats WHERE run_id = 'r'")
    assert dict(zip(stats.example_id, stats.n_tokens, strict=True)) == ntok


def test_padding_does_not_change_aggregates(tmp_path):
    model, tok, sae = tiny_setup()
    items = make_items(tok, repeat=2)
    rows = {}
    # sink factor so high that no position counts as a sink: batching is then the only difference
    for name, bt in [("single", 64), ("batched", 4096)]:
        cfg = ExtractConfig(batch_tokens=bt, max_length=64, shard_size=100, sink_norm_factor=1e6)
        store = ActivationStore(tmp_path / f"{name}.duckdb")
        store.start_run("r", "extract", cfg.to_dict())
        extract_here(store, "r", model, sae, SITE, items, cfg, tok.pad_token_id)
        rows[name] = stored_rows(store, "r")
    assert rows["single"].keys() == rows["batched"].keys()
    for k, v in rows["single"].items():
        assert rows["batched"][k] == pytest.approx(v, rel=1e-4, abs=1e-4)


def test_resume_after_interruption_gives_same_rows(tmp_path):
    model, tok, sae = tiny_setup()
    items = make_items(tok, repeat=3)  # 24 examples → 6 shards of 4
    cfg = ExtractConfig(shard_size=4, max_length=64, batch_tokens=256)
    full = ActivationStore(tmp_path / "full.duckdb")
    full.start_run("r", "extract", cfg.to_dict())
    extract_here(full, "r", model, sae, SITE, items, cfg, tok.pad_token_id)

    part = ActivationStore(tmp_path / "part.duckdb")
    part.start_run("r", "extract", cfg.to_dict())
    first = extract_here(part, "r", model, sae, SITE, items, cfg, tok.pad_token_id, max_shards=2)
    assert first.n_new == 8 and part.run("r")["status"] == "partial"
    # simulate a kill after a shard file was written but before it was ingested
    second = extract_here(part, "r", model, sae, SITE, items, cfg, tok.pad_token_id)
    assert second.n_new == 16 and part.run("r")["status"] == "done"
    # same shards in the same order → bitwise-identical rows
    assert stored_rows(part, "r") == stored_rows(full, "r")
    n = part.scalar("SELECT count(*) FROM feature_acts WHERE run_id = 'r'")
    distinct = part.scalar("SELECT count(*) FROM (SELECT DISTINCT example_id, feature FROM feature_acts)")
    assert n == distinct == full.scalar("SELECT count(*) FROM feature_acts")
    # a third run is a no-op: recognised as done
    third = extract_here(part, "r", model, sae, SITE, items, cfg, tok.pad_token_id)
    assert third.n_new == 0 and third.n_shards == 0


def test_shard_file_written_but_not_ingested_is_ingested_not_recomputed(tmp_path, monkeypatch):
    model, tok, sae = tiny_setup()
    items = make_items(tok)
    cfg = ExtractConfig(shard_size=100, max_length=64)
    store = ActivationStore(tmp_path / "s.duckdb")
    store.start_run("r", "extract", cfg.to_dict())
    real_ingest = store.ingest_shard
    monkeypatch.setattr(store, "ingest_shard", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        extract_here(store, "r", model, sae, SITE, items, cfg, tok.pad_token_id)
    assert store.scalar("SELECT count(*) FROM feature_acts") == 0
    files = list((tmp_path / "runs" / "r" / "shards").glob("acts-*.parquet"))
    assert len(files) == 1 and pq.read_table(files[0]).num_rows > 0
    monkeypatch.setattr(store, "ingest_shard", real_ingest)
    monkeypatch.setattr("igds.method.extract.shard_batches", lambda *a, **k: pytest.fail("recomputed"))
    res = extract_here(store, "r", model, sae, SITE, items, cfg, tok.pad_token_id)
    assert res.n_new == len(items)
    assert store.scalar("SELECT count(*) FROM feature_acts") == pq.read_table(files[0]).num_rows


def test_ingest_is_idempotent(tmp_path):
    import pyarrow as pa

    store = ActivationStore(tmp_path / "s.duckdb")
    acts = pa.table({"example_id": ["a", "a"], "feature": pa.array([1, 2], pa.int32()),
                     "max_act": pa.array([1.0, 2.0], pa.float32()), "sum_act": pa.array([1.0, 3.0], pa.float32()),
                     "n_active": pa.array([1, 2], pa.int32())})
    stats = pa.table({"example_id": ["a"], "n_tokens": pa.array([5], pa.int32()),
                      "n_positions": pa.array([6], pa.int32()), "n_sinks": pa.array([0], pa.int32())})
    assert store.ingest_shard("r", "k", acts, stats) is True
    assert store.ingest_shard("r", "k", acts, stats) is False
    assert store.scalar("SELECT count(*) FROM feature_acts") == 2
    fs = store.feature_stats("r")
    assert fs.set_index("feature").loc[2, "mean_act_firing"] == pytest.approx(1.5)


def test_keep_mask_drops_first_position_padding_and_sinks():
    h = torch.ones(2, 5, 4)
    h[0, 3] *= 100.0  # a mid-sequence sink
    attn = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    keep = keep_mask(h, attn, 10.0)
    assert keep.tolist() == [[False, True, True, False, True], [False, True, True, False, False]]


def test_aggregate_matches_dense_reference():
    z = torch.relu(torch.randn(50, 20))
    rows = torch.randint(0, 4, (50,))
    agg = aggregate(z, rows, 4)
    for r, f, mx, sm, n in zip(*(agg[k].tolist() for k in ("row", "feature", "max", "sum", "count")), strict=True):
        col = z[rows == r, f]
        assert n == int((col > 0).sum()) and sm == pytest.approx(float(col.sum()), rel=1e-5)
        assert mx == pytest.approx(float(col.max()))


def test_length_batches_respect_budget_and_cover_all():
    _, tok, _ = tiny_setup()
    items = make_items(tok, repeat=4)
    batches = length_batches(items, 200)
    assert sorted(i.example_id for b in batches for i in b) == sorted(i.example_id for i in items)
    for b in batches:
        assert len(b) == 1 or max(len(i.input_ids) for i in b) * len(b) <= 200


def test_config_validation_and_roundtrip():
    with pytest.raises(ValueError, match="positions"):
        ExtractConfig(positions="middle")
    assert ExtractConfig().positions == "content"
    cfg = ExtractConfig(positions="response", shard_size=7)
    assert ExtractConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.stage_key("m", "s") != cfg.stage_key("m", "s2")
    with pytest.raises(ValueError, match="unknown"):
        ExtractConfig.from_dict({"bogus": 1})
