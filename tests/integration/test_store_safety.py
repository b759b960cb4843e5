"""Nothing lost by a click or an upgrade (issue 23, item 7): selection members are scoped to their task, a selection
whose members are gone says so, removals say what they delete, a migration keeps the old file, and
``make clean-cache`` removes only under ``IGDS_HOME``."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from igds.cli import main
from igds.data.ingest import add_dataset
from igds.data.records import Example
from igds.data.tasks import TaskSpec
from igds.method.pool import pool_frame
from igds.method.selection import load_selection, save_selection
from igds.scope import PoolSpec
from igds.store import ActivationStore
from igds.store.selections import MissingMembersError
from igds.training.export import read_export
from igds.workflow.catalog import TaskData, add_task, remove_task
from igds.workflow.tune import selection_examples
from tests.integration.test_shard_store import V3_DDL, make_shard

ROOT = Path(__file__).parents[2]
TASK_DATA = TaskData(eval_datasets=("qa",), n_probe=5, n_dev=5, n_test=5, seed=3, pool_datasets=("logs", "general"))
N_OWN = 10  # members of the selection from its task's pool (plus one general record)


def spec(name: str) -> TaskSpec:
    return TaskSpec(name, "Answer briefly.", "exact_match", 16)


@pytest.fixture
def two_tasks(tmp_path):
    """Tasks ``ta`` and ``tb`` over the same two datasets (every pool id in both), a general record, and a saved
    mixed selection of ``ta``: ten of its pool items and the general record."""
    qa, logs = tmp_path / "qa.jsonl", tmp_path / "logs.jsonl"
    qa.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}"}) + "\n"
                          for i in range(20)))
    logs.write_text("".join(json.dumps({"prompt": f"Log {i}", "response": f"Entry {i}"}) + "\n" for i in range(30)))
    store = ActivationStore()
    add_dataset(store, qa, "qa")
    add_dataset(store, logs, "logs")
    store.add_examples([Example("gen-1", "general", "web", "train", "Off-task text", "reply", {})], "shipped")
    for name in ("ta", "tb"):
        add_task(store, spec(name), TASK_DATA)
    pool = pool_frame(store, "ta", PoolSpec("mixed"))
    chosen = pd.concat([pool[pool.task == "ta"].head(N_OWN), pool[pool.task == "general"]], ignore_index=True)
    chosen = chosen.assign(rank=range(1, len(chosen) + 1), score=1.0)
    sid = save_selection(store, "sel-a", "ta", "random", "mixed", len(pool), chosen, {"seed": 1})
    return store, sid, list(chosen.example_id)


def test_a_selection_exports_its_own_task_members_once_and_survives_the_other_task(two_tasks, capsys):
    store, sid, ids = two_tasks
    assert store.scalar("SELECT count(*) FROM examples WHERE task = 'tb' AND id IN (SELECT example_id FROM "
                        "selection_members WHERE selection_id = ?)", [sid]) == N_OWN  # the same ids in both tasks
    info, members = load_selection(store, sid)
    assert members.id.tolist() == ids  # one row per member, in rank order
    assert members.task.tolist() == ["ta"] * N_OWN + ["general"]

    assert main(["export", "--selection", "sel-a", "--name", "sel-a"]) == 0
    exported, manifest = read_export(store.path.parent / "exports" / "sel-a")
    assert [e.id for e in exported] == ids and manifest["composition"]["task"] == {"general": 1, "ta": N_OWN}

    # removing the other task is planned without touching the selection, and leaves it unchanged
    plan = store.removal_plan("task", "tb")
    assert plan.allowed and plan.selections == () and plan.memberships == 15 + 30  # eval + pool items
    capsys.readouterr()
    assert main(["task", "remove", "tb"]) == 0
    out = capsys.readouterr().out
    assert "removed task 'tb'" in out and "45 task items" in out and "sel-a" not in out
    pd.testing.assert_frame_equal(load_selection(store, sid)[1], members)


def test_removing_its_own_task_is_planned_then_makes_loading_fail_by_name(two_tasks, capsys):
    store, sid, ids = two_tasks
    before = store.summary()
    capsys.readouterr()
    assert main(["task", "remove", "ta", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would remove task 'ta'" in out
    assert f"selection 'sel-a' ({sid}, task 'ta') loses {N_OWN} of {N_OWN + 1} members" in out
    assert store.summary() == before and "ta" in store.register_tasks()  # a dry run removes nothing

    plan = store.removal_plan("task", "ta")
    [lost] = plan.selections
    assert (lost.selection_id, lost.n_members, lost.n_lost) == (sid, N_OWN + 1, N_OWN)
    assert remove_task(store, "ta", expect=plan) == plan.memberships
    message = rf"selection 'sel-a' \({sid}\) of task 'ta': {N_OWN} of {N_OWN + 1} members .*task 'ta' was removed"
    with pytest.raises(MissingMembersError, match=message):
        load_selection(store, sid)
    with pytest.raises(MissingMembersError, match=message):  # what fine-tuning reads
        selection_examples(store, sid)
    from igds.workflow.compare import load_side

    with pytest.raises(MissingMembersError, match=message):
        load_side(store, "ta", sid)
    assert main(["export", "--selection", sid, "--name", "gone"]) == 2
    assert "10 of 11 members are no longer in the store" in capsys.readouterr().err
    assert not (store.path.parent / "exports" / "gone").exists()

    # the error's promise: the same task from the same data brings the selection back
    add_task(store, spec("ta"), TASK_DATA)
    assert load_selection(store, sid)[1].id.tolist() == ids


def test_a_removal_refuses_a_plan_that_no_longer_holds(two_tasks):
    store, sid, ids = two_tasks
    plan = store.removal_plan("task", "tb")
    pool = pool_frame(store, "tb", PoolSpec("task-only")).head(3).assign(rank=[1, 2, 3], score=0.5)
    sid_b = save_selection(store, "sel-b", "tb", "random", "task-only", 30, pool, {"seed": 2})  # after the plan
    with pytest.raises(ValueError, match="changed since the removal was planned.*sel-b.*nothing removed"):
        remove_task(store, "tb", expect=plan)
    assert "tb" in store.register_tasks() and len(load_selection(store, sid_b)[1]) == 3


def test_dataset_removal_says_what_blocks_it_and_what_it_deletes(two_tasks, capsys):
    store, _, _ = two_tasks
    plan = store.removal_plan("dataset", "logs")
    assert not plan.allowed and plan.blocked_by == ("ta", "tb")
    assert main(["data", "remove", "logs", "--dry-run"]) == 2
    assert "used by task(s) ta, tb" in capsys.readouterr().err
    assert main(["data", "remove", "nope"]) == 2
    assert "there is no dataset 'nope'" in capsys.readouterr().err
    remove_task(store, "ta")
    remove_task(store, "tb")
    plan = store.removal_plan("dataset", "logs")
    assert (plan.allowed, plan.dataset_rows, plan.records) == (True, 30, 30)
    assert main(["data", "remove", "logs"]) == 0
    out = capsys.readouterr().out
    assert "removed dataset 'logs'" in out and "30 dataset rows" in out and "30 stored texts" in out
    assert store.dataset("logs") is None and store.dataset("qa") is not None


# -- a migration keeps the previous file -------------------------------------------------------------------------
def v3_store(path: Path) -> pd.DataFrame:
    """A schema-3 store with one shard's activation rows inside the file; returns those rows."""
    con = duckdb.connect(str(path))
    con.execute(V3_DDL)
    acts, stats = make_shard("m", 50, seed=4)
    con.register("acts", acts)
    con.register("stats", stats)
    con.execute("INSERT INTO feature_acts SELECT 'r', * FROM acts")
    con.execute("INSERT INTO example_stats SELECT 'r', *, 'k' FROM stats")
    con.execute("INSERT INTO shards (run_id, shard_key, n_examples, n_rows) VALUES ('r', 'k', 50, ?)",
                [acts.num_rows])
    rows = con.execute("SELECT * FROM feature_acts").fetch_df()
    con.close()
    return rows


def test_a_migration_keeps_the_previous_file_beside_the_new_one(tmp_path, caplog):
    path = tmp_path / "igds.duckdb"
    old_rows = v3_store(path)
    old_bytes = path.read_bytes()
    with caplog.at_level("WARNING", logger="igds.store.migrate"):
        store = ActivationStore(path)
    backup = tmp_path / "igds.duckdb.v3.bak"
    assert store.migration_backup == backup and backup.read_bytes() == old_bytes
    assert str(backup) in caplog.text and store.scalar("SELECT value FROM meta WHERE key = 'migration_backup'") \
        == str(backup)
    assert store.scalar("SELECT value FROM meta WHERE key = 'schema_version'") == "4"
    pd.testing.assert_frame_equal(store.query_df("SELECT * FROM feature_acts"), old_rows)
    con = duckdb.connect(str(backup), read_only=True)  # the backup is the old store, as it was
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [("3",)]
    pd.testing.assert_frame_equal(con.execute("SELECT * FROM feature_acts").fetch_df(), old_rows)
    con.close()
    assert ActivationStore(path).migration_backup is None  # a current store is not copied again

    # a second old store in the same folder does not overwrite the first backup
    v3_store(tmp_path / "other.duckdb")
    (tmp_path / "other.duckdb.v3.bak").write_text("an earlier backup")
    assert ActivationStore(tmp_path / "other.duckdb").migration_backup == tmp_path / "other.duckdb.v3.1.bak"
    assert (tmp_path / "other.duckdb.v3.bak").read_text() == "an earlier backup"


# -- make clean-cache -------------------------------------------------------------------------------------------
def test_clean_cache_removes_only_under_igds_home_and_lists_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("IGDS_HOME", str(home))
    store = ActivationStore()
    store.ingest_shard("r", "k", *make_shard("c", 20, seed=5))
    shard_files = sorted(Path(store.shards.root).rglob("*.parquet"))
    assert len(shard_files) == 2 and all(f.is_relative_to(home / "shards") for f in shard_files)
    (home / "runs" / "r").mkdir(parents=True)
    (home / "runs" / "r" / "config.json").write_text("{}")
    for keep in ("models/m/weights.bin", "saes/s/cfg.json", "exports/e/manifest.json", "igds.duckdb.v3.bak"):
        (home / keep).parent.mkdir(parents=True, exist_ok=True)
        (home / keep).write_text("keep")
    outside = tmp_path / "elsewhere" / "runs" / "x.txt"  # a workspace-shaped folder next to it
    outside.parent.mkdir(parents=True)
    outside.write_text("keep")
    repo_sentinel = ROOT / "cache" / "runs" / f"test-sentinel-{uuid.uuid4().hex[:8]}" / "keep.txt"
    made_runs = not repo_sentinel.parent.parent.exists()
    repo_sentinel.parent.mkdir(parents=True)
    repo_sentinel.write_text("keep")
    env = {**os.environ, "IGDS_HOME": str(home)}
    env.pop("IGDS_STORE", None)
    try:
        # while another process holds the store, nothing is removed
        con = duckdb.connect(str(store.path))
        held = subprocess.run([sys.executable, "-m", "igds.store.clean"], env=env, cwd=ROOT, capture_output=True,
                              text=True)
        con.close()
        assert held.returncode == 2 and "in use by another process" in held.stderr and store.path.exists()

        # the Makefile target itself (its install prerequisite treated as done)
        done = subprocess.run(["make", "-s", "-o", "install", "clean-cache"], env=env, cwd=ROOT,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert repo_sentinel.read_text() == "keep"
    finally:
        repo_sentinel.unlink(missing_ok=True)
        repo_sentinel.parent.rmdir()
        if made_runs:
            repo_sentinel.parent.parent.rmdir()
    out = done.stdout
    assert f"removed under {home}:" in out
    assert f"  {home / 'igds.duckdb'} (" in out
    assert f"  {home / 'shards'}/ (2 files, " in out and f"  {home / 'runs'}/ (1 files, " in out
    assert not store.path.exists() and not (home / "shards").exists() and not (home / "runs").exists()
    assert sorted(p.relative_to(home).as_posix() for p in home.rglob("*") if p.is_file()) == [
        "exports/e/manifest.json", "igds.duckdb.v3.bak", "models/m/weights.bin", "saes/s/cfg.json"]
    assert outside.read_text() == "keep"
    again = subprocess.run([sys.executable, "-m", "igds.store.clean"], env=env, cwd=ROOT, capture_output=True,
                           text=True, check=True)
    assert again.stdout.strip() == f"nothing to remove under {home}"


def test_clean_cache_leaves_a_store_and_shards_outside_the_workspace(tmp_path, monkeypatch):
    from igds.store.clean import clean_cache

    home, away = tmp_path / "home", tmp_path / "away"
    monkeypatch.setenv("IGDS_HOME", str(home))
    monkeypatch.setenv("IGDS_SHARDS", str(away / "shards"))
    inside = ActivationStore()  # <home>/igds.duckdb, its shards outside the workspace
    inside.ingest_shard("r", "k", *make_shard("d", 5, seed=6))
    monkeypatch.setenv("IGDS_STORE", str(away / "igds.duckdb"))
    ActivationStore()
    plan = clean_cache(dry_run=True)
    assert [r.path for r in plan.removed] == [home / "igds.duckdb"] and inside.path.exists()
    assert plan.kept == (f"{inside.shards.root} (the store's shards lie outside {home})",
                         f"{away / 'igds.duckdb'} (the store named by IGDS_STORE lies outside {home})")
    done = clean_cache()
    assert not inside.path.exists() and (away / "igds.duckdb").exists()
    assert len(list(Path(inside.shards.root).rglob("*.parquet"))) == 2
    assert done.lines()[0] == f"removed under {home}:"
