"""Screenshots of every dashboard page over the current workspace, for the README and docs, and of a few views
opened through URL state (a feature panel, a selection diff, the text lens on a text).

Usage: python scripts/screenshots.py [--out docs/screenshots] [--pages results feature ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from igds.ui.pages import PAGES  # noqa: E402
from scripts.browser import browser, serve  # noqa: E402

TASK = "summarization"
LENS_TEXT = ("Summarize this software package description in one short line:\n\n"
             "GNU Emacs is an extensible, customizable, free text editor and more.")


READY = {"features": "Examples by activation quantile", "interventions": "Mean amplification effect"}
"""Text a page shows once its content is drawn, where its title comes long before it."""


def views(task: str = TASK) -> list[tuple[str, str, str]]:
    """``(name, url path with query, text the view shows when ready)`` of the views opened through URL state, on
    the workspace's own data: the first validated feature with an example from its activation quantiles, the
    task's first Random selection against its first IGDS one (mixed pool when there is one), and the text lens on a
    package description."""
    from igds.store import ActivationStore
    from igds.workflow.compare import selection_options
    from igds.workflow.explore import quantile_examples, task_state
    from igds.workflow.stages import latest_effects

    store = ActivationStore()
    state = task_state(store, task)
    out = []
    kept = (latest_effects(store, task).kept if state.n_measured else []) or list(state.pinned)  # or a pinned one
    if kept:
        q = quantile_examples(store, state.extract_run, kept[0])
        link = {"task": task, "feature": kept[0], **({"example": q.example_id.iloc[2]} if len(q) > 2 else {})}
        out.append(("feature", f"features?{urlencode(link)}", "Examples by activation quantile"))
    sels = selection_options(store, task).iloc[::-1]  # oldest first: the first IGDS and Random of the workspace
    sels = sels.sort_values("pool_setting", kind="stable")  # the mixed pool first (task and general data)
    igds, rnd = sels[sels.method == "igds"].selection_id, sels[sels.method == "random"].selection_id
    if len(igds) and len(rnd):
        link = {"task": task, "selection": rnd.iloc[0], "compare": igds.iloc[0]}
        out.append(("compare", f"compare?{urlencode(link)}", "Validated features covered"))
    out.append(("lens", f"lens?{urlencode({'task': task, 'text': LENS_TEXT})}", "Features firing most on this text"))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="docs/screenshots")
    ap.add_argument("--pages", nargs="+", default=None,
                    help="page paths or view names (feature, compare, lens) to capture (default: all)")
    ap.add_argument("--height", type=int, default=0, help="viewport height in pixels (0: the browser's)")
    args = ap.parse_args()
    out = Path(args.out)
    named = {name: (path, expect) for name, path, expect in views()}
    with serve() as url, browser() as b:
        if args.height:  # Streamlit scrolls inside the page, so a tall page needs a tall viewport
            b.call("Emulation.setDeviceMetricsOverride", width=1400, height=args.height, deviceScaleFactor=1,
                   mobile=False)
        b.open(url, expect="IGDS workspace")
        shots = [(path, path, READY.get(path, title)) for _, title, path, _ in PAGES if path not in named]
        shots += [(name, path, expect) for name, (path, expect) in named.items()]
        for name, path, expect in shots:
            if args.pages and name not in args.pages:
                continue
            html = b.open(f"{url}/{path}", expect=expect, timeout=300)
            if 'data-testid="stException"' in html:
                raise SystemExit(f"{path}: the page shows an exception")
            print(b.screenshot(out / f"{name}.png"))


if __name__ == "__main__":
    main()
