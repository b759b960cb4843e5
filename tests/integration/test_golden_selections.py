"""Golden selections on the tiny model: IGDS and every baseline pick the same examples, by content.

The fixture ``tests/golden/selections.json`` was written before the record model and the store were
restructured; it holds, per case, the selected examples (prompt as the model saw it, response) in rank
order with their scores. Regenerate only on purpose: ``IGDS_UPDATE_GOLDEN=1 pytest <this file>``.

One rule changed on purpose since: IGDS's per-feature p99 scales come from the pool being selected
from (they used to come from the whole pool, then the candidates were cut to the pool limit). So the
IGDS members and order must match as they are, and their scores must match once recomputed with the
whole pool's scales (the old rule); every baseline score must match as it is.
"""

import json
import math
import os
from pathlib import Path

import pytest

from igds.demo import build_tiny_workspace, tiny_model
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection
from igds.store import ActivationStore
from igds.workflow.stages import latest_effects, live_selection, pool_matrix, select_baseline, select_igds
from igds.workflow.workspace import Workspace

GOLDEN = Path(__file__).parents[1] / "golden" / "selections.json"
TASK = "summarization"
# (case name, method, pool setting, pool limit)
CASES = [
    ("igds-mixed", "igds", "mixed", 24),
    ("igds-task-only", "igds", "task-only", 24),
    *[(f"{m}-mixed", m, "mixed", 24) for m in ("random", "loss", "ifd", "zip", "full")],
]


def _user_message(row) -> str:
    """The user turn the model saw for a stored example: its content rendered by its task."""
    from igds.data.tasks import record_task

    return record_task(row["task"]).format_prompt(row["prompt"])


@pytest.fixture(scope="module")
def selections(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("golden")
    store = ActivationStore(tmp / "igds.duckdb")
    parts = build_tiny_workspace(store, n_train=1200, n_general=4000)
    ws = Workspace(store=store, model=tiny_model(), tokenizer=parts["tokenizer"], sae=parts["sae"],
                   model_key=parts["model_key"], sae_key=parts["sae_key"], site=parts["site"], sae_info={})
    effects = latest_effects(store, TASK)
    out = {}
    for name, method, pool, limit in CASES:
        cfg = SelectionConfig(method=method, ratio=0.5, pool_setting=pool, pool_limit=limit, seed=0)
        if method == "igds":
            sid = select_igds(store, parts["run_id"], TASK, effects, cfg, ResonanceConfig(), parts["sae_key"])
        else:
            sid = select_baseline(ws, TASK, cfg, max_length=96)
        info, members = load_selection(store, sid)
        out[name] = {"n_pool": int(info["n_pool"]), "features": info["lineage"].get("features"),
                     "members": [{"prompt": _user_message(r), "response": r["response"],
                                  "score": None if math.isnan(r["score"]) else float(r["score"])}
                                 for _, r in members.iterrows()]}
        if method == "igds":  # the same members scored with the old rule: scales of the whole pool
            res_cfg = ResonanceConfig()
            sp, _ = live_selection(store, parts["run_id"], TASK, effects, cfg, res_cfg, parts["sae_key"])
            assert sp.features == out[name]["features"]
            whole = pool_matrix(store, parts["run_id"], TASK, pool, 0, sp.matrix.features)
            old_scales = whole.scales(sp.features, res_cfg)
            old = sp.matrix.score(sp.features, res_cfg, sp.effects, old_scales).set_index("example_id").frs
            out[name]["old_rule_scores"] = [float(old[i]) for i in members.id]
            assert not sp.scales.n.equals(old_scales.n)  # the rule matters here
    return out


def test_selections_match_the_golden_fixture(selections):
    if os.environ.get("IGDS_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        fixture = {k: {f: v[f] for f in ("n_pool", "features", "members")} for k, v in selections.items()}
        GOLDEN.write_text(json.dumps(fixture, indent=1, ensure_ascii=False, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert set(selections) == set(golden)
    for name, want in golden.items():
        got = selections[name]
        assert got["n_pool"] == want["n_pool"], name
        assert got["features"] == want["features"], name
        assert len(got["members"]) == len(want["members"]), name
        scores = got.get("old_rule_scores", [m["score"] for m in got["members"]])
        for rank, (g, w, score) in enumerate(zip(got["members"], want["members"], scores, strict=True), start=1):
            assert (g["prompt"], g["response"]) == (w["prompt"], w["response"]), f"{name} rank {rank}"
            if w["score"] is None:
                assert score is None, f"{name} rank {rank}"
            else:
                assert score == pytest.approx(w["score"], rel=1e-5, abs=1e-6), f"{name} rank {rank}"
