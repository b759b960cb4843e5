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
    at.button(key="task_rm").click().run()  # asks first (tests/app/test_data_safety.py)
    at.button(key="task_rm_confirm").click().run()
    assert not at.exception and any("Removed task facts" in s for s in texts(at.success))
    assert "facts_task" not in list(table(at, "task").task)
    app = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    app.session_state[TASK] = "facts_task"  # this session's pick, removed meanwhile
    app.run()
    assert not app.exception
    assert "facts_task" not in app.selectbox(key=TASK).options
    assert app.selectbox(key=TASK).value == app.selectbox(key=TASK).options[0]

def identity_form(at: AppTest, model_dir: Path, sae_kind: str, sae_path: Path | None = None) -> AppTest:
    at.radio(key="id_model_kind").set_value("folder").run()
    at.text_input(key="id_model_path").input(str(model_dir)).run()
    at.radio(key="id_sae_kind").set_value(sae_kind).run()
    if sae_path is not None:
        at.text_input(key="id_sae_path").input(str(sae_path)).run()
    assert not at.exception, at.exception
    return at


def identity_jobs() -> list[dict]:
    from igds import jobs

    return [jobs.job_spec(s["job_id"]) | {"state": s["state"]} for s in jobs.list_jobs() if s["kind"] == "identity"]


def test_validate_and_use_runs_as_a_job_and_reports_errors_and_results(store, tmp_path):
    """The click starts a job and returns; the job's refusal and, later, a passing model + SAE show on the page."""
    from igds import jobs
    from igds.demo import save_tiny_model, save_tiny_sae

    model_dir = save_tiny_model(tmp_path / "tiny-llama")
    wide = save_tiny_sae(tmp_path / "sae-d64", d_in=64)  # does not fit the model's 32-wide residual
    at = identity_form(data_page(), model_dir, "folder", wide)
    at.button(key="id_use").click().run()
    assert not at.exception, at.exception
    (job,) = identity_jobs()
    assert job["params"] == {"model": {**job["params"]["model"], "name_or_path": str(model_dir)},
                             "sae": {**job["params"]["sae"], "source": str(wide)}, "task": "summarization"}
    assert any(f"job `{job['job_id']}`" in m.value for m in at.markdown)
    assert store.get_setting("identity") is None
    if job["state"] in ("queued", "running"):  # one validation at a time
        assert at.button(key="id_use").disabled
    assert jobs.wait_job(job["job_id"], timeout=300)["state"] == "failed"
    at.run()
    assert not at.exception
    assert any("does not match" in e or "d_in" in e for e in texts(at.error)), texts(at.error)
    assert any("Not used" in c.value for c in at.caption) and store.get_setting("identity") is None
    assert not at.button(key="id_use").disabled

    # a model + SAE that pass (a threshold the form does not offer, so the job is run here): the page shows them
    fits = save_tiny_sae(tmp_path / "sae-d32", d_in=32, layer=1)
    jobs.run_job_inline("identity", {"model": {"name_or_path": str(model_dir)},
                                     "sae": {"source": str(fits), "min_explained_variance": -1000.0},
                                     "task": "summarization"})
    at.run()
    assert not at.exception
    assert any("Now using" in s and "explained variance" in s for s in texts(at.success)), texts(at.success)
    assert store.get_setting("identity")["sae"]["source"] == str(fits)


def test_train_one_starts_a_job_and_the_server_never_imports_the_trainer(store, tmp_path):
    """*Validate and use* with *train one*: the page (run in a fresh process, whose modules are its own) starts a
    job and returns; neither sae-lens's trainer nor sae-lens itself is imported by the server process."""
    import os
    import subprocess
    import sys
    import textwrap

    from igds import jobs
    from igds.demo import save_tiny_model

    model_dir = save_tiny_model(tmp_path / "tiny-llama")
    script = textwrap.dedent(f"""
        import json, sys, time
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file({str(ROOT / "app.py")!r}, default_timeout=120).run()
        at.switch_page({PAGE!r}).run()
        at.radio(key="id_model_kind").set_value("folder").run()
        at.text_input(key="id_model_path").input({str(model_dir)!r}).run()
        at.radio(key="id_sae_kind").set_value("train").run()
        at.number_input(key="id_train_layer").set_value(1).run()
        at.number_input(key="id_train_width").set_value(16).run()
        at.number_input(key="id_train_k").set_value(4).run()
        t0 = time.monotonic()
        at.button(key="id_use").click().run()
        print(json.dumps({{"exception": [str(e.value) for e in at.exception], "seconds": time.monotonic() - t0,
                          "sae_lens": sorted(m for m in sys.modules if m.startswith("sae_lens")),
                          "markdown": [m.value for m in at.markdown]}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=os.environ.copy(), capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    (job,) = identity_jobs()
    try:
        assert not seen["exception"], seen["exception"]
        assert seen["sae_lens"] == [], "the server process imported sae-lens"
        assert job["params"]["sae"]["source"] == "train:1:16:4"
        assert job["params"]["model"]["name_or_path"] == str(model_dir)
        assert any(f"job `{job['job_id']}`" in m for m in seen["markdown"])
        assert seen["seconds"] < 30, f"the click took {seen['seconds']:.1f} s"
        assert store.get_setting("identity") is None
    finally:
        jobs.cancel_job(job["job_id"], wait=True)
