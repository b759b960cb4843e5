"""Export: round-trips in every format, manifest contents, path confinement, overwrite guard."""

from __future__ import annotations

import hashlib
import json

import pytest

from igds import __version__
from igds.data.records import Example
from igds.training.export import (
    EXPORT_FORMATS,
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


@pytest.mark.parametrize("fmt", EXPORT_FORMATS)
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
    assert ExportConfig.from_dict(ExportConfig(name="x", fmt="hf").to_dict()) == ExportConfig(name="x", fmt="hf")
    assert not (tmp_path / "x").exists()
