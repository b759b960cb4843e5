"""Bring your own data through the CLI: a chat-format Parquet dataset and a task of one's own go through every
stage (extraction → recall → interventions → selection → fine-tune → evaluation) on a local model folder and a
local SAE folder, as a researcher would run them; unknown tasks are refused before anything loads."""

import json

import pandas as pd
import pytest

from igds.cli import main
from igds.demo import save_tiny_model, save_tiny_sae
from igds.store import ActivationStore


def chat_rows(n: int = 64) -> list[dict]:
    """Chat conversations with a split column: most one turn, every fifth a system turn and two exchanges."""
    rows = []
    for i in range(n):
        msgs = [{"role": "user", "content": f"Add {i} and {i % 7}."}, {"role": "assistant", "content": f"{i + i % 7}"}]
        if i % 5 == 0:
            msgs = [{"role": "system", "content": "Answer with a number."},
                    {"role": "user", "content": f"Is {i} even?"}, {"role": "assistant", "content": "yes" if i % 2 == 0
                                                                                      else "no"},
                    *msgs]
        rows.append({"messages": msgs, "split": ["probe", "probe", "dev", "test", "train", "train"][i % 6]})
    return rows


@pytest.fixture
def own_files(tmp_path):
    data = tmp_path / "chat.parquet"
    pd.DataFrame(chat_rows()).to_parquet(data)
    model = save_tiny_model(tmp_path / "my-model")
    sae = save_tiny_sae(tmp_path / "my-sae", layer=1)
    return data, model, sae


def run(*argv: str) -> None:
    assert main(list(argv)) == 0, f"igds {' '.join(argv)} failed"


def test_unknown_task_is_refused_before_anything_loads(capsys, monkeypatch):
    import igds.workflow.workspace as workspace

    def boom(*a, **k):
        raise AssertionError("the workspace was opened for an unknown task")

    monkeypatch.setattr(workspace, "open_workspace", boom)
    assert main(["recall", "--task", "no-such-task"]) == 2
    err = capsys.readouterr().err
    assert "unknown task 'no-such-task'" in err and "summarization" in err


def test_chat_parquet_task_through_every_stage_on_the_cli(own_files, capsys):
    data, model_dir, sae_dir = own_files
    run("data", "add", str(data), "--name", "chat")
    run("data", "add", str(data), "--name", "chat")  # idempotent: the same file and mapping again
    assert "already stored" in capsys.readouterr().out
    run("task", "add", "adder", "--metric", "exact_match", "--instruction", "Answer with a number.",
        "--answer", "last_number", "--max-new-tokens", "4", "--eval-datasets", "chat", "--split-by", "column",
        "--pool-datasets", "chat")
    capsys.readouterr()
    run("task", "list")
    listing = capsys.readouterr().out
    assert "adder" in listing and "workspace" in listing
    # the model and SAE of the researcher (a random SAE: explained-variance floor off for the tiny model)
    run("workspace", "use", "--model-name-or-path", str(model_dir), "--sae-source", str(sae_dir),
        "--sae-min-explained-variance", "-1000", "--task", "adder")
    assert json.loads(capsys.readouterr().out)["site"] == "blocks.1.hook_resid_post"
    common = ("--max-length", "96", "--pool-setting", "task-only")
    run("extract", "--tasks", "adder", *common)
    run("recall", "--task", "adder", "--max-length", "96", "--recall-min-freq", "0.05")
    run("intervene", "--task", "adder", "--max-length", "96", "--method-preset", "paper", "--int-max-length", "96")
    run("select", "--task", "adder", "--max-length", "96", "--method", "random", "--pool-setting", "task-only",
        "--name", "adder-random")
    run("finetune", "--selection", "adder-random", "--ft-max-steps", "2", "--ft-batch-size", "4",
        "--ft-target-modules", "q_proj", "v_proj", "--ft-precision", "fp32", "--eval-n-examples", "6",
        "--eval-max-new-tokens", "4", "--eval-batch-size", "6")

    store = ActivationStore()
    stages = set(store.query_df("SELECT stage FROM runs").stage)
    assert {"extract", "recall", "intervene", "finetune"} <= stages
    evals = store.query_df("SELECT run_id, task, metric, n FROM evals WHERE task = 'adder'")
    assert set(evals.run_id) >= {"base"} and len(evals) == 2 and (evals.metric == "exact_match").all()
    assert (evals.n == 6).all()
    # every run names the researcher's model and SAE
    ids = store.query_df("SELECT DISTINCT r.model_key, m.spec AS mspec, s.path FROM runs r JOIN models m USING "
                         "(model_key) JOIN saes s USING (sae_key)")
    assert len(ids) == 1
    assert json.loads(ids.mspec.iloc[0])["name_or_path"] == str(model_dir.resolve())
    assert ids.path.iloc[0] == str(sae_dir.resolve())
    # the selection drew only from the task's pool: never an eval item
    sel = store.query_df("SELECT e.split FROM selection_members m JOIN selections s USING (selection_id) "
                         "JOIN examples e ON e.id = m.example_id AND e.task = s.task WHERE s.name = 'adder-random'")
    assert len(sel) and (sel.split == "train").all()
