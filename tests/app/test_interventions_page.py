"""Interventions page: every measured feature's α = 1 effect is drawn against the null (its quantile line and
its distribution), the swept features get dose–response curves, and the edit mode and positions are shown."""

import base64
import json

import numpy as np

from igds.workflow.stages import latest_effects
from tests.app import test_pages
from tests.app.test_pages import app

# the demo workspace fixtures of the page tests
demo_store_file, demo_store = test_pages.demo_store_file, test_pages.demo_store

TASK = "summarization"


def chart(at, key: str) -> dict:
    """The plotly figure of the chart with ``key``."""
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart") if c.proto.id and key in c.proto.id]
    assert len(specs) == 1, key
    return specs[0]


def values(x) -> list:
    """A plotly array as a list (plotly writes numeric arrays as base64 ``bdata``)."""
    if isinstance(x, dict) and "bdata" in x:
        return np.frombuffer(base64.b64decode(x["bdata"]), dtype=x["dtype"]).tolist()
    return list(x)


def test_effects_are_drawn_against_the_null_band(demo_store):
    res = latest_effects(demo_store, TASK)
    assert len(res.null) > 0
    at = app("pages/3_interventions.py")
    fig = chart(at, "int_bars")
    bars = [t for t in fig["data"] if t["type"] == "bar"]
    boxes = [t for t in fig["data"] if t["type"] == "box"]
    assert len(bars) == 1 and len(values(bars[0]["x"])) == len(res.amplification)  # untestable: a bar of NaN
    # the null's own effects, every one of them, as boxes with their points
    assert sorted(y for b in boxes for y in values(b["y"])) == sorted(res.null.effect.tolist())
    line = [s for s in fig["layout"]["shapes"] if s.get("type") == "line"]
    assert len(line) == 1 and line[0]["y0"] == res.null_cut
    assert any(f"{res.null_cut:+.4f}" in a["text"] for a in fig["layout"]["annotations"])
    shown = next(m for m in at.metric if m.label.startswith("fitted null p95")).value
    assert shown == f"{res.null_cut:+.4f} nats"
    assert any("scale" in c.value and "content" in c.value for c in at.caption)
    assert any(c.value.startswith("Power: ") and "dev items" in c.value for c in at.caption)


def test_dose_response_shows_the_swept_features(demo_store):
    res = latest_effects(demo_store, TASK)
    swept = set(res.dose_response.feature)
    assert swept  # the demo sweeps its top candidates over α ∈ {0.5, 1, 2}
    fig = chart(app("pages/3_interventions.py"), "int_dose")
    assert {t["name"] for t in fig["data"]} == {f"f{f}" for f in swept}
    assert all(sorted(values(t["x"])) == [0.5, 1.0, 2.0] for t in fig["data"])
