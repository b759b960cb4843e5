"""The dashboard shows the local job queue and what jobs are doing: the job panel says "queued — place k of n" and
can cancel a queued job; the Overview page lists running and queued jobs with their place and slot, and a queue
setting saved there reaches the job already waiting; a running job shows its stage and time left, a cancelled one
no estimate; a page waiting on a job names it. Real job processes."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from igds import jobs
from igds.jobs.status import job_timing
from igds.ui.widgets import md_text
from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
LONG = {"steps": 300, "sleep": 0.1, "heavy": True}  # holds the only slot until cancelled
SHORT = {"steps": 2, "sleep": 0.01, "heavy": True}


def panel(params):
    from igds.ui.jobs import job_launcher

    job_launcher("count", params, label="Toy count", key="toy")


def markdown(at):
    return " ".join(m.value for m in at.markdown)


def test_queued_job_shows_its_place_in_the_panel_and_on_the_overview_and_cancels_from_the_panel():
    holder = jobs.start_job("count", LONG)
    waiter = jobs.start_job("count", SHORT)
    try:
        wait_until(lambda: jobs.job_status(holder)["state"] == "running")
        wait_until(lambda: jobs.job_status(waiter).get("queue") == {"place": 1, "of": 1})

        at = AppTest.from_function(panel, args=(SHORT,), default_timeout=30).run()
        assert not at.exception
        assert f"job `{waiter}` is **queued — place 1 of 1**" in markdown(at)
        assert any("queued — place 1 of 1" in p.proto.text for p in at.get("progress"))

        over = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        assert not over.exception
        queue = next(df.value for df in over.dataframe if "slot" in getattr(df.value, "columns", []))
        rows = queue.set_index("job")
        assert list(queue["job"]) == [holder, waiter]  # running first, then the line in order
        assert rows.loc[holder, "state"] == "running" and rows.loc[holder, "slot"].startswith("slot 0 · ")
        assert rows.loc[waiter, "state"] == "queued — place 1 of 1" and rows.loc[waiter, "slot"] == ""

        at.button(key="toy_cancel").click().run()  # the panel's Cancel on the queued job
        assert not at.exception
        st = jobs.job_status(waiter)
        assert st["state"] == "cancelled" and "started" not in st  # out of the line before it ever ran
        assert jobs.waiting_jobs() == []
        assert f"job `{waiter}` is **cancelled**" in markdown(at)
        assert at.button(key="toy_resume").label == "Resume"
    finally:
        jobs.cancel_job(holder, grace_s=2, wait=True)


def test_raising_the_slots_on_the_overview_starts_the_job_already_waiting():
    holder = jobs.start_job("count", LONG)
    waiter = jobs.start_job("count", SHORT)
    try:
        wait_until(lambda: jobs.job_status(holder)["state"] == "running")
        wait_until(lambda: jobs.job_status(waiter).get("queue") == {"place": 1, "of": 1})
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        assert any("applies to the jobs waiting in the queue at once" in c.value for c in at.caption)
        at.number_input(key="queue_slots").set_value(2)
        at.button(key="queue_save").click().run()
        assert not at.exception
        said = at.success[0].value
        assert said.startswith("Saved: 2 slot(s)") and "The 1 waiting job(s) use it" in said
        assert "1 running job(s) keep their slot and threads" in said
        st = jobs.wait_job(waiter, timeout=30)  # no cancel and restart: it took the new slot
        assert st["state"] == "done" and st["slot"]["index"] == 1
        assert jobs.job_status(holder)["state"] == "running"
    finally:
        jobs.cancel_job(holder, grace_s=2, wait=True)


STAGED = {"steps": 300, "sleep": 0.1, "stages": ["warm up", "work"]}  # light: runs at once


def texts(at):
    return [p.proto.text for p in at.get("progress")] + [c.value for c in at.caption]


def test_a_running_job_shows_its_stage_and_time_left_and_a_cancelled_one_no_estimate():
    job = jobs.start_job("count", STAGED)
    try:
        wait_until(lambda: job_timing(jobs.job_status(job))["left_s"] is not None)
        at = AppTest.from_function(panel, args=(STAGED,), default_timeout=30).run()
        assert not at.exception
        bar, caption = at.get("progress")[0].proto.text, " ".join(c.value for c in at.caption)
        assert md_text("left in this stage, then 1 more stage") in bar and "ETA" not in bar
        assert md_text("stage 1 of 2: warm up · ") in caption and md_text(" in this stage · ") in caption
        assert "stage 1/2 warm up: started" in at.expander[0].code[0].value  # the log, from log.txt

        at.button(key="toy_cancel").click().run()
        wait_until(lambda: jobs.job_status(job)["state"] == "cancelled")
        at.run()
        assert not at.exception
        assert not any("left" in t or "estimate" in t for t in texts(at))
        assert at.get("progress")[0].proto.text.startswith(md_text("cancelled — last report: warm up: "))
        assert any(c.value.startswith(md_text("ended in stage 1 of 2: warm up · ran ")) for c in at.caption)
        assert "stage 1/2 warm up: cancelled after" in at.expander[0].code[0].value
    finally:
        jobs.cancel_job(job, grace_s=2, wait=True)


def page_waiting(task):
    from igds.ui.jobs import waiting_notice, waiting_on

    job = waiting_on("count", task=task)
    if job:
        waiting_notice(job, "the counts")


def test_a_page_says_which_job_it_waits_for_and_links_to_the_overview():
    job = jobs.start_job("count", {**STAGED, "task": "math"})
    try:
        wait_until(lambda: (jobs.job_status(job).get("stage") or {}).get("name"))
        from igds.ui.jobs import waiting_on

        assert waiting_on("count", task="math")["job_id"] == job and waiting_on("count")["job_id"] == job
        assert waiting_on("count", task="translation") is None and waiting_on("bootstrap") is None
        at = AppTest.from_function(page_waiting, args=("math",), default_timeout=30).run()
        assert not at.exception
        info = at.info[0].value
        assert info.startswith(md_text(f"Waiting for job {job} (count; running, stage 1 of 2: warm up"))
        assert info.endswith(md_text(": the counts appear when it has finished."))
        assert "(overview)" in " ".join(m.value for m in at.markdown)  # the way to watch or cancel it

        jobs.cancel_job(job, grace_s=2, wait=True)
        assert not AppTest.from_function(page_waiting, args=("math",), default_timeout=30).run().info
    finally:
        jobs.cancel_job(job, grace_s=2, wait=True)


def test_pages_with_nothing_to_show_name_the_queued_bootstrap_instead_of_asking_to_start_it():
    holder = jobs.start_job("count", LONG)  # holds the only slot: the bootstrap waits in the line, never runs
    boot = None
    try:
        wait_until(lambda: jobs.job_status(holder)["state"] == "running")
        boot = jobs.start_job("bootstrap", {})
        wait_until(lambda: jobs.job_status(boot).get("queue") == {"place": 1, "of": 1})
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        for page, what in (("pages/2_features.py", "the features of this task"),
                           ("pages/9_lens.py", "the activations"), ("pages/5_finetune.py", "the stored selections"),
                           ("pages/4_selection.py", "the validated features")):
            at.switch_page(page).run()
            assert not at.exception, (page, at.exception)
            said = " ".join(i.value for i in at.info)
            assert said.startswith(md_text(f"Waiting for job {boot} (bootstrap; queued — place 1 of 1")), (page, said)
            assert md_text(f": {what} appear when it has finished.") in said, (page, said)
            assert "bootstrap the workspace" not in said and "save one on" not in said, (page, said)
        jobs.cancel_job(boot, grace_s=2, wait=True)
        at.switch_page("pages/2_features.py").run()
        assert "bootstrap the workspace on the Overview page first" in " ".join(i.value for i in at.info)
    finally:
        for job in (boot, holder):
            if job:
                jobs.cancel_job(job, grace_s=2, wait=True)
