"""Export: round-trips in the record formats, training formats loaded by their consumers (datasets, TRL, the
LLaMA-Factory schema), manifest contents, path confinement, overwrite guard."""

from __future__ import annotations

import hashlib
import json

import pytest

from igds import __version__
from igds.data.records import Example
from igds.data.tasks import record_task, register_custom_task, unregister_task
from igds.training.export import (
    EXPORT_FORMATS,
    RECORD_FORMATS,
    TRAINING_FORMATS,
    ExportConfig,
    check_export_name,
    content_hash,
    default_export_dir,
    export_selection,
    read_export,
)

EXAMPLES = [
    Example("id-c", "math", "gsm", "train", "What is 2+3?", "#### 5", {"template": 7}),
    Example("id-a", "summarization", "debian", "train", "Summarize: ls lists files.", "list files", {}),
    Example("id-b", "general", "wiki", "train", "Tell me about Émile.", "Émile est né… 🙂", {"n": [1, 2]}),
    Example("id-d", "math", "gsm", "train", "What is 1+1?", "#### 2", {}),
]
LINEAGE = {"method": "igds", "model": "tiny-llama", "features": [3, 17], "ratio": 0.5, "seed": 0}


@pytest.mark.parametrize("fmt", RECORD_FORMATS)
def test_round_trip_keeps_examples_and_order(tmp_path, fmt):
    res = export_selection(EXAMPLES, LINEAGE, ExportConfig(name=f"sel-{fmt}", fmt=fmt), export_dir=tmp_path)
    assert res.path == (tmp_path / f"sel-{fmt}").resolve()
    back, manifest = read_export(res.path)
    assert back == EXAMPLES
    assert [ex.meta for ex in back] == [ex.meta for ex in EXAMPLES]  # meta is not part of Example equality
    assert manifest == res.manifest
    assert manifest["format"] == fmt
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))


def test_manifest_fields_and_composition(tmp_path):
    res = export_selection(EXAMPLES, LINEAGE, ExportConfig(name="m", fmt="jsonl"), export_dir=tmp_path)
    m = json.loads((res.path / "manifest.json").read_text())
    assert m["lineage"] == LINEAGE
    assert m["n_examples"] == 4
    assert m["composition"]["source"] == {"debian": 1, "gsm": 2, "wiki": 1}
    assert m["composition"]["task"] == {"general": 1, "math": 2, "summarization": 1}
    assert m["composition"]["split"] == {"train": 4}
    assert m["igds_version"] == __version__
    assert m["created_at"].endswith("+00:00")
    # content hash = sha256 over the sorted ids and the canonical lineage JSON
    h = hashlib.sha256()
    for eid in ["id-a", "id-b", "id-c", "id-d"]:
        h.update(eid.encode() + b"\n")
    h.update(b"\0" + json.dumps(LINEAGE, sort_keys=True).encode())
    assert m["content_hash"] == res.content_hash == h.hexdigest()
    (entry,) = m["files"]
    data = (res.path / "data.jsonl").read_bytes()
    assert entry == {"path": "data.jsonl", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    assert len(data.decode().splitlines()) == 4


def test_hf_manifest_lists_every_dataset_file(tmp_path):
    res = export_selection(EXAMPLES, LINEAGE, ExportConfig(name="h", fmt="hf"), export_dir=tmp_path)
    paths = {f["path"] for f in res.manifest["files"]}
    assert {p.relative_to(res.path).as_posix() for p in (res.path / "data").rglob("*") if p.is_file()} == paths
    assert any(p.endswith(".arrow") for p in paths)


def test_content_hash_ignores_example_order_but_not_lineage():
    ids = ["b", "a", "c"]
    assert content_hash(ids, LINEAGE) == content_hash(sorted(ids), dict(reversed(LINEAGE.items())))
    assert content_hash(ids, LINEAGE) != content_hash(ids, {**LINEAGE, "seed": 1})
    assert content_hash(ids, LINEAGE) != content_hash(ids[:2], LINEAGE)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "", "..", ".", "a\\b", ".hidden", "x/../../y", "a b"],
                         ids=["dotdot", "absolute", "separator", "empty", "parent", "dot", "backslash", "hidden",
                              "traversal", "space"])
def test_unsafe_names_are_rejected(tmp_path, name):
    with pytest.raises(ValueError, match="export name"):
        check_export_name(name)
    with pytest.raises(ValueError, match="export name"):
        ExportConfig(name=name)
    assert list(tmp_path.iterdir()) == []


def test_default_export_dir_is_under_the_workspace(tmp_path):
    res = export_selection(EXAMPLES[:1], {}, ExportConfig(name="d"))
    assert default_export_dir() == tmp_path / "igds_home" / "exports"
    assert res.path == (default_export_dir() / "d").resolve()


def test_overwrite_guard(tmp_path):
    cfg = ExportConfig(name="sel", fmt="jsonl")
    first = export_selection(EXAMPLES, LINEAGE, cfg, export_dir=tmp_path)
    assert not first.unchanged
    # Same content (other order, other format): allowed, reported as unchanged.
    again = export_selection(EXAMPLES[::-1], LINEAGE, ExportConfig(name="sel", fmt="parquet"), export_dir=tmp_path)
    assert again.unchanged and again.content_hash == first.content_hash
    assert read_export(again.path)[1]["format"] == "parquet"
    # Different content: refused, and the existing export is untouched.
    with pytest.raises(ValueError, match="already exists"):
        export_selection(EXAMPLES[:2], LINEAGE, cfg, export_dir=tmp_path)
    assert read_export(first.path)[0] == EXAMPLES[::-1]
    replaced = export_selection(EXAMPLES[:2], LINEAGE, ExportConfig(name="sel", overwrite=True), export_dir=tmp_path)
    assert read_export(replaced.path)[0] == EXAMPLES[:2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sel"]


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / "sel").mkdir()
    (tmp_path / "sel" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="no readable manifest"):
        export_selection(EXAMPLES, LINEAGE, ExportConfig(name="sel"), export_dir=tmp_path)
    assert (tmp_path / "sel" / "notes.txt").read_text() == "mine"


def test_tampered_export_is_detected(tmp_path):
    res = export_selection(EXAMPLES, LINEAGE, ExportConfig(name="t"), export_dir=tmp_path)
    with (res.path / "data.jsonl").open("a") as f:
        f.write("\n")
    with pytest.raises(ValueError, match="do not match the manifest"):
        read_export(res.path)


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="duplicate"):
        export_selection([EXAMPLES[0], EXAMPLES[0]], LINEAGE, ExportConfig(name="x"), export_dir=tmp_path)
    with pytest.raises(ValueError, match="JSON"):
        export_selection(EXAMPLES, {"path": tmp_path}, ExportConfig(name="x"), export_dir=tmp_path)
    with pytest.raises(ValueError, match="fmt"):
        ExportConfig(name="x", fmt="csv")
    assert set(EXPORT_FORMATS) == set(RECORD_FORMATS) | set(TRAINING_FORMATS)
    assert ExportConfig.from_dict(ExportConfig(name="x", fmt="hf").to_dict()) == ExportConfig(name="x", fmt="hf")
    assert not (tmp_path / "x").exists()


# ---- training formats ---------------------------------------------------------------------------------------

SYS_TASK = "export_sys_demo"
MULTI = Example(
    "id-m", "math", "chat", "train", "What is 2+3?", "#### 5",
    {"messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi"},
                  {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "What is 2+3?"}]},
)
SYS = Example("id-s", SYS_TASK, "mine", "train", "great film", "5", {})
MATH_INSTRUCTION = record_task("math").instruction


@pytest.fixture
def sys_task():
    spec = register_custom_task(SYS_TASK, metric="exact_match", instruction="Rate 1-5:", system="Be brief.",
                                overwrite=True)
    yield spec
    unregister_task(SYS_TASK)


def load_rows(path) -> list[dict]:
    """The exported data file as datasets' own json loader reads it."""
    import datasets

    return datasets.load_dataset("json", data_files=str(path), split="train").to_list()


def roles(turns: list[dict]) -> list[str]:
    return [t["role"] for t in turns]


def export(tmp_path, fmt, examples=EXAMPLES, name=None):
    name = name or f"t-{fmt}"
    return export_selection(examples, LINEAGE, ExportConfig(name=name, fmt=fmt), export_dir=tmp_path)


def test_messages_format(tmp_path, sys_task):
    res = export(tmp_path, "messages", [*EXAMPLES, SYS])
    rows = load_rows(res.path / "data.jsonl")
    assert len(rows) == 5 and set(rows[0]) == {"id", "messages"}
    assert [r["id"] for r in rows] == [*(ex.id for ex in EXAMPLES), "id-s"]
    assert rows[0]["messages"] == [{"role": "user", "content": f"{MATH_INSTRUCTION}\n\nWhat is 2+3?"},
                                   {"role": "assistant", "content": "#### 5"}]
    assert rows[2]["messages"][0] == {"role": "user", "content": "Tell me about Émile."}  # general: no instruction
    assert rows[4]["messages"] == [{"role": "system", "content": "Be brief."},
                                   {"role": "user", "content": "Rate 1-5:\n\ngreat film"},
                                   {"role": "assistant", "content": "5"}]
    assert res.manifest["format"] == "messages" and res.manifest["data"] == "data.jsonl"
    with pytest.raises(ValueError, match="fine-tuning file"):
        read_export(res.path)


def test_prompt_completion_format(tmp_path, sys_task):
    res = export(tmp_path, "prompt_completion", [EXAMPLES[0], SYS, MULTI])
    rows = load_rows(res.path / "data.jsonl")
    assert set(rows[0]) == {"id", "prompt", "completion"}
    assert rows[0]["prompt"] == [{"role": "user", "content": f"{MATH_INSTRUCTION}\n\nWhat is 2+3?"}]
    assert rows[0]["completion"] == [{"role": "assistant", "content": "#### 5"}]
    assert roles(rows[1]["prompt"]) == ["system", "user"]
    assert roles(rows[2]["prompt"]) == ["system", "user", "assistant", "user"]
    assert rows[2]["completion"] == [{"role": "assistant", "content": "#### 5"}]


def test_multi_turn_messages(tmp_path, sys_task):
    res = export(tmp_path, "messages", [MULTI, EXAMPLES[3]])
    rows = load_rows(res.path / "data.jsonl")
    assert rows[0]["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"{MATH_INSTRUCTION}\n\nHi"},  # the instruction opens the first user turn
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "#### 5"},
    ]
    assert roles(rows[1]["messages"]) == ["user", "assistant"]
    # The task's system prompt only where the conversation has none; same-role runs are joined.
    no_sys = Example("id-n", SYS_TASK, "chat", "train", "User: rate it ...", "4",
                     {"messages": [{"role": "user", "content": "rate it"}, {"role": "assistant", "content": "3"},
                                   {"role": "user", "content": "and this one?"}, {"role": "user", "content": "x"}]})
    own_sys = Example("id-o", SYS_TASK, "chat", "train", "great", "5", {"messages": MULTI.meta["messages"]})
    res = export(tmp_path, "messages", [no_sys, own_sys], name="m2")
    first, second = load_rows(res.path / "data.jsonl")
    assert first["messages"] == [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Rate 1-5:\n\nrate it"},
                                 {"role": "assistant", "content": "3"},
                                 {"role": "user", "content": "and this one?\n\nx"},
                                 {"role": "assistant", "content": "4"}]
    assert second["messages"][0] == {"role": "system", "content": "You are terse."}
    assert [m["role"] for m in second["messages"]].count("system") == 1


@pytest.mark.parametrize(("turns", "message"), [
    ([], "non-empty list"),
    ("hi", "non-empty list"),
    ([{"role": "user", "content": 3}], "turn 0: expected"),
    ([{"role": "tool", "content": "x"}], "turn 0: expected"),
    ([{"role": "assistant", "content": "a"}], "turn 0: the conversation must start with a user turn"),
    ([{"role": "system", "content": "s"}, {"role": "assistant", "content": "a"}], "turn 1: the conversation must"),
    ([{"role": "user", "content": "a"}, {"role": "system", "content": "s"}], "turn 1: a system turn is only allowed"),
    ([{"role": "system", "content": "s"}], "must end with the user turn the response answers, but its last turn is"),
    ([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}], "but its last turn is 'assistant'"),
])
def test_bad_meta_messages_are_refused(tmp_path, turns, message):
    bad = Example("id-x", "math", "chat", "train", "q", "a", {"messages": turns})
    with pytest.raises(ValueError, match=message) as err:
        export(tmp_path, "messages", [bad])
    assert "example 'id-x'" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


# LLaMA-Factory (not installable here): its documented dataset_info.json schema (data/README.md) and the rules
# its converters apply to rows (alpaca joins prompt and query with "\n"; sharegpt needs human/gpt turns alternating,
# human first, an even count).
LF_ENTRY_KEYS = {"hf_hub_url", "ms_hub_url", "script_url", "file_name", "file_sha1", "subset", "folder", "ranking",
                 "formatting", "columns", "tags", "split", "num_samples"}
LF_COLUMNS = {"alpaca": {"prompt", "query", "response", "history", "system", "tools", "images", "videos", "audios",
                         "chosen", "rejected", "kto_tag"},
              "sharegpt": {"messages", "system", "tools", "images", "videos", "audios", "chosen", "rejected",
                           "kto_tag"}}
LF_TAGS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"}


def check_llamafactory(res, fmt: str) -> tuple[dict, list[dict]]:
    info = json.loads((res.path / "dataset_info.json").read_text(encoding="utf-8"))
    (name,) = info
    entry = info[name]
    assert name == res.path.name
    assert set(entry) <= LF_ENTRY_KEYS
    assert entry["file_name"] == "data.json" and (res.path / entry["file_name"]).is_file()
    assert entry.get("formatting", "alpaca") == fmt
    assert set(entry["columns"]) <= LF_COLUMNS[fmt]
    assert set(entry.get("tags", {})) <= LF_TAGS
    raw = json.loads((res.path / "data.json").read_text(encoding="utf-8"))
    assert isinstance(raw, list)
    rows = load_rows(res.path / "data.json")
    assert len(rows) == len(raw)
    for row in raw:
        for column in entry["columns"].values():
            assert column in row, (column, row)
    # every written file (dataset_info.json too) is in the manifest with its sha256
    files = {f["path"]: f["sha256"] for f in res.manifest["files"]}
    assert files["dataset_info.json"] == hashlib.sha256((res.path / "dataset_info.json").read_bytes()).hexdigest()
    assert set(files) == {"data.json", "dataset_info.json"}
    assert res.manifest["dataset_info"] == "dataset_info.json"
    return entry, raw


def test_alpaca_format(tmp_path, sys_task):
    res = export(tmp_path, "alpaca", [*EXAMPLES, SYS], name="sel-alpaca")
    entry, rows = check_llamafactory(res, "alpaca")
    assert entry == {"file_name": "data.json", "columns": {"prompt": "instruction", "query": "input",
                                                          "response": "output", "system": "system"}}
    assert rows[0] == {"id": "id-c", "instruction": MATH_INSTRUCTION, "input": "What is 2+3?", "output": "#### 5",
                       "system": ""}
    assert rows[2]["instruction"] == "" and rows[2]["input"] == "Tell me about Émile."
    assert rows[4] == {"id": "id-s", "instruction": "Rate 1-5:", "input": "great film", "output": "5",
                       "system": "Be brief."}


def test_alpaca_multi_turn(tmp_path):
    res = export(tmp_path, "alpaca", [MULTI, EXAMPLES[0]])
    entry, rows = check_llamafactory(res, "alpaca")
    assert entry["columns"]["history"] == "history"
    assert rows[0] == {"id": "id-m", "instruction": "", "input": "What is 2+3?", "output": "#### 5",
                       "system": "You are terse.", "history": [[f"{MATH_INSTRUCTION}\n\nHi", "Hello!"]]}
    assert rows[1]["history"] == [] and rows[1]["instruction"] == MATH_INSTRUCTION
    # A conversation with one user turn is a plain alpaca row with the conversation's system prompt.
    one = Example("id-1", "math", "chat", "train", "q", "a", {"messages": [{"role": "system", "content": "S"},
                                                                          {"role": "user", "content": "q"}]})
    (row,) = json.loads((export(tmp_path, "alpaca", [one], name="one").path / "data.json").read_text())
    assert row == {"id": "id-1", "instruction": MATH_INSTRUCTION, "input": "q", "output": "a", "system": "S"}


def test_sharegpt_format(tmp_path, sys_task):
    res = export(tmp_path, "sharegpt", [*EXAMPLES, SYS, MULTI])
    entry, rows = check_llamafactory(res, "sharegpt")
    assert entry == {"file_name": "data.json", "formatting": "sharegpt",
                     "columns": {"messages": "conversations", "system": "system"},
                     "tags": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt"}}
    tags = entry["tags"]
    for row in rows:
        turns = row["conversations"]
        assert len(turns) % 2 == 0
        assert [t[tags["role_tag"]] for t in turns] == [tags["user_tag"], tags["assistant_tag"]] * (len(turns) // 2)
    assert rows[0] == {"id": "id-c", "system": "", "conversations": [
        {"from": "human", "value": f"{MATH_INSTRUCTION}\n\nWhat is 2+3?"}, {"from": "gpt", "value": "#### 5"}]}
    assert rows[4]["system"] == "Be brief."
    assert rows[5]["system"] == "You are terse."
    assert rows[5]["conversations"] == [
        {"from": "human", "value": f"{MATH_INSTRUCTION}\n\nHi"}, {"from": "gpt", "value": "Hello!"},
        {"from": "human", "value": "What is 2+3?"}, {"from": "gpt", "value": "#### 5"}]


def test_empty_training_exports(tmp_path):
    res = export(tmp_path, "sharegpt", [])
    assert json.loads((res.path / "data.json").read_text()) == []


def test_trl_recognises_the_formats(tmp_path, sys_task):
    data_utils = pytest.importorskip("trl.data_utils")
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
                                  unk_token="[UNK]")
    tok.chat_template = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}"
                         "{% if add_generation_prompt %}<assistant>{% endif %}")
    examples = [EXAMPLES[0], SYS, MULTI]
    msgs = load_rows(export(tmp_path, "messages", examples).path / "data.jsonl")
    pc = load_rows(export(tmp_path, "prompt_completion", examples).path / "data.jsonl")
    for row in msgs + pc:
        assert data_utils.is_conversational(row)
    # TRL's own rendering (what SFTTrainer does to each row) gives the prompt and the completion split at the answer.
    out = data_utils.apply_chat_template({"prompt": pc[1]["prompt"], "completion": pc[1]["completion"]}, tok)
    assert out == {"prompt": "<system>Be brief.</system><user>Rate 1-5:\n\ngreat film</user><assistant>",
                   "completion": "5</assistant>"}
    text = data_utils.apply_chat_template({"messages": msgs[2]["messages"]}, tok)["text"]
    assert text.startswith("<system>You are terse.</system><user>") and text.endswith("<assistant>#### 5</assistant>")
    # TRL recognises ShareGPT's from/value layout too (it renames the keys but keeps the human/gpt role names, so
    # TRL users take the messages format).
    share = load_rows(export(tmp_path, "sharegpt", examples).path / "data.json")
    assert all(data_utils.is_conversational_from_value(row) for row in share)
