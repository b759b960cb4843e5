"""Time the first run as a new user meets it: ``make run`` in a clone whose ``make install`` is done,
then a headless Chromium polls the dashboard until the Features page shows recalled and validated
features with effects and the Selection page shows a live selection count — with no click.

    python scripts/first_run.py /path/to/fresh/clone [--timeout 900]

Prints the seconds from ``make run`` to each milestone (server up, features table, selection count)
and the bootstrap job's own summary. Needs Chromium (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from browser import browser, free_port  # noqa: E402


def page_text(b, url: str) -> str:
    b.call("Page.navigate", url=url)
    time.sleep(4)
    return b.evaluate("document.body ? document.body.innerText : ''") or ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clone", type=Path, help="a clone where 'make install' has finished")
    ap.add_argument("--timeout", type=float, default=900.0)
    args = ap.parse_args(argv)
    port = free_port()
    t0 = time.monotonic()
    log = open(args.clone / "first-run.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=args.clone, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    marks: dict[str, float] = {}
    try:
        with browser() as b:
            while time.monotonic() - t0 < args.timeout:
                time.sleep(5)
                if "server" not in marks:
                    if "IGDS" not in page_text(b, url):
                        continue
                    marks["server"] = time.monotonic() - t0
                if "features" not in marks:
                    text = page_text(b, url + "/features")
                    counts = {k: re.search(p + r"\s*(\d+)", text) for k, p in
                              (("Candidates", r"Candidates \|C\|"), ("Measured", "Measured"),
                               ("Validated", r"Validated \|F\*\|"))}
                    # recalled candidates and finished interventions (an empty F* is a result too)
                    if counts["Candidates"] and counts["Measured"] and int(counts["Measured"].group(1)) > 0 \
                            and int(counts["Measured"].group(1)) >= int(counts["Candidates"].group(1)):
                        marks["features"] = time.monotonic() - t0
                        marks.update({k: int(v.group(1)) for k, v in counts.items() if v})
                if "features" in marks and "selection" not in marks:
                    text = page_text(b, url + "/selection")
                    m = re.search(r"Selected\s*([\d,]+)\s*/\s*([\d,]+)", text)
                    if m:
                        marks["selection"] = time.monotonic() - t0
                        marks["selected"] = m.group(0).replace("\n", " ")
                        break
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
    jobs = subprocess.run([str(args.clone / ".venv/bin/python"), "-m", "igds", "job", "list"], cwd=args.clone,
                          capture_output=True, text=True).stdout
    print(json.dumps({k: (round(v, 1) if isinstance(v, float) else v) for k, v in marks.items()}, indent=2))
    print(jobs[-2000:])
    return 0 if "selection" in marks else 1


if __name__ == "__main__":
    sys.exit(main())
