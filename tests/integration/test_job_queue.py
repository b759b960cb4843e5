"""The local job queue with real job processes: heavy jobs take slots in FIFO order, queued jobs show their
place, can be cancelled at once, and a killed slot holder frees its slot."""

import os
import signal
import time

import pytest

from igds import jobs
from igds.jobs import QueueConfig, save_queue_config
from tests.helpers import wait_until

HEAVY = {"heavy": True}  # the toy count kind made heavy: it waits for a slot like a model job


def state_is(job_id, state):
    st = jobs.job_status(job_id)
    return st if st["state"] == state else None


def interval(st):
    return st["started"], st["finished"]


def test_one_slot_runs_two_heavy_jobs_one_after_the_other_and_shows_the_place():
    a = jobs.start_job("count", {"steps": 8, "sleep": 0.1, **HEAVY})
    b = jobs.start_job("count", {"steps": 8, "sleep": 0.1, **HEAVY})
    light = jobs.start_job("count", {"steps": 2, "sleep": 0.05})  # light jobs never queue
    st_a = wait_until(lambda: state_is(a, "running"))
    assert st_a["slot"]["index"] == 0 and st_a["slot"]["threads"] == len(os.sched_getaffinity(0))
    st_b = jobs.job_status(b)
    assert st_b["state"] == "queued" and st_b["queue"] == {"place": 1, "of": 1}
    assert jobs.waiting_jobs() == [b] and jobs.slot_holders() == {0: a}
    assert jobs.wait_job(light, timeout=30)["state"] == "done"  # ran beside the heavy job
    st_a, st_b = jobs.wait_job(a, timeout=30), jobs.wait_job(b, timeout=30)
    assert st_a["state"] == st_b["state"] == "done" and st_b["result"] == {"count": 8}
    assert interval(st_a)[1] <= interval(st_b)[0]  # b started only after a had finished
    assert "queue" not in st_b and jobs.waiting_jobs() == [] and jobs.slot_holders() == {0: None}
    assert any("slot 0:" in line for line in jobs.read_log(b))


def test_two_slots_let_two_heavy_jobs_overlap_with_their_own_threads_and_gpus():
    save_queue_config(QueueConfig(slots=2, threads_per_slot=1, gpu_ids=("0", "1")))
    a = jobs.start_job("count", {"steps": 20, "sleep": 0.1, **HEAVY})
    b = jobs.start_job("count", {"steps": 20, "sleep": 0.1, **HEAVY})
    st_a, st_b = jobs.wait_job(a, timeout=30), jobs.wait_job(b, timeout=30)
    (s_a, f_a), (s_b, f_b) = interval(st_a), interval(st_b)
    assert s_b < f_a and s_a < f_b  # the running intervals overlap
    assert {st_a["slot"]["index"], st_b["slot"]["index"]} == {0, 1}
    assert {(st["slot"]["threads"], st["slot"]["gpus"]) for st in (st_a, st_b)} == {(1, "0"), (1, "1")}


def test_a_slot_sets_torch_threads_before_the_job_imports_torch():
    save_queue_config(QueueConfig(threads_per_slot=1))
    st = jobs.wait_job(jobs.start_job("matmul", {"size": 64, "rounds": 3}), timeout=60)
    assert st["state"] == "done" and st["result"]["threads"] == 1 and st["slot"]["threads"] == 1


def test_three_jobs_run_in_fifo_order_and_show_their_places():
    ids = [jobs.start_job("count", {"steps": 4, "sleep": 0.1, **HEAVY}) for _ in range(3)]
    wait_until(lambda: state_is(ids[0], "running"))
    assert [jobs.job_status(j)["queue"] for j in ids[1:]] == [{"place": 1, "of": 2}, {"place": 2, "of": 2}]
    active = jobs.active_jobs()
    assert [s["job_id"] for s in active] == ids and active[0]["slot"]["index"] == 0
    done = [jobs.wait_job(j, timeout=40) for j in ids]
    assert all(st["state"] == "done" for st in done)
    starts = [st["started"] for st in done]
    assert starts == sorted(starts)
    assert done[0]["finished"] <= done[1]["started"] and done[1]["finished"] <= done[2]["started"]


def test_cancelling_a_queued_job_removes_it_at_once_and_it_resumes_at_the_end():
    a = jobs.start_job("count", {"steps": 12, "sleep": 0.1, **HEAVY})
    b = jobs.start_job("count", {"steps": 2, "sleep": 0.01, **HEAVY})
    c = jobs.start_job("count", {"steps": 2, "sleep": 0.01, **HEAVY})
    wait_until(lambda: state_is(a, "running"))
    st = jobs.cancel_job(b)  # what the dashboard's Cancel button calls
    assert st["state"] == "cancelled" and "queue" not in st
    assert jobs.waiting_jobs() == [c] and jobs.job_status(c)["queue"] == {"place": 1, "of": 1}
    jobs.resume_job(b)  # back in line, behind c
    wait_until(lambda: jobs.waiting_jobs() == [c, b])
    done = {j: jobs.wait_job(j, timeout=40) for j in (a, b, c)}
    assert [done[j]["state"] for j in (a, b, c)] == ["done"] * 3
    assert done[b]["attempt"] == 2 and done[b]["started"] >= done[c]["finished"]
    assert jobs.read_metrics(b) and all(p["attempt"] == 2 for p in jobs.read_metrics(b))  # never ran before


def test_a_killed_slot_holder_frees_the_slot_and_a_killed_waiter_leaves_the_line():
    a = jobs.start_job("count", {"steps": 200, "sleep": 0.1, **HEAVY})
    b = jobs.start_job("count", {"steps": 200, "sleep": 0.1, **HEAVY})
    c = jobs.start_job("count", {"steps": 2, "sleep": 0.01, **HEAVY})
    st_a = wait_until(lambda: state_is(a, "running"))
    st_b = wait_until(lambda: (s := jobs.job_status(b)).get("pid") and s.get("queue") and s)
    os.killpg(st_b["pid"], signal.SIGKILL)  # a waiter dies: c moves up without waiting for anybody to notice
    wait_until(lambda: jobs.waiting_jobs() == [c])
    os.killpg(st_a["pid"], signal.SIGKILL)  # the holder dies: the kernel drops its flock
    assert jobs.wait_job(c, timeout=30)["state"] == "done"
    assert jobs.job_status(a)["state"] == "dead" and jobs.job_status(b)["state"] == "dead"


def test_a_job_queued_under_one_slot_starts_when_the_slots_are_raised_to_two():
    save_queue_config(QueueConfig(slots=1, threads_per_slot=1))
    holder = jobs.start_job("count", {"steps": 300, "sleep": 0.1, **HEAVY})
    waiter = jobs.start_job("count", {"steps": 2, "sleep": 0.01, **HEAVY})
    try:
        wait_until(lambda: state_is(holder, "running"))
        wait_until(lambda: (s := jobs.job_status(waiter)).get("pid") and s.get("queue"))
        time.sleep(1.0)  # it has looked at the queue a few times under the old setting, and waits
        assert jobs.job_status(waiter)["state"] == "queued"
        save_queue_config(QueueConfig(slots=2, threads_per_slot=2))  # what the Overview's Save does
        st = jobs.wait_job(waiter, timeout=30)
        assert st["state"] == "done" and jobs.job_status(holder)["state"] == "running"  # beside the holder
        assert (st["slot"]["index"], st["slot"]["threads"]) == (1, 2)  # the new slot, with the new threads
        assert jobs.job_status(holder)["slot"]["threads"] == 1  # a running job keeps what it started with
    finally:
        jobs.cancel_job(holder, grace_s=2, wait=True)


def test_lowering_the_slots_starts_no_job_until_few_enough_hold_one():
    save_queue_config(QueueConfig(slots=2, threads_per_slot=1))
    a, b = (jobs.start_job("count", {"steps": 300, "sleep": 0.1, **HEAVY}) for _ in range(2))
    c = jobs.start_job("count", {"steps": 2, "sleep": 0.01, **HEAVY})
    try:
        wait_until(lambda: state_is(a, "running") and state_is(b, "running"))
        save_queue_config(QueueConfig(slots=1, threads_per_slot=1))
        assert jobs.slot_holders() == {0: a, 1: b}  # slot 1 is beyond the setting but still held: shown
        jobs.cancel_job(a, grace_s=2, wait=True)  # slot 0 is free, but b still holds one of the 1 allowed
        time.sleep(1.0)
        assert jobs.job_status(c)["state"] == "queued" and jobs.slot_holders() == {0: None, 1: b}
        jobs.cancel_job(b, grace_s=2, wait=True)
        st = jobs.wait_job(c, timeout=30)
        assert st["state"] == "done" and st["slot"]["index"] == 0
    finally:
        for j in (a, b):
            jobs.cancel_job(j, grace_s=2, wait=True)


def test_the_cli_saves_and_shows_the_queue_setting(capsys):
    from igds.cli import main

    assert main(["job", "queue", "--slots", "2", "--threads", "1"]) == 0
    assert jobs.queue_config() == QueueConfig(slots=2, threads_per_slot=1)
    assert capsys.readouterr().out.splitlines() == ["2 slot(s) x 1 thread(s)", "slot 0: free", "slot 1: free"]


def test_bad_queue_settings_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="at least one slot"):
        QueueConfig(slots=0)
    with pytest.raises(ValueError, match="one per slot"):
        QueueConfig(slots=2, gpu_ids=("0",))
    with pytest.raises(ValueError, match="GPU indices"):
        QueueConfig(gpu_ids=("cuda:0",))
    assert QueueConfig.from_dict(QueueConfig(slots=2, gpu_ids=("0", "1")).to_dict()).gpu_ids == ("0", "1")
