"""Drive the real dashboard in headless Chromium: start a server, dump a page's DOM, take screenshots.

Used by the browser test and by ``scripts/screenshots.py`` (docs images). Flags are the ones that work
in this container (no sandbox, no GPU, no network services); the first shot after a server start can be
the bare skeleton, so callers retry until the page's content is there.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1000", "--hide-scrollbars"]


def chromium() -> str | None:
    """Path of a Chromium binary, if installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(env: dict | None = None, port: int | None = None, timeout: float = 60):
    """Run ``streamlit run app.py`` on 127.0.0.1; yields the base URL once /_stcore/health answers."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"streamlit did not come up on {url}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


class Chromium:
    """A headless Chromium driven over the DevTools protocol, so pages are read in real time (the
    dashboard renders over a websocket; ``--dump-dom`` with virtual time returns before it has)."""

    def __init__(self):
        self.port = free_port()
        self.profile = tempfile.mkdtemp()
        self.proc = subprocess.Popen([chromium(), *FLAGS, f"--user-data-dir={self.profile}",
                                      f"--remote-debugging-port={self.port}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)  # its own group: close() ends every helper
        self._id = 0
        deadline = time.monotonic() + 30
        while True:
            try:
                tabs = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json", timeout=2).read())
                ws_url = next(t["webSocketDebuggerUrl"] for t in tabs if t.get("type") == "page")
                break
            except (OSError, StopIteration, ValueError):
                if time.monotonic() > deadline:
                    raise RuntimeError("chromium did not start") from None
                time.sleep(0.3)
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=1 << 28, open_timeout=30)
        self.call("Emulation.setDeviceMetricsOverride", width=1400, height=1000, deviceScaleFactor=1, mobile=False)

    def call(self, method: str, **params):
        """Send one DevTools command and return its result."""
        self._id += 1
        msg_id = self._id

        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:  # skip events and other replies
                break
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def evaluate(self, expression: str):
        """Value of a JavaScript expression in the page."""
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, expect: str, timeout: float = 90, settle: float = 2.0) -> str:
        """Navigate and wait until the page text contains ``expect`` and has not changed for ``settle``
        seconds with no script running; return the HTML."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.5)
            text = self.evaluate("document.body ? document.body.innerText : ''") or ""
            busy = self.evaluate("!!document.querySelector('[data-testid=\"stStatusWidget\"], "
                                 "[data-testid=\"stSkeleton\"], [data-testid=\"stAppSkeleton\"]')")
            if text != last or busy:
                last, since = text, time.monotonic()
            elif expect in text and time.monotonic() - since >= settle:
                return self.evaluate("document.documentElement.outerHTML")
        return self.evaluate("document.documentElement.outerHTML") or ""

    def screenshot(self, out: Path) -> Path:
        """Save a full-page PNG of the current page."""
        out.parent.mkdir(parents=True, exist_ok=True)
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
        return out

    def close(self) -> None:
        self.ws.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        shutil.rmtree(self.profile, ignore_errors=True)


@contextmanager
def browser():
    """A :class:`Chromium` that is always shut down."""
    b = Chromium()
    try:
        yield b
    finally:
        b.close()
