"""Bring your own data in a real headless Chromium: upload a JSONL file on the Data page, map its columns, store
it, create a task from it, and find that task offered in the sidebar of every page."""

import json
import os
from pathlib import Path

import pytest

from igds.store import ActivationStore
from igds.ui.pages import PAGES
from scripts.browser import browser, chromium, serve

# CI sets IGDS_REQUIRE_BROWSER=1 so a missing browser fails instead of skipping
pytestmark = pytest.mark.skipif(chromium() is None and os.environ.get("IGDS_REQUIRE_BROWSER") != "1",
                                reason="chromium not installed (.ci/run installs it)")
LABELS = ["probe"] * 4 + ["dev"] * 3 + ["test"] * 4 + ["train"] * 6


@pytest.fixture
def demo_home(tmp_path):
    import torch

    from igds.demo import build_tiny_workspace

    torch.set_num_threads(1)
    home = tmp_path / "home"
    home.mkdir()
    build_tiny_workspace(ActivationStore(home / "igds.duckdb"))  # so every other page has something to show
    return home


def test_upload_map_add_and_create_a_task_seen_by_every_page(demo_home, tmp_path):
    data = tmp_path / "trivia.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i} + {i}?", "answer": str(2 * i), "split": s}) + "\n"
                            for i, s in enumerate(LABELS)))
    out = Path(os.environ.get("IGDS_SCREENSHOT_DIR", tmp_path))
    env = {"IGDS_HOME": str(demo_home), "IGDS_STORE": str(demo_home / "igds.duckdb")}
    with serve(env) as url, browser() as b:
        b.open(url, expect="IGDS workspace", settle=1.0)  # the app's first run registers its pages
        html = b.open(f"{url}/data", expect="Add a dataset", settle=1.0)
        assert 'data-testid="stException"' not in html

        # upload: the guessed mapping is shown before anything is stored
        b.set_files('[data-testid="stFileUploaderDropzoneInput"]', [data])
        b.wait_text("Rows read")
        b.settle()
        assert b.select_value("Format") == "prompt / response columns"
        assert b.select_value("Prompt column") == "question"
        assert b.select_value("Response column") == "answer"
        assert b.select_value("Split column (optional)") == "split"
        assert "probe: 4" in b.text() and "test: 4" in b.text()
        b.type_into("Dataset name", "trivia-upload")
        b.settle()
        b.click_button("Add dataset")
        b.wait_text("Stored dataset")
        b.settle()
        stored = ActivationStore(demo_home / "igds.duckdb").datasets_table()
        assert list(stored.name) == ["trivia-upload"] and int(stored.n_rows.iloc[0]) == len(LABELS)

        # a task: eval items by the file's split column, pool = the dataset + the shipped general set
        b.type_into("Task name", "trivia_task")
        b.settle()
        b.type_into("Instruction (optional)", "Answer with a number.")
        b.settle()
        b.choose("Eval datasets", "trivia-upload")
        b.settle()
        b.check_radio("Split by", "the split column")
        b.settle()
        b.choose("Pool datasets", "trivia-upload")
        b.settle()
        b.choose("Pool datasets", "shipped general set")
        b.settle()
        assert b.select_value("Pool datasets").splitlines() == ["trivia-upload", "shipped general set"]
        b.click_button("Create task")
        b.wait_text("Created task")
        b.settle()
        assert "4 probe, 3 dev, 4 test items and a pool of 6" in b.text()
        assert b.select_value("Task") == "trivia_task", "the sidebar did not switch to the new task"
        b.screenshot(out / "data-upload.png")

        # every page (a fresh session each) offers the new task and shows no exception
        for n, (_, title, path, _) in enumerate(PAGES):
            html = b.open(url if n == 0 else f"{url}/{path}", expect=title, settle=1.0)  # the default page is /
            assert 'data-testid="stException"' not in html, f"{path}: Streamlit exception on the page"
            assert "trivia_task" in b.select_options("Task"), f"{path}: the new task is not in the sidebar"
