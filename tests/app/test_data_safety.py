"""Nothing lost by a click (issue 23): removing a dataset or a task on the Data page first shows what the removal
deletes, counted by the store, and deletes only after a second, explicit confirmation."""

import json
from pathlib import Path

import pytest

from igds.store import ActivationStore
from tests.app.test_data_page import data_page, texts

TABLES = ("datasets", "dataset_rows", "records", "tasks", "memberships")
SPLITS = ["probe"] * 3 + ["dev"] * 2 + ["test"] * 3 + ["train"] * 4


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A workspace with two datasets, ``facts`` (12 rows) and ``other`` (5 rows)."""
    from igds.data.ingest import add_dataset

    path = tmp_path / "igds.duckdb"
    monkeypatch.setenv("IGDS_STORE", str(path))
    store = ActivationStore(path)
    for name, n in (("facts", len(SPLITS)), ("other", 5)):
        rows = [{"prompt": f"{name} question {i}?", "response": f"answer {i}", "split": SPLITS[i % len(SPLITS)]}
                for i in range(n)]
        file = tmp_path / f"{name}.jsonl"
        file.write_text("".join(json.dumps(r) + "\n" for r in rows))
        add_dataset(store, Path(file), name)
    return store


def counts(store) -> dict:
    return {t: store.scalar(f"SELECT count(*) FROM {t}") for t in TABLES}


def confirmation(at) -> str:
    """The confirmation's text (warning and the list under it), escapes removed."""
    return " ".join(texts(at.warning) + texts(at.markdown))


def button_keys(at) -> set:
    return {b.key for b in at.button}


def test_one_click_on_remove_dataset_removes_nothing(store):
    before = counts(store)
    at = data_page()
    at.selectbox(key="data_rm_pick").set_value("facts").run()
    at.button(key="data_rm").click().run()
    assert not at.exception
    assert counts(store) == before, "the first click deleted something"
    shown = confirmation(at)
    assert "Remove dataset facts?" in shown
    assert "12 dataset rows" in shown and "12 stored texts no other task or dataset uses" in shown
    # the question belongs to the dataset it was asked for: picking another one asks nothing
    at.selectbox(key="data_rm_pick").set_value("other").run()
    assert "data_rm_confirm" not in button_keys(at) and counts(store) == before
    # cancel: nothing removed, nothing asked any more
    at.selectbox(key="data_rm_pick").set_value("facts").run()
    at.button(key="data_rm_cancel").click().run()
    assert "data_rm_confirm" not in button_keys(at) and counts(store) == before
    # ask again and confirm: exactly what the confirmation said goes
    at.button(key="data_rm").click().run()
    at.button(key="data_rm_confirm").click().run()
    assert not at.exception
    assert any("Removed dataset facts (12 rows)" in s for s in texts(at.success))
    after = counts(store)
    assert after["datasets"] == before["datasets"] - 1
    assert after["dataset_rows"] == before["dataset_rows"] - 12 and after["records"] == before["records"] - 12
    assert list(store.datasets_table().name) == ["other"]


def test_one_click_on_remove_task_removes_nothing(store):
    from igds.data.tasks import TaskSpec
    from igds.workflow.catalog import TaskData, add_task, task_names

    add_task(store, TaskSpec("facts_task", "Answer.", "exact_match", 8),
             TaskData(eval_datasets=("facts",), split_by="column", pool_datasets=("facts",)))
    before = counts(store)
    at = data_page()
    # a dataset a task draws from: the store's refusal, and nothing to confirm
    at.selectbox(key="data_rm_pick").set_value("facts").run()
    at.button(key="data_rm").click().run()
    assert any("used by task(s) facts_task" in e for e in texts(at.error))
    assert "data_rm_confirm" not in button_keys(at) and counts(store) == before

    at.selectbox(key="task_rm_pick").set_value("facts_task").run()
    at.button(key="task_rm").click().run()
    assert not at.exception
    assert counts(store) == before and "facts_task" in task_names(store)
    shown = confirmation(at)
    assert "Remove task facts_task?" in shown and f"{before['memberships']:,} task items" in shown
    at.button(key="task_rm_confirm").click().run()
    assert not at.exception
    assert any("Removed task facts_task" in s for s in texts(at.success))
    assert counts(store)["memberships"] == 0 and "facts_task" not in task_names(store)
    assert counts(store)["dataset_rows"] == before["dataset_rows"]  # the datasets stay
