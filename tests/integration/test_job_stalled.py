"""A job is never run twice: a job whose process is stopped (SIGSTOP) reads ``stalled``, not ``dead``; resume refuses
while its process lives and ``--force`` stops it first; a superseded process stops on its own; and the jobs'
atomic writes leave the old or the new file whenever the writer is killed. Real processes, checked from the
process table."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from igds import jobs
from igds.cli import main
from igds.jobs.folder import STATUS, read_json, status_lock, write_json
from tests.helpers import wait_until

DEAD_AFTER_S = 4.0  # jobs beat every 2 s; 15 s (the default) would only make these tests slower


@pytest.fixture(autouse=True)
def _short_dead_after(monkeypatch):
    monkeypatch.setenv("IGDS_JOB_DEAD_AFTER_S", str(DEAD_AFTER_S))


def job_processes(job_id: str) -> set[int]:
    """Pids of the processes whose command line runs this job (``python -m igds job run <id>``), from /proc."""
    out = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        if argv[-3:-1] == [b"run", job_id.encode()] or argv[-2:] == [b"run", job_id.encode()]:
            out.add(int(entry.name))
    return out


class ProcessWatch:
    """Polls the process table in a thread for the whole test: ``most`` is the largest number of processes that
    ran the job at one moment, ``pids`` every one seen."""

    def __init__(self, job_id: str):
        self.job_id, self.most, self.pids, self.polls = job_id, 0, set(), 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            now = job_processes(self.job_id)
            self.most, self.pids, self.polls = max(self.most, len(now)), self.pids | now, self.polls + 1
            time.sleep(0.02)

    def stop(self) -> "ProcessWatch":
        self._stop.set()
        self._thread.join()
        return self


def started_watched(params: dict) -> tuple[str, ProcessWatch]:
    job_id = f"count-stall-{random.getrandbits(32):08x}"
    watch = ProcessWatch(job_id)  # watching before the process exists
    jobs.start_job("count", params, job_id=job_id)
    return job_id, watch


def progressed(job_id, at_least):
    st = jobs.job_status(job_id)
    return st if st["state"] == "running" and (st.get("progress") or {}).get("done", 0) >= at_least else None


def state_is(job_id, state):
    st = jobs.job_status(job_id)
    return st if st["state"] == state else None


def stop_until_stalled(job_id: str) -> dict:
    st = wait_until(lambda: progressed(job_id, 2))
    os.kill(st["pid"], signal.SIGSTOP)
    stalled = wait_until(lambda: state_is(job_id, "stalled"), timeout=DEAD_AFTER_S + 20)
    assert stalled["pid"] == st["pid"] and stalled["stalled_s"] > DEAD_AFTER_S
    return stalled


def test_a_stopped_job_reads_stalled_resume_refuses_and_after_sigcont_it_ends_done_in_one_process(capsys):
    job_id, watch = started_watched({"steps": 12, "sleep": 0.2})
    try:
        st = stop_until_stalled(job_id)
        pid = st["pid"]
        assert json.loads((jobs.job_dir(job_id) / STATUS).read_text())["state"] == "running"  # nothing persisted
        assert [s["state"] for s in jobs.list_jobs()] == ["stalled"]
        assert [s["job_id"] for s in jobs.active_jobs()] == [job_id]  # still a live job for the dashboard

        assert main(["job", "list"]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(job_id))
        assert row.split()[1] == "stalled" and "silent" in row
        assert main(["job", "show", job_id]) == 0
        assert f"stalled: process {pid} is alive" in capsys.readouterr().out

        with pytest.raises(ValueError, match="is stalled: its process .* is alive"):
            jobs.resume_job(job_id)
        assert main(["job", "resume", job_id]) == 2
        err = capsys.readouterr().err
        assert f"job {job_id!r} is stalled" in err and "resume with --force" in err
        with pytest.raises(ValueError, match="cannot be resumed"):  # start with its id: the same refusal
            jobs.start_job("count", {"steps": 12, "sleep": 0.2}, job_id=job_id)
        time.sleep(0.5)  # a wrongly launched copy would be in the process table by now
        assert job_processes(job_id) == {pid}

        os.kill(pid, signal.SIGCONT)
        done = jobs.wait_job(job_id, timeout=60)
    finally:
        watch.stop()
        for p in job_processes(job_id):  # never leave a stopped process behind a failed assertion
            os.kill(p, signal.SIGKILL)
    assert done["state"] == "done" and done["attempt"] == 1 and done["result"] == {"count": 12}
    assert Counter(p["step"] for p in jobs.read_metrics(job_id, "step")) == Counter(range(1, 13))
    assert watch.polls > 50 and watch.pids == {pid} and watch.most == 1


def test_resume_force_stops_the_stalled_process_group_first_and_says_so(capsys):
    job_id, watch = started_watched({"steps": 12, "sleep": 0.2})
    try:
        st = stop_until_stalled(job_id)
        old = st["pid"]
        assert main(["job", "resume", "--force", "--grace", "3", job_id]) == 0
        out = capsys.readouterr().out
        assert f"sending SIGTERM to process group {old}" in out and f"process {old} stopped" in out
        done = jobs.wait_job(job_id, timeout=60)
    finally:
        watch.stop()
        for p in job_processes(job_id):
            os.kill(p, signal.SIGKILL)
    assert done["state"] == "done" and done["attempt"] == 2 and done["result"] == {"count": 12}
    assert done["pid"] != old and watch.pids == {old, done["pid"]} and watch.most == 1
    assert any(f"resume --force: SIGTERM to process group {old}" in line for line in jobs.read_log(job_id))
    counts = Counter(p["step"] for p in jobs.read_metrics(job_id, "step"))
    assert sorted(counts) == list(range(1, 13)) and max(counts.values()) <= 2  # at most the step in flight again


def test_a_process_whose_job_was_resumed_elsewhere_stops_and_leaves_the_new_attempts_status_alone():
    # what resume_job writes when the old process cannot be seen (another host): attempt 2, queued, no pid
    job_id = jobs.start_job("count", {"steps": 200, "sleep": 0.05})
    st = wait_until(lambda: progressed(job_id, 2))
    proc = jobs._children[st["pid"]]
    d = jobs.job_dir(job_id)
    with status_lock(d):
        write_json(d / STATUS, {**read_json(d / STATUS), "state": "queued", "attempt": 2, "pid": None,
                                "heartbeat": None})
    assert proc.wait(timeout=20) == jobs.EXIT_CANCELLED  # noticed at its next status write, then unwound
    after = read_json(d / STATUS)
    assert after["attempt"] == 2 and after["state"] == "queued" and after["pid"] is None
    assert max(p["step"] for p in jobs.read_metrics(job_id, "step")) < 200


WRITER = """
import sys, time
from pathlib import Path
from igds.jobs.folder import write_json
path, n = Path(sys.argv[1]), int(sys.argv[2])
version = 0
while True:
    version += 1
    obj = {"version": version, "pad": str(version % 10) * n}
    print("start", version, flush=True)
    t = time.perf_counter()
    write_json(path, obj)
    print("done", version, time.perf_counter() - t, flush=True)
"""


def test_an_atomic_write_killed_at_a_random_moment_leaves_the_old_or_the_new_file(tmp_path):
    # a 4 MB status file; each kill lands at a random moment of a write (serialise, temp file, fsync, rename).
    # A plain path.write_text(json.dumps(...)) in its place left a torn or empty file in 12 of these 30 kills.
    path, rng = tmp_path / "status.json", random.Random(0)
    for _ in range(30):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(4 << 20)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline().split() == ["start", "1"]
        took = float(proc.stdout.readline().split()[2])  # version 1 is complete: the file exists from here on
        assert proc.stdout.readline().split() == ["start", "2"]
        time.sleep(rng.uniform(0.0, 1.2 * took))
        proc.kill()
        proc.wait()
        done = [int(line.split()[1]) for line in proc.stdout.read().splitlines() if line.startswith("done")]
        proc.stdout.close()
        last = max(done, default=1)
        got = json.loads(path.read_text())  # always parses
        assert got["version"] in (last, last + 1)  # the old file, or the new one whose rename had happened
        assert got["pad"] == str(got["version"] % 10) * (4 << 20)
