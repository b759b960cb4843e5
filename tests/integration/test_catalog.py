"""Tasks in the workspace: stored in DuckDB, seen by every process, split by a column or a seed, with a pool that
never holds an eval item; answer extraction from a fixed menu."""

import json
import os
import subprocess
import sys

import pytest

from igds.data.ingest import add_dataset
from igds.data.tasks import TaskSpec, UnknownTaskError, get_task
from igds.scope import PoolSpec
from igds.store import ActivationStore
from igds.workflow.catalog import TaskData, add_task, remove_task, require_task, task_split, tasks_table


@pytest.fixture
def store_with_data(tmp_path):
    rows = [{"prompt": f"Question {i}?", "response": f"Answer {i}", "split": ["probe", "dev", "test", "train"][i % 4]}
            for i in range(80)]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pool = tmp_path / "pool.jsonl"
    # the pool repeats five eval items (their content), which must stay eval items
    pool.write_text("".join(json.dumps({"prompt": f"Question {i}?", "response": f"Answer {i}"}) + "\n"
                            for i in [0, 1, 2, 3, 4, *range(100, 140)]))
    store = ActivationStore()
    add_dataset(store, path, "qa")
    add_dataset(store, pool, "logs")
    return store


def spec(name="qa-task", **kw):
    return TaskSpec(name, "Answer briefly.", "exact_match", 16, **kw)


def test_seeded_split_and_a_pool_without_eval_items(store_with_data):
    store = store_with_data
    counts = add_task(store, spec(), TaskData(eval_datasets=("qa",), n_probe=30, n_dev=10, n_test=20, seed=3,
                                              pool_datasets=("logs", "general")))
    splits = {s: {e.id for e in task_split(store, "qa-task", s)} for s in ("probe", "dev", "test", "train")}
    assert sum(map(len, splits.values())) == len(set().union(*splits.values()))  # disjoint
    evals = {e.prompt for s in ("probe", "dev", "test") for e in task_split(store, "qa-task", s)}
    repeated = len(evals & {f"Question {i}?" for i in range(5)})  # pool rows that are eval items stay eval items
    assert counts == {"probe": 30, "dev": 10, "test": 20, "train": 45 - repeated, "overlap": repeated}
    assert not evals & {e.prompt for e in task_split(store, "qa-task", "train")}
    # seeded: the same seed gives the same split in another task
    add_task(store, spec("qa-again"), TaskData(eval_datasets=("qa",), n_probe=30, n_dev=10, n_test=20, seed=3,
                                               pool_datasets=("logs",)))
    assert [e.id for e in task_split(store, "qa-again", "test")] == [e.id for e in task_split(store, "qa-task", "test")]
    with pytest.raises(ValueError, match="have 80 distinct examples; the split asks for 90"):
        add_task(store, spec("too-big"), TaskData(eval_datasets=("qa",), n_probe=60, n_dev=10, n_test=20,
                                                  pool_datasets=("logs",)))
    assert "too-big" not in tasks_table(store).task.tolist()  # nothing half-added, not even in this process


def test_split_column_and_the_pool_setting_of_the_shipped_general_set(store_with_data):
    from igds.method.pool import pool_frame

    store = store_with_data
    counts = add_task(store, spec(), TaskData(eval_datasets=("qa",), split_by="column", pool_datasets=("qa",)))
    assert counts["probe"] == counts["dev"] == counts["test"] == 20 and counts["train"] == 20  # 'train' rows pool
    assert counts["overlap"] == 0  # the dataset's own eval rows are not an overlap with its pool rows
    frame = pool_frame(store, "qa-task", PoolSpec("task-only"))
    assert len(frame) == 20 and set(frame.task) == {"qa-task"}
    with pytest.raises(ValueError, match="gives no probe, dev, test rows"):
        add_task(store, spec("no-labels"), TaskData(eval_datasets=("logs",), split_by="column", pool_datasets=("qa",)))
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        add_task(store, spec("bad"), TaskData(eval_datasets=("nope",), pool_datasets=("qa",)))
    with pytest.raises(ValueError, match="taken by a shipped task"):
        add_task(store, spec("summarization"), TaskData(eval_datasets=("qa",), pool_datasets=("qa",)))
    assert TaskData(eval_datasets=("qa",), pool_datasets=("qa", "general")).default_pool_setting == "mixed"


def test_a_task_is_seen_by_other_processes_and_removed_cleanly(store_with_data):
    store = store_with_data
    add_task(store, spec(answer="after_marker", answer_arg="####"),
             TaskData(eval_datasets=("qa",), split_by="column", pool_datasets=("logs",)))
    env = {**os.environ, "IGDS_STORE": str(store.path)}
    out = subprocess.run([sys.executable, "-m", "igds", "task", "show", "qa-task"], env=env, capture_output=True,
                         text=True, check=True).stdout
    shown = json.loads(out)
    assert shown["spec"]["answer"] == "after_marker" and shown["data"]["pool_datasets"] == ["logs"]
    with pytest.raises(ValueError, match="used by task"):
        store.remove_dataset("qa")
    # 60 eval items by the column; the pool is the 45 log rows less items 0, 1, 2 and 4 (eval; item 3 is labelled train)
    assert remove_task(store, "qa-task") == 60 + 41
    with pytest.raises(UnknownTaskError, match="unknown task 'qa-task'"):
        require_task(store, "qa-task")
    assert store.remove_dataset("qa") == 80
    assert store.scalar("SELECT count(*) FROM records") == 45  # the pool's records stay with their dataset
    with pytest.raises(ValueError, match="shipped task"):
        remove_task(store, "math")


def test_answer_extraction_is_a_fixed_menu():
    assert spec(answer="after_marker", answer_arg="####").extract_answer("work 41\n#### 42\nmore") == "42"
    assert spec(answer="regex", answer_arg="boxed").extract_answer(r"\boxed{1} then \boxed{7}") == "7"
    assert spec(answer="last_number").extract_answer("3 apples, 5 pears") == "5"
    assert spec(answer="whole").extract_answer("  all of it \n") == "all of it"
    assert spec(answer="first_line").extract_answer("\n first \nsecond") == "first"
    assert get_task("math").extract_answer("so #### 12") == "12"  # built-ins keep their rule (auto)
    for bad, msg in ((dict(answer="python"), "not one of"), (dict(answer="regex", answer_arg="(.*)"), "pattern name"),
                     (dict(answer="after_marker"), "needs a marker")):
        with pytest.raises(ValueError, match=msg):
            spec(**bad)
