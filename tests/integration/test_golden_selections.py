"""Golden selections on the tiny model: IGDS and every baseline pick the same examples, by content.

The fixture ``tests/golden/selections.json`` holds, per case, the selected examples (prompt as the model
saw it, response) in rank order with their scores. It was last regenerated on purpose for the validity
changes (issue 13): content-scope extraction, token-lift recall, interventions against a null, and the
general ``reference`` split leaving the mixed pool — each of which changes what is selected; then for
issue 14, where IFD's prompt-free NLL came to condition on the assistant header (``ifd-mixed``) and the
Longest and Shortest baselines were added (ranking by the extraction's content tokens). Any other change to
it is a regression. Regenerate only on purpose: ``IGDS_UPDATE_GOLDEN=1 pytest <this file>``.
"""

import json
import math
import os
from pathlib import Path

import pytest

from igds.demo import build_tiny_workspace, tiny_model
from igds.method.config import ExtractConfig
from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection
from igds.store import ActivationStore
from igds.workflow.stages import latest_effects, select_baseline, select_igds
from tests.helpers import tiny_workspace

GOLDEN = Path(__file__).parents[1] / "golden" / "selections.json"
TASK = "summarization"
# (case name, method, pool setting, pool limit)
CASES = [
    ("igds-mixed", "igds", "mixed", 24),
    ("igds-task-only", "igds", "task-only", 24),
    *[(f"{m}-mixed", m, "mixed", 24) for m in ("random", "loss", "ifd", "zip", "longest", "shortest", "full")],
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
    ws = tiny_workspace(store, parts, tiny_model())
    effects = latest_effects(store, TASK)
    out = {}
    for name, method, pool, limit in CASES:
        cfg = SelectionConfig(method=method, ratio=0.5, pool_setting=pool, pool_limit=limit, seed=0)
        if method == "igds":
            sid = select_igds(store, parts["run_id"], TASK, effects, cfg, ResonanceConfig(), parts["sae_key"])
        else:
            sid = select_baseline(ws, TASK, cfg,
                                  extract_cfg=ExtractConfig(max_length=96, shard_size=256))
        info, members = load_selection(store, sid)
        out[name] = {"n_pool": int(info["n_pool"]), "features": info["lineage"].get("features"),
                     "members": [{"prompt": _user_message(r), "response": r["response"],
                                  "score": None if math.isnan(r["score"]) else float(r["score"])}
                                 for _, r in members.iterrows()]}
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
        scores = [m["score"] for m in got["members"]]
        for rank, (g, w, score) in enumerate(zip(got["members"], want["members"], scores, strict=True), start=1):
            assert (g["prompt"], g["response"]) == (w["prompt"], w["response"]), f"{name} rank {rank}"
            if w["score"] is None:
                assert score is None, f"{name} rank {rank}"
            else:
                assert score == pytest.approx(w["score"], rel=1e-5, abs=1e-6), f"{name} rank {rank}"
