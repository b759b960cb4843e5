"""Screenshots of every dashboard page over the current workspace, for the README and docs.

Usage: python scripts/screenshots.py [--out docs/screenshots] [--pages results ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from igds.ui.pages import PAGES  # noqa: E402
from scripts.browser import browser, serve  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--pages", nargs="+", default=None, help="page paths to capture (default: all)")
    ap.add_argument("--height", type=int, default=0, help="viewport height in pixels (0: the browser's)")
    args = ap.parse_args()
    out = Path(args.out)
    with serve() as url, browser() as b:
        if args.height:  # Streamlit scrolls inside the page, so a tall page needs a tall viewport
            b.call("Emulation.setDeviceMetricsOverride", width=1400, height=args.height, deviceScaleFactor=1,
                   mobile=False)
        b.open(url, expect="IGDS workspace")
        for _, title, path, _ in PAGES:
            if args.pages and path not in args.pages:
                continue
            html = b.open(f"{url}/{path}", expect=title, timeout=180)
            if 'data-testid="stException"' in html:
                raise SystemExit(f"{path}: the page shows an exception")
            print(b.screenshot(out / f"{path}.png"))


if __name__ == "__main__":
    main()
