"""The grid's controls as stored selections on the tiny demo workspace: IGDS and Random at one token budget,
length-stratified FRS quartiles, the task-first oracle in the mixed pool; and the cells a grid with controls plans."""

from __future__ import annotations

import dataclasses

import pytest

from igds.demo import build_tiny_workspace
from igds.experiment.grid import STRATIFIED_METHODS, TASK_FIRST, TOKEN_METHODS, ExperimentConfig, plan_cells
from igds.method.config import ExtractConfig
from igds.method.controls import length_strata, token_budget
from igds.method.recall import load_recall
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection, set_feature_override
from igds.store import ActivationStore
from igds.workflow.stages import latest_effects, select_baseline, select_igds, select_task_first, selection_pool
from tests.helpers import tiny_workspace

TASK = "summarization"
ECFG = ExtractConfig(max_length=96, shard_size=256)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    store = ActivationStore(tmp_path_factory.mktemp("controls") / "igds.duckdb")
    parts = build_tiny_workspace(store, n_train=120, n_general=120)
    pin = load_recall(store, parts["recall_id"]).candidates[0]
    set_feature_override(store, TASK, parts["sae_key"], pin, "pin")  # something to score with
    ws = tiny_workspace(store, parts)
    return ws, parts


def members(ws, sid):
    return load_selection(ws.store, sid)[1]


def test_igds_and_random_at_one_token_budget(tiny):
    ws, parts = tiny
    sel = SelectionConfig(ratio=0.5, pool_setting="task-only", pool_limit=0)
    pool = selection_pool(ws.store, TASK, sel, parts["run_id"])
    budget = token_budget(pool, 0.5)
    tokens = dict(zip(pool.example_id, pool.n_tokens, strict=True))
    cut = dataclasses.replace(sel, token_budget=budget)
    igds = members(ws, select_igds(ws.store, parts["run_id"], TASK, latest_effects(ws.store, TASK), cut,
                                   ResonanceConfig(), ws.sae_key))
    rnd = members(ws, select_baseline(ws, TASK, dataclasses.replace(cut, method="random"), extract_cfg=ECFG))
    for m in (igds, rnd):
        used = sum(tokens[i] for i in m.id)
        assert budget * 0.8 < used <= budget  # filled up to the budget, never past it
    assert len(igds) != len(rnd) or set(igds.id) != set(rnd.id)


def test_length_stratified_quartiles_share_one_length_mix(tiny):
    ws, parts = tiny
    sel = SelectionConfig(ratio=0.25, pool_setting="task-only", pool_limit=0)
    pool = selection_pool(ws.store, TASK, sel, parts["run_id"])
    strata = length_strata(pool).set_axis(pool.example_id)
    blocks = [members(ws, select_igds(ws.store, parts["run_id"], TASK, latest_effects(ws.store, TASK), sel,
                                      ResonanceConfig(), ws.sae_key, quartile=q, stratified=True))
              for q in range(1, 5)]
    ids = [set(b.id) for b in blocks]
    assert len({len(b) for b in blocks}) == 1 and sum(map(len, ids)) == len(set().union(*ids))
    mixes = [strata[list(b.id)].value_counts().sort_index().tolist() for b in blocks]
    assert all(m == mixes[0] for m in mixes) and len(mixes[0]) == 4
    info = load_selection(ws.store, select_igds(ws.store, parts["run_id"], TASK, latest_effects(ws.store, TASK), sel,
                                                ResonanceConfig(), ws.sae_key, quartile=1, stratified=True))[0]
    assert info["method"] == "igds-sq1" and info["lineage"]["stratified"] is True


def test_task_first_takes_the_task_before_anything_else(tiny):
    ws, _ = tiny
    sel = SelectionConfig(ratio=0.3, pool_setting="mixed", pool_limit=0, seed=2)
    m = members(ws, select_task_first(ws, TASK, sel, extract_cfg=ECFG))
    pool = selection_pool(ws.store, TASK, sel)
    n_task = int((pool.task == TASK).sum())
    assert len(m) == min(n_task, -(-len(pool) * 3 // 10)) and (m.task == TASK).all()


def test_a_grid_with_controls_plans_them():
    cfg = ExperimentConfig(tasks=("summarization",), pool_settings=("task-only", "mixed"), seeds=(0,),
                           baselines=("random",), controls=True)
    methods = {(c.pool_setting, c.method, c.ratio) for c in plan_cells(cfg)}
    assert {("task-only", m, 0.5) for m in TOKEN_METHODS} <= methods
    assert {("task-only", m, 0.25) for m in STRATIFIED_METHODS} <= methods
    assert ("mixed", TASK_FIRST, 0.5) in methods
    off = {c.method for c in plan_cells(dataclasses.replace(cfg, controls=False))}
    assert not off & {*TOKEN_METHODS, *STRATIFIED_METHODS, TASK_FIRST}
    assert "controls" not in dataclasses.replace(cfg, controls=False).to_dict()  # old experiment ids stay
