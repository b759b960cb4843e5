"""The noisy pool on the tiny demo workspace: extracted like any pool, and every method's selection over it is the
same whether the corruption labels are there, permuted or deleted (no method can read them)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from igds.demo import DEMO_INTERVENTION, build_tiny_workspace
from igds.method.arms import RANDOM_FEATURES, RECALL_ONLY
from igds.method.config import ExtractConfig
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection
from igds.store import ActivationStore
from igds.workflow.stages import latest_effects, select_baseline, select_igds
from igds.workflow.workspace import extract_tasks
from tests.helpers import tiny_workspace

TASK = "summarization"
ECFG = ExtractConfig(max_length=96, shard_size=256)  # the tiny workspace's extraction
SEL = SelectionConfig(ratio=0.5, pool_setting="noisy", pool_limit=0, seed=0)
BASELINE_METHODS = ("random", "loss", "ifd", "zip", "longest", "shortest")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    store = ActivationStore(tmp_path_factory.mktemp("noisy") / "igds.duckdb")
    parts = build_tiny_workspace(store, n_candidates=4,
                                 interventions=dataclasses.replace(DEMO_INTERVENTION, max_length=512))
    ws = tiny_workspace(store, parts)
    extract_tasks(ws, [TASK], ECFG, "noisy")
    return SimpleNamespace(store=store, ws=ws, parts=parts)


def selections(tiny) -> dict[str, list[str]]:
    """Every method's selection of the noisy pool, stored again from scratch."""
    from igds.workflow.arms import select_arm

    ws, store = tiny.ws, tiny.store
    ids = {"igds": select_igds(store, tiny.parts["run_id"], TASK, latest_effects(store, TASK), SEL,
                               ResonanceConfig(), sae_key=ws.sae_key)}
    for m in BASELINE_METHODS:
        ids[m] = select_baseline(ws, TASK, dataclasses.replace(SEL, method=m), extract_cfg=ECFG)
    for arm in (RECALL_ONLY, RANDOM_FEATURES):
        ids[arm] = select_arm(ws, TASK, arm, SEL, ResonanceConfig(), extract_cfg=ECFG)
    return {m: list(load_selection(store, sid)[1].id) for m, sid in ids.items()}  # members in rank order


def test_every_selection_ignores_the_corruption_labels(tiny):
    store = tiny.store
    labels = store.corruption_labels(TASK)
    train = store.task_examples(TASK, "train")
    assert len(labels) == round(0.3 * len(train)) and labels.kind.nunique() == 2
    before = selections(tiny)
    noisy = set(labels.example_id)
    # the pool holds corrupted items and the methods pick some (else the check below would be empty)
    assert any(set(members) & noisy for members in before.values())
    with store.transaction() as con:  # permute the labels over the corrupted items
        con.execute("UPDATE corruption_labels SET kind = CASE kind WHEN 'swapped' THEN 'cut_synopsis' "
                    "ELSE 'swapped' END WHERE task = ?", [TASK])
    assert selections(tiny) == before
    with store.transaction() as con:
        con.execute("DELETE FROM corruption_labels WHERE task = ?", [TASK])
    assert store.corruption_labels(TASK).empty
    assert selections(tiny) == before
