"""Export page: an export is named from the selection it holds (never the one viewed before), and a folder holding
another selection's export is refused with a message naming both; the same selection again is idempotent."""

import json
import os
from pathlib import Path

import pytest

from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection
from igds.training.export import ExportConfig, default_export_name, export_selection
from igds.workflow.explore import task_state
from igds.workflow.stages import latest_effects, select_igds
from tests.helpers import app_page
from tests.integration.test_vetting import TASK


@pytest.fixture
def two_selections(vetting_store):
    """A store with two selections of one name (ratios 0.5 and 0.25): ``(store, a, b)``."""
    store = vetting_store
    state = task_state(store, TASK)
    effects = latest_effects(store, TASK)
    a, b = (select_igds(store, state.extract_run, TASK, effects, SelectionConfig(ratio=r), ResonanceConfig(),
                        state.sae_key, name="mine") for r in (0.5, 0.25))
    return store, a, b


def export_page():
    return app_page("pages/5_finetune.py")


def manifest(name: str) -> dict:
    return json.loads((Path(os.environ["IGDS_HOME"]) / "exports" / name / "manifest.json").read_text())


def test_exporting_b_after_viewing_a_writes_b_and_another_selections_folder_is_refused(two_selections):
    store, a, b = two_selections
    n_a, n_b = (len(load_selection(store, s)[1]) for s in (a, b))
    assert n_a != n_b
    at = export_page()
    at.selectbox(key="ft_selection").set_value(a).run()
    name_a = at.text_input(key="exp_name").value
    assert name_a == default_export_name("mine", a)
    at.button(key="exp_go").click().run()
    assert not at.exception and a in at.success[0].value
    first_a = manifest(name_a)

    # switching the selection renames the export: B's folder and manifest, never A's name
    at.selectbox(key="ft_selection").set_value(b).run()
    name_b = at.text_input(key="exp_name").value
    assert name_b == default_export_name("mine", b) != name_a
    at.button(key="exp_go").click().run()
    assert not at.exception and not at.error
    got = manifest(name_b)
    assert got["lineage"]["selection_id"] == b and got["n_examples"] == n_b
    assert manifest(name_a) == first_a  # A's export untouched

    # B into A's folder: refused, naming both selections; A's export untouched
    at.text_input(key="exp_name").set_value(name_a).run()
    at.button(key="exp_go").click().run()
    assert not at.success and len(at.error) == 1
    msg = at.error[0].value
    assert f"holds selection {a}" in msg and f"not selection {b}" in msg and "choose another name" in msg
    assert manifest(name_a) == first_a

    # the same selection again: idempotent (rewritten, said so)
    at.text_input(key="exp_name").set_value(name_b).run()
    at.button(key="exp_go").click().run()
    assert not at.error and "rewritten" in at.success[0].value
    again = manifest(name_b)
    assert again["content_hash"] == got["content_hash"] and again["lineage"]["selection_id"] == b


def test_export_page_labels_composition_and_lineage(two_selections):
    _, _, b = two_selections
    at = export_page()
    at.selectbox(key="ft_selection").set_value(b).run()
    captions = [c.value for c in at.caption]
    assert any(c.startswith("**Composition** of selection") and b in c for c in captions)
    assert any(c.startswith("**Lineage**") for c in captions)
    assert len(at.json) == 2


def test_library_never_replaces_another_selections_export(tmp_path):
    from tests.unit.test_export import EXAMPLES

    lin_a, lin_b = {"selection_id": "aaaa1111", "name": "mine"}, {"selection_id": "bbbb2222", "name": "mine"}
    export_selection(EXAMPLES, lin_a, ExportConfig(name="x"), tmp_path)
    for overwrite in (False, True):  # not even with overwrite
        with pytest.raises(ValueError, match=r"holds selection aaaa1111 \('mine'\), not selection bbbb2222.*"
                                             r"'mine-bbbb2222'"):
            export_selection(EXAMPLES, lin_b, ExportConfig(name="x", overwrite=overwrite), tmp_path)
    assert json.loads((tmp_path / "x" / "manifest.json").read_text())["lineage"] == lin_a
    # the same selection with other content: refused without overwrite, replaced with it
    with pytest.raises(ValueError, match="the same selection, with other content"):
        export_selection(EXAMPLES[:1], lin_a, ExportConfig(name="x"), tmp_path)
    assert export_selection(EXAMPLES[:1], lin_a, ExportConfig(name="x", overwrite=True), tmp_path).n_examples == 1


@pytest.mark.parametrize(("name", "want"), [("igds-summarization-0.5-vetted", "igds-summarization-0.5-vetted-3f9c0a1b"),
                                            ("../my sel/..", "my-sel-3f9c0a1b"), ("...", "3f9c0a1b"),
                                            ("a" * 300, "a" * 119 + "-3f9c0a1b")])
def test_default_export_name_is_a_safe_folder_name_with_the_selection_id(name, want):
    assert default_export_name(name, "3f9c0a1b22334455") == want
