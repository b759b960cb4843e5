"""The Data page: a file's problems are all shown before anything is stored; a clean file becomes a dataset, a
task is created from it and offered in the sidebar; the model / SAE choice is validated before it is used."""

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from igds.store import ActivationStore
from igds.ui.state import PENDING_TASK, TASK

ROOT = Path(__file__).resolve().parents[2]
PAGE = "pages/7_data.py"


@pytest.fixture
def store(tmp_path, monkeypatch):
    path = tmp_path / "igds.duckdb"
    monkeypatch.setenv("IGDS_STORE", str(path))
    return ActivationStore(path)


def data_page() -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def from_path(at: AppTest, path: Path) -> AppTest:
    at.radio(key="data_src").set_value("path").run()
    at.text_input(key="data_path").input(str(path)).run()
    assert not at.exception, at.exception
    return at


def table(at: AppTest, column: str):
    """The dataframe with ``column`` (keys are kept only for selectable tables)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def texts(elements) -> list[str]:
    """Message texts without the page's markdown escapes."""
    return [re.sub(r"\\(.)", r"\1", e.value) for e in elements]


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_preview_lists_every_problem_and_stores_nothing(store, tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"question": "What is 2+2?", "answer": "4", "split": "probe"},
        {"question": "Capital of France?"},  # line 2: no answer
        {"question": "", "answer": "nothing asked"},  # line 3: empty prompt
        {"question": "Largest planet?", "answer": "Jupiter", "split": "test"},
        {"question": "Boiling point of water in C?", "answer": "100", "split": "dev"},
        "{not json",  # line 6: reading stops here
        {"question": "never read", "answer": "x"},
    ])
    at = from_path(data_page(), path)
    assert at.selectbox(key="data_map_prompt").value == "question"
    assert at.selectbox(key="data_map_response").value == "answer"
    assert at.selectbox(key="data_map_split").value == "split"
    assert at.text_input(key="data_name").value == "qa"
    rows = table(at, "prompt")
    assert list(rows.prompt) == ["What is 2+2?", "Largest planet?", "Boiling point of water in C?"]
    assert list(rows.row) == [1, 4, 5] and set(rows.source) == {"qa"}
    errors = " ".join(texts(at.error))
    for line, field, what in ((2, "answer", "missing"), (3, "question", "empty")):
        assert f"qa.jsonl line {line}: field '{field}' is {what}" in errors
    assert "qa.jsonl line 6: invalid JSON" in errors and "3 problem(s)" in errors
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Problems"] == "3" and metrics["Distinct records"] == "3"
    assert at.button(key="data_add").disabled
    assert store.datasets_table().empty
    # remapping the prompt to another column re-reads the file under that mapping
    at.selectbox(key="data_map_prompt").set_value("split").run()
    assert not at.exception
    errors = " ".join(texts(at.error))
    assert "line 2: field 'split' is missing" in errors and at.button(key="data_add").disabled
    assert store.datasets_table().empty
    # the file fixed in place: read again, the mapping and name kept, nothing in the way of adding it
    at.selectbox(key="data_map_prompt").set_value("question").run()
    write_jsonl(path, [{"question": "What is 2+2?", "answer": "4", "split": "probe"},
                       {"question": "Capital of France?", "answer": "Paris"}])
    at.run()
    assert not at.error and not at.button(key="data_add").disabled
    assert at.selectbox(key="data_map_prompt").value == "question" and at.text_input(key="data_name").value == "qa"
    assert list(table(at, "prompt").prompt) == ["What is 2+2?", "Capital of France?"]


def test_clean_file_becomes_a_dataset_and_a_task_in_the_sidebar(store, tmp_path):
    from igds.workflow.catalog import task_names, tasks_table

    labels = ["probe"] * 3 + ["dev"] * 2 + ["test"] * 3 + ["train"] * 4
    path = write_jsonl(tmp_path / "facts.jsonl", [
        {"prompt": f"Fact number {i}?", "response": f"It is {i}.", "split": s} for i, s in enumerate(labels)])
    at = from_path(data_page(), path)
    assert not at.error and not at.button(key="data_add").disabled
    at.text_input(key="data_name").input("facts-ds").run()
    at.button(key="data_add").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Stored dataset" in s for s in texts(at.success))
    stored = store.datasets_table()
    assert list(stored.name) == ["facts-ds"] and int(stored.n_rows.iloc[0]) == len(labels)
    assert "facts-ds" in list(table(at, "n_records").name)

    at.text_input(key="task_new_name").input("facts_task").run()
    at.text_area(key="task_instruction").input("Answer the question.").run()
    at.selectbox(key="task_metric").set_value("exact_match").run()
    at.selectbox(key="task_answer").set_value("after_marker").run()
    at.text_input(key="task_marker").input("Answer:").run()
    at.multiselect(key="task_eval").set_value(["facts-ds"]).run()
    at.radio(key="task_split").set_value("column").run()
    at.multiselect(key="task_pool").set_value(["facts-ds", "general"]).run()
    at.button(key="task_create").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any("Created task" in s and "3 probe, 2 dev, 3 test" in s for s in texts(at.success))
    row = tasks_table(store).set_index("task").loc["facts_task"]
    assert row.kind == "workspace" and (row.probe, row.dev, row.test, row.train) == (3, 2, 3, 4)
    assert row.answer == "after_marker Answer:"
    assert "facts_task" in task_names(store)
    assert "facts_task" in list(table(at, "task").task)
    assert at.session_state[PENDING_TASK] == "facts_task"
    # the sidebar (app.py; AppTest runs a switched-to page without its main script) offers the task and, with
    # the page's request, lands on it
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.session_state[PENDING_TASK] = at.session_state[PENDING_TASK]
    app.run()
    assert not app.exception
    assert "facts_task" in app.selectbox(key=TASK).options and app.selectbox(key=TASK).value == "facts_task"

    # a dataset a task draws from cannot be removed; the task can, and the sidebar falls back to the first task
    at.selectbox(key="data_rm_pick").set_value("facts-ds").run()
    at.button(key="data_rm").click().run()
    assert any("used by task(s) facts_task" in e for e in texts(at.error))
    at.selectbox(key="task_rm_pick").set_value("facts_task").run()
    at.button(key="task_rm").click().run()
    assert not at.exception and any("Removed task facts" in s for s in texts(at.success))
    assert "facts_task" not in list(table(at, "task").task)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.session_state[TASK] = "facts_task"  # this session's pick, removed meanwhile
    app.run()
    assert not app.exception
    assert "facts_task" not in app.selectbox(key=TASK).options
    assert app.selectbox(key=TASK).value == app.selectbox(key=TASK).options[0]

def test_validate_and_use_reports_errors_and_results(store, monkeypatch):
    from igds.modeling.sae import SaeError

    calls = []

    def refuse(store, model, sae, task=None, progress=None):
        calls.append((model.name_or_path, sae.source, task))
        progress(1, 2, "loading")
        raise SaeError("SAE d_in 64 does not match the model's hidden size 576 at blocks.3.hook_resid_post")

    monkeypatch.setattr("igds.workflow.workspace.choose_identity", refuse)
    at = data_page()
    at.radio(key="id_sae_kind").set_value("train").run()
    at.number_input(key="id_train_layer").set_value(2).run()
    at.button(key="id_use").click().run()
    assert not at.exception
    assert calls == [("default", f"train:2:{at.number_input(key='id_train_width').value}:"
                                 f"{at.number_input(key='id_train_k').value}", "summarization")]
    assert any("hidden size 576" in e for e in texts(at.error))
    assert store.get_setting("identity") is None

    def accept(store, model, sae, task=None, progress=None):
        return {"model": "tiny", "sae": "tiny-sae", "site": "blocks.1.hook_resid_post", "d_model": 32, "d_sae": 64,
                "quality": {"explained_variance": 0.912, "n_examples": 8}}

    monkeypatch.setattr("igds.workflow.workspace.choose_identity", accept)
    at.button(key="id_use").click().run()
    assert not at.exception
    assert any("explained variance **0.912**" in s for s in texts(at.success))
