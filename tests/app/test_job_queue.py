"""The dashboard shows the local job queue: the job panel says "queued — place k of n" and can cancel a queued
job; the Overview page lists running and queued jobs with their place and slot. Real job processes."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

from igds import jobs
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
