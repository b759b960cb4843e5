"""A job's stages as its status and log tell them: the stage names in order, a time-left estimate that only counts
down within a stage under a steady rate, one log line per stage start and end with its duration, and no estimate
once the job has ended (done or cancelled). The toy ``count`` kind with named stages; one run on a steady clock,
one in a real job process that is cancelled mid-stage."""

import re
import time

import pytest

from igds import jobs
from igds.jobs.status import job_timing
from igds.progress import StagedProgress, begin_stage, format_left, format_seconds, scaled
from igds.ui.jobs import fmt_left, fmt_timing, preparing_text, waiting_text
from tests.helpers import wait_until

STAGES = ["load", "measure", "write"]


class SteadyClock:
    """Stands in for the ``time`` module of the job side: ``sleep`` advances ``time()`` exactly (a steady rate)
    and, halfway through every step, lets ``look`` read the job's status as a page would."""

    def __init__(self, look):
        self.now, self.look = time.time(), look  # the reader checks heartbeats against the real clock
        self.strftime = time.strftime

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.look(self.now)
        self.now += seconds / 2
        self.look(self.now)
        self.now += seconds / 2


def staged_run(monkeypatch, cancel_in_stage: int | None = None, steps: int = 5, plan: bool = False):
    """Run a staged count job inline on a steady clock (10 s a step); returns its final status and every status
    read mid-step as ``(now, status)``."""
    seen, job = [], {}

    def look(now):
        job_id = job.setdefault("id", jobs.list_jobs()[0]["job_id"])
        st = jobs.job_status(job_id)
        seen.append((now, st))
        if cancel_in_stage and (st.get("stage") or {}).get("index") == cancel_in_stage \
                and (st.get("progress") or {}).get("done") == 2:
            (jobs.job_dir(job_id) / "cancel").write_text("10")

    clock = SteadyClock(look)
    monkeypatch.setattr("igds.jobs.context.time", clock)
    monkeypatch.setattr("igds.jobs.kinds.time", clock)
    final = jobs.run_job_inline("count", {"steps": steps, "sleep": 10.0, "stages": STAGES,
                                          **({"plan": 1} if plan else {})})
    return final, seen


def stage_log(job_id):
    return [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in jobs.read_log(job_id) if line[9:].startswith("stage ")]


def test_a_staged_job_reports_each_stage_with_a_countdown_and_logs_its_start_and_end(monkeypatch):
    final, seen = staged_run(monkeypatch)
    assert final["state"] == "done" and final["result"] == {"count": 15}

    # the stages in order, counted, each with its own progress (5 steps each)
    stages = [(st["stage"]["index"], st["stage"]["name"], st["stage"]["of"]) for _, st in seen]
    assert list(dict.fromkeys(stages)) == [(1, "load", 3), (2, "measure", 3), (3, "write", 3)]
    assert all(st["progress"]["total"] in (0, 5) and st["progress"]["done"] <= 5 for _, st in seen)

    # within each stage, the time left never goes up under a steady rate, and it is right: 10 s a step
    for index in (1, 2, 3):
        lefts = [(now, job_timing(st, now)) for now, st in seen if st["stage"]["index"] == index]
        known = [t["left_s"] for _, t in lefts if t["left_s"] is not None]
        assert len(known) >= 4 and known == sorted(known, reverse=True)
        assert all(t["stages_after"] == 3 - index and t["overdue_s"] is None for _, t in lefts)
        now, st = next((now, st) for now, st in seen
                       if st["stage"]["index"] == index and st["progress"]["done"] == 3)
        assert job_timing(st, now)["left_s"] == pytest.approx(20.0)  # 2 steps left at 10 s, read at the report
        assert fmt_left(st, now) == ("under a minute left" + (" (last stage)" if index == 3 else
                                     f" in this stage, then {3 - index} more stage{'s' if index == 1 else ''}"))
        # a stage's first reports have no rate yet: no estimate rather than a made-up one
        assert any(t["left_s"] is None and fmt_left(st, now) == "no estimate yet (measuring the rate)"
                   for (now, st), (_, t) in zip([x for x in seen if x[1]["stage"]["index"] == index], lefts,
                                                strict=True))

    # one line when each stage starts and one when it ends, with its duration (5 steps of 10 s)
    assert stage_log(final["job_id"]) == [line for i, name in enumerate(STAGES, 1)
                                          for line in (f"stage {i}/3 {name}: started",
                                                       f"stage {i}/3 {name}: done in 50 s")]
    # ended: no estimate anywhere, the timing says how long it ran and where it ended
    assert final["progress"]["eta_seconds"] is None and job_timing(final)["left_s"] is None
    assert fmt_left(final) == "" and fmt_timing(final) == "stage 3 of 3: write · ran 2 min 30 s"


def test_a_job_with_a_plan_gives_the_time_left_in_all_and_what_is_still_being_prepared(monkeypatch):
    final, seen = staged_run(monkeypatch, plan=True)
    assert final["state"] == "done"
    now, st = next((now, st) for now, st in seen if st["stage"]["index"] == 1 and st["progress"]["done"] == 3)
    t = job_timing(st, now)
    assert t["later"] == [("measure", 50.0), ("write", 50.0)]
    assert t["rest_s"] == pytest.approx(20.0 + 100.0)  # this stage's 2 steps left plus the two later stages
    assert fmt_left(st, now) == "under a minute left in this stage, then 2 more stages (about 2 min left in all)"
    assert preparing_text(st, now) == (f"Still being prepared by job {st['job_id']}: load (now, under a minute "
                                       "left), then measure under a minute, write under a minute; about 2 min left "
                                       "in all.")
    # in the last stage nothing is left to plan: no "in all", no notice
    now, st = next((now, st) for now, st in seen if st["stage"]["index"] == 3 and st["progress"]["done"] == 3)
    assert job_timing(st, now)["later"] == [] and preparing_text(st, now) == ""
    assert job_timing(final)["rest_s"] is None  # an ended job has no estimate
    # a stage with no rate yet: the time left in all waits for it
    now, st = next((now, st) for now, st in seen
                   if st["stage"]["index"] == 2 and job_timing(st, now)["left_s"] is None)
    assert job_timing(st, now)["rest_s"] is None
    assert "once the current stage has measured its rate" in preparing_text(st, now)


def test_a_cancelled_stage_logs_its_end_and_the_job_keeps_no_estimate(monkeypatch):
    final, seen = staged_run(monkeypatch, cancel_in_stage=2)
    # the flag is set during step 8 (the third of stage 2), which the job finishes before it looks
    assert final["state"] == "cancelled" and final["result"] == {"count": 8, "stopped": True}
    assert stage_log(final["job_id"]) == ["stage 1/3 load: started", "stage 1/3 load: done in 50 s",
                                          "stage 2/3 measure: started", "stage 2/3 measure: cancelled after 30 s"]
    assert final["progress"]["eta_seconds"] is None
    t = job_timing(final, final["finished"] + 60)
    assert (t["left_s"], t["overdue_s"], t["silent_s"]) == (None, None, None)
    assert t["elapsed_s"] == pytest.approx(80.0)  # frozen at the end, however late it is read
    assert fmt_left(final) == "" and fmt_timing(final) == "ended in stage 2 of 3: measure · ran 1 min 20 s"


def test_a_real_job_process_shows_its_stage_and_time_left_and_none_after_cancel():
    job_id = jobs.start_job("count", {"steps": 40, "sleep": 0.1, "stages": ["warm up", "work"]})
    st = wait_until(lambda: (s := jobs.job_status(job_id)).get("stage", {}) and s["stage"]["name"] == "work"
                    and job_timing(s)["left_s"] is not None and s)
    t = job_timing(st)
    assert (t["stage_index"], t["stage_of"], t["stages_after"]) == (2, 2, 0)
    assert 0 < t["left_s"] < 40 * 0.1 * 3 and t["elapsed_s"] >= 40 * 0.1  # the first stage took 4 s at least
    assert fmt_left(st).endswith("left (last stage)") and fmt_timing(st).startswith("stage 2 of 2: work · ")
    assert waiting_text(st, "the counts").startswith(f"Waiting for job {job_id} (count; running, stage 2 of 2: "
                                                     "work, work: ")

    st = jobs.cancel_job(job_id, grace_s=5, wait=True)
    assert st["state"] == "cancelled" and st["progress"]["eta_seconds"] is None
    assert job_timing(st)["left_s"] is None and fmt_left(st) == ""
    log = stage_log(job_id)
    assert log[0] == "stage 1/2 warm up: started" and log[2] == "stage 2/2 work: started"
    assert int(re.fullmatch(r"stage 1/2 warm up: done in (\d+) s", log[1])[1]) >= 4  # 40 steps of 0.1 s
    assert re.fullmatch(r"stage 2/2 work: cancelled after \d+ s", log[3]) and len(log) == 4


def test_a_silent_step_is_not_a_frozen_estimate():
    # a running job last reported 90 s ago, with 30 s left then: the countdown ran out, so it says it is overdue
    st = {"state": "running", "started": 5.0, "stage": {"name": "interventions", "index": 4, "of": 5,
                                                        "started": 10.0},
          "progress": {"done": 3, "total": 10, "message": "intervene: feature 7", "eta_seconds": 30.0, "at": 100.0}}
    t = job_timing(st, now=190.0)
    assert t["left_s"] is None and t["overdue_s"] == pytest.approx(60.0) and t["silent_s"] == pytest.approx(90.0)
    assert fmt_left(st, 190.0) == "taking longer than estimated: no progress report for 1 min 30 s"
    assert job_timing(st, now=110.0)["left_s"] == pytest.approx(20.0)  # counted down between reports
    # a step that has reported no rate yet (the attribution screen) says how long it has been silent
    st["progress"] = {"done": 0, "total": 10, "message": "intervene: attribution screen", "eta_seconds": None,
                      "at": 100.0}
    assert fmt_left(st, 195.0) == "no estimate yet: no progress report for 1 min 35 s"
    assert fmt_timing(st, 195.0) == "stage 4 of 5: interventions · 3 min 05 s in this stage · 3 min 10 s elapsed"
    # a step that is complete (the null's 40/40) waits for the next step's report: not "longer than estimated"
    st["progress"] = {"done": 40, "total": 40, "message": "intervene: null 40/40", "eta_seconds": 0.0, "at": 100.0}
    assert fmt_left(st, 103.0) == "this step is complete, then 1 more stage"


def test_durations_read_as_durations_and_plain_callbacks_ignore_stages():
    assert [format_seconds(s) for s in (8, 62, 3900)] == ["8 s", "1 min 02 s", "1 h 05 min"]
    assert [format_left(s) for s in (20, 7 * 60 + 10, 21 * 60, 95 * 60)] == [
        "under a minute", "about 7 min", "about 20 min", "about 1 h 30 min"]
    seen, stages = [], []
    plain = lambda d, t, m: seen.append((d, t, m))  # noqa: E731 - an existing callback without a stage notion
    begin_stage(plain, "extraction", 2, 5)  # ignored
    begin_stage(None, "extraction", 2, 5)
    staged = StagedProgress(plain, lambda *a: stages.append(a))
    begin_stage(scaled(staged, 50, 50, 100), "recall", 3, 5)  # passes through a scaled sub-task
    scaled(staged, 50, 50, 100)(1, 2, "recall: half")
    assert seen == [(75, 100, "recall: half")] and stages == [("recall", 3, 5)]
