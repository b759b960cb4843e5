"""Background jobs with real processes: progress, SIGKILL → dead → resume, failure, cancel, other readers."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest

from igds import jobs
from igds.cli import main
from tests.helpers import wait_until

READER = "import json, sys; from igds.jobs import job_status; print(json.dumps(job_status(sys.argv[1])))"


def progressed(job_id, at_least):
    st = jobs.job_status(job_id)
    p = st.get("progress") or {}
    return st if st["state"] == "running" and p.get("done", 0) >= at_least else None


def read_in_other_process(job_id):
    out = subprocess.run([sys.executable, "-c", READER, job_id], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def step_counts(job_id):
    return Counter(p["step"] for p in jobs.read_metrics(job_id, "step"))


def test_job_runs_to_done_with_progress_eta_and_a_second_reader():
    job_id = jobs.start_job("count", {"steps": 25, "sleep": 0.08})
    assert job_id.startswith("count-") and (jobs.job_dir(job_id) / "spec.json").exists()
    st = wait_until(lambda: progressed(job_id, 4))
    assert st["progress"]["total"] == 25 and st["progress"]["eta_seconds"] > 0
    assert st["heartbeat"] and st["pid"] and st["attempt"] == 1

    other = read_in_other_process(job_id)  # e.g. a fresh browser tab's process
    assert other["state"] == "running" and other["progress"]["done"] >= 4

    st = jobs.wait_job(job_id, timeout=20)
    assert st["state"] == "done" and st["result"] == {"count": 25}
    p = st["progress"]
    assert (p["done"], p["total"], p["message"]) == (25, 25, "count: 25/25")
    assert p["eta_seconds"] is None and st["finished"] >= p["at"] >= st["started"]  # ended: no estimate
    assert st["finished"] >= st["started"]
    assert step_counts(job_id) == Counter(range(1, 26))
    assert [s["job_id"] for s in jobs.list_jobs()] == [job_id]
    with pytest.raises(ValueError, match="cannot be resumed"):  # an explicit id that exists and is done
        jobs.start_job("count", {"steps": 25, "sleep": 0.08}, job_id=job_id)


def test_sigkilled_job_is_dead_and_resumes_from_its_checkpoint():
    steps = 30
    job_id = jobs.start_job("count", {"steps": steps, "sleep": 0.05})
    st = wait_until(lambda: progressed(job_id, 6))
    os.killpg(st["pid"], signal.SIGKILL)
    time.sleep(0.3)

    # another process (not the parent, so the killed child is an unreaped zombie to it) already sees it dead
    assert read_in_other_process(job_id)["state"] == "dead"
    st = jobs.job_status(job_id)
    assert st["state"] == "dead"
    ckpt = json.loads((jobs.job_dir(job_id) / "checkpoint" / "step.json").read_text())["step"]
    assert 6 <= ckpt < steps

    jobs.resume_job(job_id)
    st = jobs.wait_job(job_id, timeout=20)
    assert st["state"] == "done" and st["attempt"] == 2 and st["result"] == {"count": steps}
    counts = step_counts(job_id)
    assert sorted(counts) == list(range(1, steps + 1))
    # only the step in flight at the kill (metric written, checkpoint not yet) may be repeated, and only once
    repeated = [s for s, n in counts.items() if n > 1]
    assert len(repeated) <= 1 and max(counts.values()) <= 2
    second = [p["step"] for p in jobs.read_metrics(job_id) if p["attempt"] == 2]
    assert second == list(range(ckpt + 1, steps + 1))
    assert any(f"resuming after step {ckpt}" in line for line in jobs.read_log(job_id))


def test_failing_job_records_its_error_and_exits_non_zero():
    job_id = jobs.start_job("count", {"steps": 10, "sleep": 0.01, "fail_at": 3})
    proc = jobs._children[jobs.job_status(job_id)["pid"]]
    st = jobs.wait_job(job_id, timeout=20)
    assert st["state"] == "failed" and st["result"] is None
    assert st["error"]["type"] == "RuntimeError"
    assert st["error"]["message"] == "planted failure at step 3"
    assert "planted failure" in st["error"]["traceback"]
    assert proc.wait(timeout=10) == jobs.EXIT_FAILED
    assert any("RuntimeError" in line for line in jobs.read_log(job_id))  # the traceback is in log.txt


def test_cancel_is_seen_by_should_stop_and_the_job_can_resume():
    job_id = jobs.start_job("count", {"steps": 25, "sleep": 0.05})
    wait_until(lambda: progressed(job_id, 3))
    t0 = time.monotonic()
    st = jobs.cancel_job(job_id, grace_s=5, wait=True)
    assert time.monotonic() - t0 < 3  # noticed at the next step, well before the grace period
    assert st["state"] == "cancelled" and st["result"]["stopped"] is True
    stopped_at = st["result"]["count"]

    jobs.resume_job(job_id)  # the cancel flag is cleared, the count continues
    st = jobs.wait_job(job_id, timeout=20)
    assert st["state"] == "done" and st["result"] == {"count": 25}
    assert [p["step"] for p in jobs.read_metrics(job_id) if p["attempt"] == 2][0] == stopped_at + 1


def test_cancel_escalates_to_sigterm_when_the_job_does_not_look():
    # 30 s per step: should_stop() is not consulted in time, so the job's own watchdog sends SIGTERM
    job_id = jobs.start_job("count", {"steps": 2, "sleep": 30})
    # past the first should_stop() check (a cancel before it would be noticed there, with no SIGTERM needed)
    wait_until(lambda: any("step 1 started" in line for line in jobs.read_log(job_id)))
    st = jobs.cancel_job(job_id, grace_s=0.2)  # returns at once
    assert st["state"] == "running"
    st = jobs.wait_job(job_id, timeout=10)
    assert st["state"] == "cancelled" and st["error"]["type"] == "JobCancelled"


def test_stale_heartbeat_reads_stalled_while_the_process_lives_and_dead_once_its_pid_is_another_process():
    job_id = jobs.run_job_inline("count", {"steps": 1, "sleep": 0})["job_id"]
    path = jobs.job_dir(job_id) / "status.json"
    st = json.loads(path.read_text())
    assert st["pid"] == os.getpid() and st["pid_start"]  # an inline run: this process, with its start time
    st.update(state="running", heartbeat=time.time())  # alive and beating
    path.write_text(json.dumps(st))
    assert jobs.job_status(job_id)["state"] == "running"

    path.write_text(json.dumps({**st, "heartbeat": time.time() - 10 * jobs.DEAD_AFTER_S}))
    shown = jobs.job_status(job_id)
    assert shown["state"] == "stalled" and shown["stalled_s"] > 9 * jobs.DEAD_AFTER_S
    assert json.loads(path.read_text())["state"] == "running"  # reported, not written: it may beat again
    with pytest.raises(ValueError, match="is stalled: its process"):
        jobs.resume_job(job_id)
    with pytest.raises(ValueError, match="foreground run"):  # --force never signals the caller's own process
        jobs.resume_job(job_id, force=True)

    # the same pid, started at another time: the number was reused by another process, the job is dead
    path.write_text(json.dumps({**st, "heartbeat": time.time() - 10 * jobs.DEAD_AFTER_S,
                                "pid_start": st["pid_start"] - 1}))
    assert jobs.job_status(job_id)["state"] == "dead"
    assert json.loads(path.read_text())["state"] == "dead"  # persisted, not only reported


def test_inline_run_shares_the_files_and_records_failures():
    seen = []
    st = jobs.run_job_inline("count", {"steps": 4, "sleep": 0}, progress=lambda d, t, m: seen.append(d))
    assert st["state"] == "done" and st["result"] == {"count": 4} and seen == [1, 2, 3, 4]
    assert step_counts(st["job_id"]) == Counter(range(1, 5))
    st = jobs.run_job_inline("count", {"steps": 4, "sleep": 0, "fail_at": 2})
    assert st["state"] == "failed" and st["error"]["message"] == "planted failure at step 2"
    with pytest.raises(ValueError, match="unknown job kind"):
        jobs.start_job("no-such-kind", {})


def test_cli_start_wait_and_show(capsys):
    out = subprocess.run([sys.executable, "-m", "igds", "job", "start", "count", "--params",
                          '{"steps": 3, "sleep": 0.01, "fail_at": 2}', "--wait"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == jobs.EXIT_FAILED and "planted failure at step 2" in out.stderr
    job_id = out.stdout.split(":")[0].strip()
    assert jobs.job_status(job_id)["state"] == "failed"
    # the read-only commands in-process: a second interpreter start would only measure imports
    assert main(["job", "show", job_id]) == 0 and "RuntimeError" in capsys.readouterr().out
    assert main(["job", "list"]) == 0 and job_id in capsys.readouterr().out


def test_the_registry_is_the_list_of_kinds_and_importing_jobs_is_light(capsys):
    stages = {"bootstrap", "extract", "recall", "intervene", "steer", "select", "finetune", "evaluate", "experiment"}
    assert stages | {"count"} <= set(jobs.job_kinds())
    with pytest.raises(SystemExit):  # the CLI offers the registry's kinds
        main(["job", "start", "no-such-kind"])
    assert "invalid choice: 'no-such-kind'" in capsys.readouterr().err
    # the kinds register at import without pulling in torch: a job process starts fast
    code = "import sys, igds.jobs; print(sorted(m for m in ('torch', 'transformers', 'duckdb') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
