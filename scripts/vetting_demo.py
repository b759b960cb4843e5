"""Vet with the keyboard on a workspace in headless Chromium: time keypress → next example rendered, then take the
vetting queue's screenshot (docs/screenshots/vetting.png).

Runs on a copy of the workspace's store (the decisions it makes stay out of the workspace); the pool's token
highlights should be stored first (the ``highlights`` job, or the end of ``igds bootstrap``).

Usage: python scripts/vetting_demo.py [--store cache/igds.duckdb] [--keys 20] [--out docs/screenshots/vetting.png]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scripts.browser import browser, serve  # noqa: E402

CURRENT = "(document.querySelector('.vet-current') || {dataset: {}}).dataset.example"


def vet_with_keys(b, n: int) -> list[float]:
    """Decide ``n`` examples with a / r alternately; seconds from each key press to the next example rendered."""
    out = []
    for i in range(n):
        before = b.evaluate(CURRENT)
        key = "a" if i % 2 == 0 else "r"
        out.append(b.time_until(lambda k=key: b.press_key(k), f"{CURRENT} !== {json.dumps(before)}", timeout=60))
        b.idle(60)
    return out


def main() -> None:
    from igds import settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--store", default=str(settings.store_path()))
    ap.add_argument("--keys", type=int, default=20, help="examples to decide with the keyboard")
    ap.add_argument("--out", default="docs/screenshots/vetting.png")
    ap.add_argument("--height", type=int, default=1500, help="viewport height of the screenshot")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="igds-vetting-demo-"))
    store = tmp / "igds.duckdb"
    shutil.copy(args.store, store)
    try:
        with serve({"IGDS_STORE": str(store), "IGDS_USER": "demo"}, timeout=120) as url, browser() as b:
            b.open(url, expect="IGDS workspace", timeout=180)
            b.open(f"{url}/selection", expect="Vet examples", timeout=300)
            b.wait_for("!!(window.__igdsVetKeys && document.querySelector('.vet-current'))", 120)
            b.idle(120)
            lat = vet_with_keys(b, args.keys)
            q = statistics.quantiles(lat, n=20, method="inclusive")
            print(json.dumps({"n": len(lat), "p50_s": round(statistics.median(lat), 3), "p95_s": round(q[18], 3),
                              "max_s": round(max(lat), 3), "latencies_s": [round(x, 3) for x in lat]}))
            b.call("Emulation.setDeviceMetricsOverride", width=1400, height=args.height, deviceScaleFactor=1,
                   mobile=False)
            b.evaluate("[...document.querySelectorAll('h3')].find(h => h.innerText.trim() === 'Vet examples')"
                       ".scrollIntoView({block: 'start'})")
            b.settle(1.0, 60)
            print(b.screenshot(Path(args.out)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
