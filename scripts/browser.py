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

    # -- interaction: what a user does on a page (the Data page's upload test) ----------------------------
    def wait_for(self, expression: str, timeout: float = 30, interval: float = 0.25):
        """Poll a JavaScript expression until it is truthy; return its value.

        Raises:
            TimeoutError: naming the expression, when it stays falsy for ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"still false after {timeout:.0f} s: {expression[:200]}")
            time.sleep(interval)

    def text(self) -> str:
        """The page's visible text."""
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_text(self, text: str, timeout: float = 30) -> None:
        """Wait until the page's text contains ``text`` (e.g. the message an action ends with)."""
        self.wait_for(f"document.body && document.body.innerText.includes({json.dumps(text)})", timeout)

    def settle(self, quiet: float = 0.75, timeout: float = 30) -> None:
        """Wait until no script runs and the page's text has not changed for ``quiet`` seconds."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            text = self.text()
            busy = self.evaluate("!!document.querySelector('[data-testid=\"stStatusWidget\"]')")
            if text != last or busy:
                last, since = text, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.25)

    def set_files(self, selector: str, paths: list) -> None:
        """Give an ``<input type=file>`` (a CSS selector) these local files, as a user picking them would."""
        root = self.call("DOM.getDocument", depth=0)["root"]["nodeId"]
        node = self.call("DOM.querySelector", nodeId=root, selector=selector)["nodeId"]
        if not node:
            raise RuntimeError(f"no element matches {selector!r}")
        self.call("DOM.setFileInputFiles", nodeId=node, files=[str(Path(p).resolve()) for p in paths])

    def click_element(self, expression: str, timeout: float = 30) -> None:
        """A real mouse click in the middle of the element a JavaScript expression finds (scrolled into view)."""
        rect = self.wait_for(f"(() => {{ const el = {expression}; if (!el) return null; "
                             "el.scrollIntoView({block: 'center'}); const r = el.getBoundingClientRect(); "
                             "return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()",
                             timeout)
        x, y = rect
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def click_button(self, text: str, timeout: float = 30) -> None:
        """Click the enabled button whose text is ``text`` (waiting for it to be there and enabled)."""
        self.click_element(f"[...document.querySelectorAll('button')].find(b => b.innerText.trim() === "
                           f"{json.dumps(text)} && !b.disabled)", timeout)

    def button_enabled(self, text: str) -> bool | None:
        """Whether the button with text ``text`` is enabled (None: no such button)."""
        return self.evaluate(f"(() => {{ const b = [...document.querySelectorAll('button')].find(b => "
                             f"b.innerText.trim() === {json.dumps(text)}); return b ? !b.disabled : null; }})()")

    def press(self, key: str) -> None:
        """Press and release a key (``Enter``, ``Escape``, ``Tab``) in the focused element."""
        codes = {"Enter": 13, "Escape": 27, "Tab": 9}
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=codes[key],
                      text="\r" if key == "Enter" and kind == "keyDown" else "")

    def press_key(self, key: str) -> None:
        """Press and release one key as a keyboard does (a letter or digit, ``ArrowLeft``/``Right``/``Up``/``Down``,
        ``Enter``, ``Escape``, ``Tab``), through the DevTools input domain: the page gets real keydown / keyup
        events, on whatever element has the focus."""
        named = {"Enter": 13, "Escape": 27, "Tab": 9, "ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40}
        if key in named:
            code, vk, text = key, named[key], "\r" if key == "Enter" else ""
        elif len(key) == 1 and key.isalnum():
            code = f"Key{key.upper()}" if key.isalpha() else f"Digit{key}"
            vk, text = ord(key.upper()), key
        else:
            raise ValueError(f"unsupported key {key!r}")
        self.call("Input.dispatchKeyEvent", type="keyDown", key=key, code=code, windowsVirtualKeyCode=vk, text=text,
                  unmodifiedText=text)
        self.call("Input.dispatchKeyEvent", type="keyUp", key=key, code=code, windowsVirtualKeyCode=vk)

    def time_until(self, action, expression: str, timeout: float = 30, interval: float = 0.01) -> float:
        """Seconds from ``action()`` (e.g. a key press) until the JavaScript ``expression`` is truthy, polled every
        ``interval`` seconds (the DOM change the action should cause, e.g. the next item rendered).

        Raises:
            TimeoutError: naming the expression, when it stays falsy for ``timeout`` seconds.
        """
        t0 = time.perf_counter()
        action()
        deadline = t0 + timeout
        while not self.evaluate(expression):
            if time.perf_counter() > deadline:
                raise TimeoutError(f"still false after {timeout:.0f} s: {expression[:200]}")
            time.sleep(interval)
        return time.perf_counter() - t0

    def idle(self, timeout: float = 30) -> None:
        """Wait until the app runs no script (the app root's script state is neither running nor rerun-requested)."""
        self.wait_for("(() => { const app = document.querySelector('[data-testid=\"stApp\"]'); const state = app ? "
                      "app.dataset.testScriptState : 'initial'; return !['running', 'rerunRequested', 'initial']"
                      ".includes(state); })()", timeout, interval=0.02)

    def _labelled(self, label: str, tags: str = "input, textarea") -> str:
        return (f"[...document.querySelectorAll({json.dumps(tags)})].find(e => e.getAttribute('aria-label') === "
                f"{json.dumps(label)})")

    def type_into(self, label: str, text: str, timeout: float = 30) -> None:
        """Replace the text of the input or text area labelled ``label`` and commit it (Enter; blur for a text
        area), as typing does."""
        element = self._labelled(label)
        self.click_element(element, timeout)
        tag = self.evaluate(f"(() => {{ const el = {element}; el.focus(); el.select(); return el.tagName; }})()")
        self.call("Input.insertText", text=text)
        if tag == "TEXTAREA":
            self.evaluate(f"{element}.blur()")
        else:
            self.press("Enter")

    def select_value(self, label: str) -> str | None:
        """The value the select box labelled ``label`` shows (a multiselect's chosen options, one a line)."""
        return self.evaluate(f"(() => {{ const el = {self._labelled(label, 'input')}; if (!el) return null; "
                             "const box = el.closest('[data-testid=\"stMultiSelect\"]'); if (!box) return el.value; "
                             "const label = box.querySelector('[data-testid=\"stWidgetLabel\"]'); "
                             "return box.innerText.replace(label ? label.innerText : '', '').split('\\n')"
                             ".map(s => s.trim()).filter(Boolean).join('\\n'); })()")

    def open_select(self, label: str, timeout: float = 30) -> list[str]:
        """Open the select box labelled ``label``; return the options it offers."""
        self.click_element(self._labelled(label, "input"), timeout)
        return self.wait_for("(() => { const o = [...document.querySelectorAll('[role=\"option\"]')]"
                             ".map(e => e.innerText.trim()); return o.length ? o : null; })()", timeout)

    def select_options(self, label: str, timeout: float = 30) -> list[str]:
        """The options a select box offers (opened, read, closed again)."""
        options = self.open_select(label, timeout)
        self.press("Escape")
        return options

    def choose(self, label: str, option: str, timeout: float = 30) -> None:
        """Pick ``option`` in the select box or multiselect labelled ``label`` (a multiselect is closed after)."""
        self.open_select(label, timeout)
        self.click_element(f"[...document.querySelectorAll('[role=\"option\"]')].find(e => e.innerText.trim() === "
                           f"{json.dumps(option)})", timeout)
        if self.evaluate("!!document.querySelector('[role=\"option\"]')"):
            self.press("Escape")

    def check_radio(self, group: str, option: str, timeout: float = 30) -> None:
        """Pick ``option`` in the radio group labelled ``group``."""
        self.click_element(f"[...document.querySelectorAll('[role=\"radiogroup\"]')].filter(g => "
                           f"g.getAttribute('aria-label') === {json.dumps(group)}).flatMap(g => "
                           f"[...g.querySelectorAll('label')]).find(l => l.innerText.trim() === {json.dumps(option)})",
                           timeout)

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
