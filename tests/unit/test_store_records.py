"""The store's record model: content in ``records``, task/split in ``memberships``, the ``examples`` view with
the columns the examples table had, and an older store refused with a clear message."""

from __future__ import annotations

import duckdb
import pytest

from igds.constants import SCHEMA_VERSION
from igds.data.records import Example
from igds.store import ActivationStore, StoreError

SHARED = [  # the same content in two tasks: one record, two memberships
    Example("a", "math", "gsm", "train", "2+2?", "#### 4", {"k": 1}),
    Example("a", "general", "other", "train", "2+2?", "#### 4", {}),
    Example("b", "math", "gsm", "test", "3+3?", "#### 6", {}),
]


def test_examples_view_joins_records_and_memberships(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    assert store.add_examples(SHARED, "d1") == 3
    assert store.add_examples(SHARED, "d2") == 0  # memberships already brought by d1 stay as they are
    view = store.query_df("SELECT * FROM examples ORDER BY id, task")
    assert list(view.columns) == ["id", "task", "source", "split", "prompt", "response", "meta", "dataset"]
    assert view[["id", "task", "split", "dataset"]].values.tolist() == [
        ["a", "general", "train", "d1"], ["a", "math", "train", "d1"], ["b", "math", "test", "d1"]]
    records = store.query_df("SELECT * FROM records ORDER BY id")
    assert records[["id", "source", "prompt", "meta"]].values.tolist() == [
        ["a", "gsm", "2+2?", '{"k": 1}'], ["b", "gsm", "3+3?", "{}"]]  # the first occurrence's record


def test_sync_dataset_drops_memberships_then_orphan_records(tmp_path):
    store = ActivationStore(tmp_path / "s.duckdb")
    store.add_examples(SHARED, "d1")
    assert store.sync_dataset(SHARED[1:], "d1") == (0, 1)  # "a" leaves math but stays in general
    assert store.query_df("SELECT id, task FROM examples ORDER BY id").values.tolist() == [["a", "general"],
                                                                                          ["b", "math"]]
    assert store.scalar("SELECT count(*) FROM records") == 2
    assert store.sync_dataset([], "d1") == (0, 2)
    assert store.scalar("SELECT count(*) FROM records") == 0


def test_a_store_older_than_the_migrations_is_refused(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION - 2)])
    con.execute("CREATE TABLE examples (id VARCHAR PRIMARY KEY, task VARCHAR)")  # version 1 had a table here
    con.close()
    with pytest.raises(StoreError, match=f"has schema version {SCHEMA_VERSION - 2}, this IGDS expects "
                                         f"{SCHEMA_VERSION}; move the file aside"):
        ActivationStore(path)
    ActivationStore(tmp_path / "new.duckdb")
    ActivationStore(tmp_path / "new.duckdb")  # reopening a current store works


def test_a_store_from_before_n_dropped_gains_the_column(tmp_path):
    path = tmp_path / "s.duckdb"
    ActivationStore(path)
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO finetunes (run_id, task, config, status) VALUES ('ft-old', 'math', '{}', 'done')")
    con.execute("ALTER TABLE finetunes DROP COLUMN n_dropped")  # the table as stores written before had it
    con.close()
    store = ActivationStore(path)
    ActivationStore(path)  # the migration is idempotent
    rows = store.query_df("SELECT run_id, n_dropped FROM finetunes")
    assert rows.run_id.tolist() == ["ft-old"] and rows.n_dropped.isna().all()


def test_nll_cache_reads_only_rows_of_the_current_procedure(tmp_path):
    import pandas as pd

    from igds.constants import NLL_PROCEDURE
    from igds.store.results import nll_cache_key

    store = ActivationStore(tmp_path / "s.duckdb")
    con = duckdb.connect(str(store.path))
    con.execute("INSERT INTO example_nll VALUES ('m', 'old', 1.0, 2.0)")  # a row of the bare-start-token procedure
    con.close()
    assert store.example_nll("m").empty
    store.add_example_nll(pd.DataFrame({"model_key": ["m"], "example_id": ["new"], "nll_cond": [1.0],
                                        "nll_uncond": [1.5]}))
    assert store.example_nll("m").example_id.tolist() == ["new"]
    assert store.scalar("SELECT model_key FROM example_nll WHERE example_id = 'new'") == f"m|{NLL_PROCEDURE}"
    assert nll_cache_key(nll_cache_key("m")) == nll_cache_key("m")
