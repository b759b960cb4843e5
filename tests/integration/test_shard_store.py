"""The activation store as Parquet shards read in place: ``feature_acts`` / ``example_stats`` are views over the
recorded shard files; ingest is exactly-once; older stores migrate (issue 17)."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igds.store import ActivationStore, StoreError
from igds.store.shards import ShardError

ROOT = Path(__file__).parents[2]
ACTS_COLS = ["run_id", "example_id", "feature", "max_act", "sum_act", "n_active"]
STATS_COLS = ["run_id", "example_id", "n_tokens", "n_positions", "n_sinks", "shard_key"]


def make_shard(prefix: str, n_examples: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """A shard of ``n_examples`` with 0-5 fired features each (unsorted, as extraction writes them)."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}-{i:04d}" for i in range(n_examples)]
    per = rng.integers(0, 6, n_examples)
    eids = np.repeat(ids, per)
    feats = np.concatenate([rng.choice(64, k, replace=False) for k in per]) if per.sum() else np.zeros(0)
    acts = pa.table({"example_id": pa.array(list(eids), pa.string()),
                     "feature": pa.array(feats.astype("int32")),
                     "max_act": pa.array(rng.random(len(eids), dtype=np.float32)),
                     "sum_act": pa.array(rng.random(len(eids), dtype=np.float32) * 5),
                     "n_active": pa.array(rng.integers(1, 9, len(eids)).astype("int32"))})
    stats = pa.table({"example_id": pa.array(ids, pa.string()),
                      "n_tokens": pa.array(rng.integers(5, 50, n_examples).astype("int32")),
                      "n_positions": pa.array(rng.integers(50, 60, n_examples).astype("int32")),
                      "n_sinks": pa.array(np.zeros(n_examples, dtype="int32"))})
    return acts, stats


def big_shard(prefix: str, n_examples: int, seed: int) -> tuple[pa.Table, pa.Table]:
    """``n_examples`` x 100 fired features of 4,096."""
    rng = np.random.default_rng(seed)
    n = n_examples * 100
    ids = [f"{prefix}{i:05d}" for i in range(n_examples)]
    acts = pa.table({"example_id": np.repeat(ids, 100), "feature": rng.integers(0, 4096, n).astype("int32"),
                     "max_act": rng.random(n, dtype=np.float32), "sum_act": rng.random(n, dtype=np.float32),
                     "n_active": rng.integers(1, 9, n).astype("int32")})
    stats = pa.table({"example_id": ids, "n_tokens": np.full(n_examples, 9, "int32"),
                      "n_positions": np.full(n_examples, 9, "int32"), "n_sinks": np.zeros(n_examples, "int32")})
    return acts, stats


def expected(shards: list[tuple[str, str, pa.Table, pa.Table]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the views must return, in ingest order."""
    acts = pd.concat([a.to_pandas().assign(run_id=run)[ACTS_COLS] for run, _, a, _ in shards], ignore_index=True)
    stats = pd.concat([s.to_pandas().assign(run_id=run, shard_key=key)[STATS_COLS] for run, key, _, s in shards],
                      ignore_index=True)
    return acts, stats


def store_files(store) -> list[Path]:
    return sorted(Path(store.shards.root).rglob("*.parquet"))


def test_rows_read_back_through_the_views_in_ingest_order(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    odd_run = "run a/b 100%"  # percent-encoded in the folder name, decoded by the hive partitioning
    shards = [(run, f"k{i}", *make_shard(f"{run[:5]}{i}", 30, seed=i))
              for i, run in enumerate(["r1", odd_run, "r1", "r2", odd_run])]
    for run, key, acts, stats in shards:
        assert store.ingest_shard(run, key, acts, stats) is True
    want_acts, want_stats = expected(shards)
    got_acts = store.query_df("SELECT * FROM feature_acts")  # no ORDER BY: the store's order is ingest order
    got_stats = store.query_df("SELECT * FROM example_stats")
    pd.testing.assert_frame_equal(got_acts, want_acts, check_dtype=False)
    pd.testing.assert_frame_equal(got_stats, want_stats, check_dtype=False)
    assert [str(t) for t in got_acts.dtypes[2:]] == ["int32", "float32", "float32", "int32"]
    one = store.query_df("SELECT * FROM feature_acts WHERE run_id = ?", [odd_run])
    pd.testing.assert_frame_equal(one, want_acts[want_acts.run_id == odd_run].reset_index(drop=True),
                                  check_dtype=False)
    # the readers see them as before
    assert store.done_example_ids("r2") == set(shards[3][3].column("example_id").to_pylist())
    fs = store.feature_stats("r1", ["r10-0001", "r10-0002"])
    sub = want_acts[(want_acts.run_id == "r1") & want_acts.example_id.isin(["r10-0001", "r10-0002"])]
    assert fs.feature.tolist() == sorted(sub.feature.unique())
    assert fs.n_examples.sum() == len(sub)
    # the database file holds bookkeeping, the rows live in the Parquet files
    assert store.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name IN "
                        "('feature_acts', 'example_stats') AND table_type = 'BASE TABLE'") == 0
    assert len(store_files(store)) == 2 * len(shards)
    assert store.shard_files("r1").shard_key.tolist() == ["k0", "k2"]


def test_missing_shard_files_are_reported(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    for run in ("keep", "gone"):
        store.ingest_shard(run, "k", *make_shard(run, 10, seed=1))
    shutil.rmtree(Path(store.shards.root) / "run_id=gone")
    with pytest.raises(StoreError, match="missing_shard_files"):
        store.scalar("SELECT count(*) FROM example_stats WHERE run_id = ?", ["keep"])
    assert [Path(p).parent.parent.name for p in store.missing_shard_files()] == ["run_id=gone", "run_id=gone"]
    assert store.remove_run_shards("gone") == 1  # dropping the damaged run makes the store whole again
    assert store.scalar("SELECT count(*) FROM example_stats WHERE run_id = ?", ["keep"]) == 10


def test_second_ingest_and_written_but_unrecorded_files_do_not_duplicate(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    acts, stats = make_shard("a", 40, seed=3)
    # extraction wrote its files and died before ingesting them: the rerun ingests the files (hard-linked)
    work = store.run_dir("r") / "shards"
    work.mkdir(parents=True)
    pq.write_table(acts, work / "acts-k1.parquet")
    pq.write_table(stats, work / "stats-k1.parquet")
    assert store.ingest_shard("r", "k1", path=str(work / "acts-k1.parquet")) is True
    linked = store.shard_files("r").acts_uri[0]
    assert os.stat(linked).st_ino == os.stat(work / "acts-k1.parquet").st_ino  # no copy
    # a second ingest, from the tables or the files, is a no-op
    assert store.ingest_shard("r", "k1", acts, stats, str(work / "acts-k1.parquet")) is False
    assert store.ingest_shard_files("r", "k1", work / "acts-k1.parquet", work / "stats-k1.parquet") is False
    assert store.scalar("SELECT count(*) FROM feature_acts") == acts.num_rows
    assert store.scalar("SELECT count(*) FROM example_stats") == 40
    assert len(store_files(store)) == 2
    # files in another schema (int64 / float64) are rewritten in the canonical one
    wide = pa.table({c: (acts[c].cast(pa.int64()) if c in ("feature", "n_active") else
                         acts[c].cast(pa.float64()) if c.endswith("_act") else acts[c]) for c in acts.column_names})
    other = tmp_path / "other"
    other.mkdir()
    pq.write_table(wide, other / "acts-k.parquet")
    pq.write_table(make_shard("b", 5, seed=4)[1], other / "stats-k.parquet")
    assert store.ingest_shard_files("r2", "k", other / "acts-k.parquet", other / "stats-k.parquet") is True
    assert store.query_df("SELECT * FROM feature_acts WHERE run_id = 'r2'").dtypes.feature == np.int32


CRASH = textwrap.dedent("""
    import os, sys
    import pyarrow.parquet as pq
    from igds.store import ActivationStore
    store = ActivationStore(sys.argv[1])
    def die(con):  # files published, shards row inserted, transaction open: the process dies here
        os._exit(3)
    store._rebuild_views = die
    store.ingest_shard("r", "k2", pq.read_table(sys.argv[2]), pq.read_table(sys.argv[3]))
""")


def test_crash_inside_ingest_then_rerun_gives_each_row_once(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    first, second = make_shard("a", 20, seed=5), make_shard("b", 20, seed=6)
    store.ingest_shard("r", "k1", *first)
    pq.write_table(second[0], tmp_path / "a.parquet")
    pq.write_table(second[1], tmp_path / "b.parquet")
    out = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path / "s.duckdb"), str(tmp_path / "a.parquet"),
                          str(tmp_path / "b.parquet")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 3, out.stderr
    store = ActivationStore(tmp_path / "s.duckdb")
    assert len(store_files(store)) == 4  # the dead attempt's files are there, listed nowhere
    assert store.scalar("SELECT count(*) FROM shards") == 1
    assert store.scalar("SELECT count(*) FROM example_stats") == 20
    assert store.ingest_shard("r", "k2", *second) is True
    want_acts, _ = expected([("r", "k1", *first), ("r", "k2", *second)])
    pd.testing.assert_frame_equal(store.query_df("SELECT * FROM feature_acts"), want_acts, check_dtype=False)
    assert len(store_files(store)) == 4  # the winner removed the dead attempt's pair


def test_bad_shards_are_refused_and_leave_nothing(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    acts, stats = make_shard("a", 10, seed=7)
    store.ingest_shard("r", "k1", acts, stats)
    with pytest.raises(ShardError, match="already stored for the run"):
        store.ingest_shard("r", "k2", acts.slice(0, 3), stats.slice(0, 4))
    with pytest.raises(ShardError, match="lacks column"):
        store.ingest_shard("r", "k3", acts.drop_columns(["n_active"]), stats)
    with pytest.raises(ShardError, match="repeat an example id"):
        store.ingest_shard("r", "k4", acts, pa.concat_tables([stats, stats]))
    with pytest.raises(ShardError, match="shard key"):
        store.ingest_shard("r", "../k", acts, stats)
    with pytest.raises(ShardError, match="pass acts and stats"):
        store.ingest_shard("r", "k5", path=str(tmp_path / "acts-missing.parquet"))
    assert store.scalar("SELECT count(*) FROM shards") == 1 and len(store_files(store)) == 2


def test_empty_store_queries_return_empty_frames(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    assert store.query_df("SELECT * FROM feature_acts").columns.tolist() == ACTS_COLS
    assert store.query_df("SELECT * FROM example_stats").columns.tolist() == STATS_COLS
    assert store.done_example_ids("r") == set()
    fs = store.feature_stats("r", ["x"])
    assert fs.empty and fs.columns.tolist() == ["feature", "n_examples", "n_active", "sum_act", "max_act",
                                                "mean_act_firing"]
    assert store.subset_token_count("r", ["x", "y"]) == (0, 2)
    assert store.token_counts("r", ["x"]).empty
    assert list(store.iter_pool_activations("r", ["x"], [1, 2])) == []
    assert store.feature_max_acts("r", 3).empty
    assert store.summary()["feature_acts"] == 0
    assert store.remove_run_shards("r") == 0


def test_database_file_does_not_grow_with_the_activation_rows(tmp_path):
    def size(path):
        con = duckdb.connect(str(path))
        con.execute("CHECKPOINT")
        con.close()
        return path.stat().st_size

    store = ActivationStore(tmp_path / "s.duckdb")
    store.ingest_shard("r", "small", *make_shard("s", 5, seed=8))
    before = size(store.path)
    n = 500_000
    acts, stats = big_shard("e", 5000, seed=9)
    store.ingest_shard("r", "big", acts, stats)
    grown = size(store.path) - before
    assert store.scalar("SELECT count(*) FROM feature_acts WHERE run_id = 'r'") > n
    # the same rows as a table (the single-file store) take this much of a database file
    table_db = tmp_path / "table.duckdb"
    con = duckdb.connect(str(table_db))
    con.execute("CREATE TABLE feature_acts AS SELECT 'r' AS run_id, * FROM acts")
    con.close()
    as_table = size(table_db)
    parquet = sum(f.stat().st_size for f in store_files(store))
    assert parquet > as_table / 2  # the rows are in the files ...
    assert grown < as_table / 4  # ... not in the database file


def test_remove_run_shards_drops_its_rows_and_files(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    store.ingest_shard("a", "k1", *make_shard("a", 10, seed=10))
    store.ingest_shard("b", "k1", *make_shard("b", 10, seed=11))
    store.ingest_shard("a", "k2", *make_shard("c", 10, seed=12))
    assert store.remove_run_shards("a") == 2
    assert not (Path(store.shards.root) / "run_id=a").exists()
    assert store.query_df("SELECT DISTINCT run_id FROM example_stats").run_id.tolist() == ["b"]
    assert store.ingest_shard("a", "k1", *make_shard("a", 10, seed=10)) is True  # can be extracted again


def test_location_is_recorded_and_the_store_can_move(tmp_path):
    elsewhere = tmp_path / "bulk"
    store = ActivationStore(tmp_path / "ws" / "s.duckdb", shards=elsewhere)
    store.ingest_shard("r", "k", *make_shard("a", 10, seed=13))
    assert Path(store.shards.root).parent == elsewhere.resolve()
    assert ActivationStore(tmp_path / "ws" / "s.duckdb").shards == store.shards  # recorded
    with pytest.raises(StoreError, match="keeps its activation shards at"):
        ActivationStore(tmp_path / "ws" / "s.duckdb", shards=tmp_path / "other")
    with pytest.raises(StoreError, match="not supported"):
        ActivationStore(tmp_path / "new.duckdb", shards="ftp://host/x")
    # a store with the default location (next to its file) moves with its folder
    local = ActivationStore(tmp_path / "ws2" / "s.duckdb")
    local.ingest_shard("r", "k", *make_shard("b", 10, seed=14))
    want = local.query_df("SELECT * FROM feature_acts")
    shutil.move(tmp_path / "ws2", tmp_path / "moved")
    moved = ActivationStore(tmp_path / "moved" / "s.duckdb")
    assert str(tmp_path / "moved") in moved.shards.root
    pd.testing.assert_frame_equal(moved.query_df("SELECT * FROM feature_acts"), want)
    # the database file copied alone reads the original's files and writes, and deletes, only its own
    (tmp_path / "copy").mkdir()
    shutil.copy(moved.path, tmp_path / "copy" / "s.duckdb")
    copy = ActivationStore(tmp_path / "copy" / "s.duckdb")
    assert Path(copy.shards.root).name != Path(moved.shards.root).name  # a store id of its own
    pd.testing.assert_frame_equal(copy.query_df("SELECT * FROM feature_acts"), want)
    copy.ingest_shard("r2", "k", *make_shard("c", 10, seed=15))
    assert copy.remove_run_shards("r") == 1
    assert moved.missing_shard_files() == [] and moved.scalar("SELECT count(*) FROM example_stats") == 10
    assert store_files(copy) == sorted(Path(f) for f in copy.shard_files("r2").iloc[0, -2:])


V3_DDL = """
CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR);
INSERT INTO meta VALUES ('schema_version', '3');
CREATE TABLE shards (run_id VARCHAR NOT NULL, shard_key VARCHAR NOT NULL, n_examples INTEGER, n_rows BIGINT,
    path VARCHAR, created TIMESTAMP DEFAULT current_timestamp, PRIMARY KEY (run_id, shard_key));
CREATE TABLE example_stats (run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, n_tokens INTEGER NOT NULL,
    n_positions INTEGER NOT NULL, n_sinks INTEGER NOT NULL, shard_key VARCHAR NOT NULL,
    PRIMARY KEY (run_id, example_id));
CREATE TABLE feature_acts (run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, feature INTEGER NOT NULL,
    max_act REAL NOT NULL, sum_act REAL NOT NULL, n_active INTEGER NOT NULL);
CREATE TABLE runs (run_id VARCHAR PRIMARY KEY, stage VARCHAR NOT NULL, config VARCHAR NOT NULL, model_key VARCHAR,
    sae_key VARCHAR, status VARCHAR NOT NULL, n_done BIGINT DEFAULT 0, n_total BIGINT DEFAULT 0, message VARCHAR,
    igds_version VARCHAR, created TIMESTAMP DEFAULT current_timestamp, updated TIMESTAMP DEFAULT current_timestamp);
"""


def test_schema_3_store_migrates_in_place(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute(V3_DDL)
    con.execute("INSERT INTO runs (run_id, stage, config, status) VALUES ('a', 'extract', '{}', 'done')")
    # shards of two runs interleaved, as two extractions running one after the other would leave them
    shards = [(run, f"k{i}", *make_shard(f"{run}{i}", 400, seed=20 + i))
              for i, run in enumerate(["a", "b", "a", "a", "b"])]
    shards.insert(3, ("b", "big", *big_shard("big", 4000, seed=30)))  # 400k rows: megabytes inside the file
    for run, key, acts, stats in shards:
        con.register("acts", acts)
        con.register("stats", stats)
        con.execute("INSERT INTO feature_acts SELECT ?, * FROM acts", [run])
        con.execute("INSERT INTO example_stats SELECT ?, *, ? FROM stats", [run, key])
        con.execute("INSERT INTO shards (run_id, shard_key, n_examples, n_rows) VALUES (?, ?, ?, ?)",
                    [run, key, stats.num_rows, acts.num_rows])
    old_acts = con.execute("SELECT * FROM feature_acts").fetch_df()
    old_stats = con.execute("SELECT * FROM example_stats").fetch_df()
    con.close()
    old_size = path.stat().st_size

    store = ActivationStore(path)
    assert store.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == "4"
    pd.testing.assert_frame_equal(store.query_df("SELECT * FROM feature_acts"), old_acts)
    pd.testing.assert_frame_equal(store.query_df("SELECT * FROM example_stats"), old_stats)
    assert store.scalar("SELECT count(*) FROM information_schema.tables WHERE table_name IN "
                        "('feature_acts', 'example_stats') AND table_type = 'BASE TABLE'") == 0
    assert store.shard_files().shard_key.tolist() == ["k0", "k1", "k2", "big", "k3", "k4"]
    assert store.shard_files("a").n_rows.tolist() == [s[2].num_rows for s in shards if s[0] == "a"]
    assert store.run("a")["status"] == "done"  # other tables untouched
    assert path.stat().st_size < old_size / 2  # the rows left the file
    # the migrated store works as a current one: reopens, ingests, does not ingest twice
    again = ActivationStore(path)
    assert again.ingest_shard("a", "k0", shards[0][2], shards[0][3]) is False
    assert again.ingest_shard("a", "k9", *make_shard("new", 5, seed=99)) is True
    assert again.scalar("SELECT count(*) FROM example_stats") == 5 * 400 + 4000 + 5


@pytest.mark.parametrize("version", ["2", "99"])
def test_unknown_schema_versions_are_refused(tmp_path, version):
    path = tmp_path / "x.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [version])
    con.close()
    with pytest.raises(StoreError, match=f"has schema version {version}, this IGDS expects 4; move the file aside"):
        ActivationStore(path)


def test_version_3_without_its_activation_tables_is_refused_untouched(tmp_path):
    path = tmp_path / "odd.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '3')")
    con.close()
    with pytest.raises(StoreError, match="has schema version 3, this IGDS expects 4; move the file aside"):
        ActivationStore(path)
    con = duckdb.connect(str(path))
    assert con.execute("SELECT table_name FROM information_schema.tables").fetchall() == [("meta",)]
    con.close()
