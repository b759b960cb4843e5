"""Vetting with the keyboard alone in a real headless Chromium: 20 examples decided with a / r (and one u), then the
stored decisions, the selection the page shows and saves, and the export manifest agree; keypress → next example
rendered is timed (p50 and p95 under 1 s; printed with -s and written to the test's output folder)."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from igds.method.resonance import ResonanceConfig
from igds.method.selection import SelectionConfig, load_selection
from igds.method.vetting import apply_decisions
from igds.store import ActivationStore
from igds.workflow.explore import task_state
from igds.workflow.stages import latest_effects, live_selection
from scripts.browser import browser, chromium, serve
from tests.integration.test_vetting import vetting_store_file

# CI sets IGDS_REQUIRE_BROWSER=1 so a missing browser fails instead of skipping
pytestmark = pytest.mark.skipif(chromium() is None and os.environ.get("IGDS_REQUIRE_BROWSER") != "1",
                                reason="chromium not installed (.ci/run installs it)")
TASK = "summarization"
CURRENT = "(document.querySelector('.vet-current') || {dataset: {}}).dataset.example"


def test_vet_twenty_examples_with_keys_then_decisions_selection_and_manifest_agree(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(vetting_store_file(), home / "igds.duckdb")
    out = Path(os.environ.get("IGDS_SCREENSHOT_DIR", tmp_path))
    env = {"IGDS_HOME": str(home), "IGDS_STORE": str(home / "igds.duckdb"), "IGDS_USER": "ada"}
    expected: dict[str, str] = {}
    latencies: list[float] = []
    with serve(env) as url, browser() as b:
        b.open(url, expect="IGDS workspace", settle=1.0)
        b.open(f"{url}/selection", expect="Vet examples", settle=1.0)
        b.wait_for("!!(window.__igdsVetKeys && document.querySelector('.vet-current'))")
        b.idle()
        keys = ["a", "r"] * 5 + ["u"] + ["a", "r"] * 5 + ["a"]  # 21 decisions, one undone: 20 examples
        for key in keys:
            before = b.evaluate(CURRENT)
            if key == "u":
                undone = list(expected)[-1]
                expected.pop(undone)
                b.time_until(lambda k=key: b.press_key(k), f"{CURRENT} === {json.dumps(undone)}", timeout=20)
            else:
                expected[before] = "accept" if key == "a" else "reject"
                latencies.append(b.time_until(lambda k=key: b.press_key(k), f"{CURRENT} !== {json.dumps(before)}",
                                              timeout=20))
            b.idle()
        assert len(expected) == 20
        b.wait_text("20 / ")  # the progress line: 20 of the queue decided
        shown = b.text()
        b.screenshot(out / "vetting-keys.png")
        b.click_button("Save this selection")
        b.wait_text("Saved selection")
        b.idle()
        # the export page's newest selection is the one just saved
        b.open(f"{url}/finetune", expect="Export", settle=1.0)
        b.type_into("Export name", "vetted-keys")
        b.idle()
        b.click_button("Export")
        b.wait_text("Exported")

    store = ActivationStore(home / "igds.duckdb")
    sessions = store.query_df("SELECT session_id, user_name FROM vetting_sessions")
    assert list(sessions.user_name) == ["ada"]
    sid = sessions.session_id.iloc[0]
    d = store.session_decisions(sid)
    assert dict(zip(d.example_id, d.decision, strict=True)) == expected  # what the keys decided, the undo undone
    assert store.decision_history(sid).undone_seq.notna().sum() == 1

    state = task_state(store, TASK)
    sel_cfg = SelectionConfig(ratio=0.5, pool_setting="mixed")
    sp, _ = live_selection(store, state.extract_run, TASK, latest_effects(store, TASK), sel_cfg, ResonanceConfig(),
                           state.sae_key)
    vetted = apply_decisions(sp.scores, sel_cfg, sp.overrides, d)
    assert f"{len(vetted):,} / {len(sp.scores):,}" in shown and "20 decisions applied" in shown
    saved = store.vetting_session(sid)["selection_id"]
    info, members = load_selection(store, saved)
    assert list(members.id) == list(vetted.example_id)  # saved = shown = the library's re-ranking
    accepted = {e for e, v in expected.items() if v == "accept"}
    rejected = {e for e, v in expected.items() if v == "reject"}
    assert accepted <= set(members.id) and not rejected & set(members.id)

    manifest = json.loads((home / "exports" / "vetted-keys" / "manifest.json").read_text())
    vet = manifest["lineage"]["vetting"]
    assert manifest["lineage"]["selection_id"] == saved and vet["session_id"] == sid
    assert {x["example_id"]: x["decision"] for x in vet["decisions"]} == expected
    assert all(x["user"] == "ada" and x["time"] for x in vet["decisions"])
    assert manifest["n_examples"] == len(members)

    p50, p95 = float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))
    report = {"n": len(latencies), "p50_s": round(p50, 3), "p95_s": round(p95, 3),
              "max_s": round(max(latencies), 3), "latencies_s": [round(x, 3) for x in latencies]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "vetting-latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nkeypress → next example rendered over {len(latencies)} decisions: p50 {p50:.3f} s, p95 {p95:.3f} s, "
          f"max {max(latencies):.3f} s ({out / 'vetting-latency.json'})")
    # speed is measured and reported (README), not asserted: a loaded CI machine must not fail on it
    assert len(latencies) == len(keys) - keys.count("u") and all(x > 0 for x in latencies), report
