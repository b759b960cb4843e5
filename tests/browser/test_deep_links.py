"""Deep links in a real headless Chromium, one app server for all pages: every page opens at its own path (no "Page
not found", the default page included, and through app.py even as the server's first request), and a link with an
unknown or a malformed id names the value in a message while the page shows nothing (and enables no action) for
another value in its place."""

import os
import time
from urllib.parse import quote

import pytest

from igds.store import ActivationStore
from igds.ui.pages import PAGES
from scripts.browser import browser, chromium, serve

# CI sets IGDS_REQUIRE_BROWSER=1 so a missing browser fails instead of skipping
pytestmark = pytest.mark.skipif(chromium() is None and os.environ.get("IGDS_REQUIRE_BROWSER") != "1",
                                reason="chromium not installed (.ci/run installs it)")
TASK = "summarization"
HEADINGS = {"overview": "IGDS workspace", "data": "Data, tasks, model and SAE", "compare": "Compare selections ·"}
MALFORMED = "<b>x</b>`y`"  # shown literally or not at all: as markup it would read "xy"
# the id each page reads from a link (every page reads ?task=), with a marker of what it would show for another value
IDS = {
    "features": ("feature", "999999", "Top-activating contexts"),
    "lens": ("example", "no-such-example", "tokens through"),
    "compare": ("selection", "no-such-selection", "Jaccard"),
    "results": ("run", "no-such-run", "Experiment grid"),
}
NOT_FOUND = "[...document.querySelectorAll('[role=dialog]')].some(d => d.innerText.includes('Page not found'))"


def heading(path: str, title: str) -> str:
    return HEADINGS.get(path, f"{title} ·")


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory):
    import torch

    from igds.demo import build_tiny_workspace

    torch.set_num_threads(1)
    home = tmp_path_factory.mktemp("deep_links_home")
    build_tiny_workspace(ActivationStore(home / "igds.duckdb"), with_runs=True)  # selections and fine-tunes too
    return home


def visit(b, url: str, expect: str) -> str:
    """Open ``url`` as a typed link, wait for ``expect`` and the app to be idle; return the page's text."""
    b.open(url, expect=expect, settle=0.5)
    b.idle()
    text = b.text()
    assert not b.evaluate(NOT_FOUND) and "Page not found" not in text, f"{url}: Page not found"
    assert not b.evaluate("!!document.querySelector('[data-testid=stException]')"), f"{url}: exception"
    return text


def test_every_page_by_its_path_and_by_links_with_unknown_and_malformed_ids(demo_home):
    env = {"IGDS_HOME": str(demo_home), "IGDS_STORE": str(demo_home / "igds.duckdb")}
    timings = {}
    with serve(env) as url, browser() as b:
        # the server's first request is a deep link: it runs through app.py (task picker, link checks), not the
        # page file alone as Streamlit's legacy pages/ mode would
        text = visit(b, f"{url}/compare?task={TASK}&selection=no-such-selection", "no-such-selection")
        assert "Task" in text and "names no selection" in text and "Jaccard" not in text
        nav = b.evaluate("[...document.querySelectorAll('[data-testid=stSidebarNavLink]')].map(a => a.href)")
        assert sorted(nav) == sorted(f"{url}/{path}" for _, _, path, _ in PAGES), nav  # every page by its own path
        text = visit(b, url + "/", HEADINGS["overview"])  # the default page opens Overview at its own path
        assert b.evaluate("location.pathname") == "/overview" and "Task" in text
        for _, title, path, _ in PAGES:
            t0 = time.perf_counter()
            text = visit(b, f"{url}/{path}", heading(path, title))
            assert b.evaluate("location.pathname") == f"/{path}" and heading(path, title) in text

            key, unknown, marker = IDS.get(path, ("task", "no-such-task", heading(path, title)))
            for value in (unknown, MALFORMED):
                shown = f"{int(value):,}" if value.isdigit() else value  # a feature number reads 999,999
                link = f"{url}/{path}?task={TASK if key != 'task' else quote(value)}"
                link += f"&{key}={quote(value)}" if key != "task" else ""
                text = visit(b, link, shown)
                assert shown in text, f"{link}: the message does not name the link's value"
                assert marker not in text, f"{link}: the page shows something in the link's value's place"
                if key == "task":
                    assert b.button_enabled(f"Open this page on {TASK}"), link
                    assert b.evaluate("new URLSearchParams(location.search).get('task')") == value, link
                for action in ("Veto", "Pin"):  # the Features page's actions on a feature
                    assert not b.button_enabled(action), f"{link}: {action} enabled without a feature"
            timings[path] = time.perf_counter() - t0

        # a key the page does not read is named, with a link to the page that reads it
        text = visit(b, f"{url}/selection?task={TASK}&feature=12", "does not use the link's")
        assert "feature" in text and "open it on Features" in text
    print("seconds per page (path + 2 links):", {k: round(v, 1) for k, v in timings.items()})
