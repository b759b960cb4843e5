"""Bring-your-own data: column mappings (prompt/response, Alpaca, chat messages), the preview that lists every
problem, and all-or-nothing, idempotent ingest into the workspace store."""

import csv
import json

import pandas as pd
import pytest

from igds.data.ingest import (
    ColumnMapping,
    add_dataset,
    conversation_record,
    guess_mapping,
    preview_source,
)
from igds.data.records import CorpusError
from igds.store import ActivationStore


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(("columns", "want"), [
    (["prompt", "response"], ("prompt_response", "prompt", "response")),
    (["question", "answer", "split"], ("prompt_response", "question", "answer")),
    (["instruction", "input", "output"], ("alpaca", "instruction", "output")),
    (["messages", "source"], ("messages", "messages", None)),
    (["conversations"], ("messages", "conversations", None)),
])
def test_the_mapping_is_guessed_from_the_columns(columns, want):
    m = guess_mapping(columns)
    assert m.format == want[0]
    first = {"prompt_response": m.prompt, "alpaca": m.instruction, "messages": m.messages}[m.format]
    assert first == want[1]
    if want[2]:
        assert (m.response if m.format == "prompt_response" else m.output) == want[2]
    assert m.split == ("split" if "split" in columns else "")


def test_a_conversation_answers_its_last_assistant_turn():
    one = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert conversation_record(one, "messages", "f line 1") == ("Hi", "Hello", {})
    multi = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A?"},
             {"role": "assistant", "content": "a"}, {"role": "user", "content": "B?"},
             {"role": "assistant", "content": "b"}, {"role": "user", "content": "unanswered"}]
    content, response, meta = conversation_record(multi, "messages", "f line 1")
    assert response == "b" and meta["messages"] == multi[:4] and meta["dropped_turns"] == 1
    assert content == "System: Be brief.\n\nUser: A?\n\nAssistant: a\n\nUser: B?"
    for bad, msg in (([{"role": "user", "content": "x"}], "no assistant turn"),
                     ([{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"},
                       {"role": "assistant", "content": "z"}], "turn 1 is an assistant turn"),
                     ([{"role": "user", "content": "x"}, {"role": "system", "content": "s"},
                       {"role": "assistant", "content": "z"}], "turn 2 is a system turn"),
                     ([{"role": "user", "content": "x"}, {"role": "assistant", "content": "  "}], "is empty")):
        with pytest.raises(CorpusError, match=msg):
            conversation_record(bad, "messages", "f line 3")


def test_the_preview_lists_every_problem_with_its_line_and_field(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [
        {"question": "What is 2+2?", "answer": "4"},
        {"question": "Capital of France?"},                       # line 2: no answer
        {"question": "   ", "answer": "x"},                       # line 3: empty question
        {"question": "Good?", "answer": "yes"},
        {"question": ["not", "text"], "answer": "no"},            # line 5: a list
        {"question": "Last", "answer": "one"},
    ])
    pv = preview_source(path)
    assert pv.mapping.prompt == "question" and pv.mapping.response == "answer"
    assert pv.n_rows == 6 and pv.n_problems == 3 and not pv.ok
    assert [r["row"] for r in pv.rows] == [1, 4, 6]
    assert any("line 2" in p and "'answer' is missing" in p for p in pv.problems)
    assert any("line 3" in p and "'question' is empty" in p for p in pv.problems)
    assert any("line 5" in p and "'question' must be text" in p for p in pv.problems)
    store = ActivationStore()
    with pytest.raises(CorpusError, match="3 problem") as err:
        add_dataset(store, path, "mine")
    assert "line 2" in str(err.value) and "nothing was stored" in str(err.value)
    assert store.datasets_table().empty and store.scalar("SELECT count(*) FROM records") == 0


def test_a_reader_error_late_in_the_file_stores_nothing(tmp_path):
    rows = [{"prompt": f"p{i}", "response": f"r{i}"} for i in range(50)] + ['{"prompt": "broken",']
    path = write_jsonl(tmp_path / "late.jsonl", rows)
    pv = preview_source(path)
    assert pv.n_problems == 1 and "line 51" in pv.problems[0] and "invalid JSON" in pv.problems[0]
    store = ActivationStore()
    with pytest.raises(CorpusError, match="line 51"):
        add_dataset(store, path, "late")
    assert store.scalar("SELECT count(*) FROM records") == 0 and store.datasets_table().empty


def test_ingest_is_idempotent_and_records_provenance(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"prompt": f"q{i}", "response": f"a{i}"} for i in range(10)]
                       + [{"prompt": "q0", "response": "a0"}])  # a duplicate row: one record, two rows
    store = ActivationStore()
    first = add_dataset(store, path, "pairs")
    assert first.created and first.n_rows == 11 and first.n_records == 10
    again = add_dataset(store, path, "pairs")
    assert not again.created and store.scalar("SELECT count(*) FROM dataset_rows") == 11
    info = store.dataset("pairs")
    assert info["n_rows"] == 11 and info["mapping"]["format"] == "prompt_response"
    assert len(info["content_sha256"]) == 64 and info["origin"].endswith("pairs.jsonl")
    add_dataset(store, path, "pairs-copy")  # the same content under another name shares its records
    assert store.scalar("SELECT count(*) FROM records") == 10
    path.write_text(json.dumps({"prompt": "other", "response": "content"}) + "\n")
    with pytest.raises(ValueError, match="already exists with other content"):
        add_dataset(store, path, "pairs")
    with pytest.raises(ValueError, match="reserved"):
        add_dataset(store, path, "general")


def test_alpaca_csv_with_a_bom_and_chat_parquet(tmp_path):
    csv_path = tmp_path / "alpaca.csv"
    with open(csv_path, "w", encoding="utf-8-sig", newline="") as fh:  # Excel writes a BOM
        w = csv.DictWriter(fh, ["instruction", "input", "output"])
        w.writeheader()
        w.writerow({"instruction": "Reverse the word.", "input": "abc", "output": "cba"})
        w.writerow({"instruction": "Say hi.", "input": "", "output": "hi"})
    pv = preview_source(csv_path)
    assert pv.ok and pv.mapping.format == "alpaca"
    assert [r["prompt"] for r in pv.rows] == ["Reverse the word.\n\nabc", "Say hi."]
    chat = tmp_path / "chat.parquet"
    pd.DataFrame([{"conversations": [{"from": "human", "value": "2+2?"}, {"from": "gpt", "value": "4"}],
                   "fold": "test"}]).to_parquet(chat)
    pv = preview_source(chat, ColumnMapping(format="messages", messages="conversations", split="fold"))
    assert pv.ok and pv.rows[0]["prompt"] == "2+2?" and pv.rows[0]["response"] == "4"
    assert pv.split_counts == {"test": 1}


def test_a_missing_column_and_an_oversized_upload_are_named(tmp_path):
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "a", "label": "b"}])
    pv = preview_source(path, ColumnMapping(prompt="prompt", response="response"))
    assert not pv.ok and "'prompt', 'response' not in the file" in pv.problems[0] and "text, label" in pv.problems[0]
    pv = preview_source(path, max_bytes=5)
    assert not pv.ok and "over the upload limit" in pv.problems[0]
