"""Jobs submitted to a Ray cluster (the session's local Ray, Jobs API through its dashboard): progress, log and
cancel come back through the job folder; the dashboard's job panel starts, shows and cancels them; resume
resubmits; a Ray job that ended without a final state reads as dead."""


from streamlit.testing.v1 import AppTest

from igds import jobs
from igds.executor import ExecutorConfig, save_executor_config
from igds.jobs import ray_target
from igds.store import ActivationStore
from igds.ui.widgets import md_text
from tests.helpers import wait_until

PARAMS = {"steps": 30, "sleep": 0.1}


def panel(params):
    from igds.ui.jobs import job_launcher

    job_launcher("count", params, label="Toy count", key="toy")


def test_job_submitted_from_the_panel_runs_on_ray_shows_progress_cancels_and_resumes(ray_local):
    # the workspace's executor setting sends jobs to the cluster; the panel's Start button calls start_job(kind, params)
    save_executor_config(ActivationStore(), ExecutorConfig(job_target="ray", dashboard_address=ray_local["dashboard"]))
    at = AppTest.from_function(panel, args=(PARAMS,), default_timeout=60).run()
    at.button(key="toy_start").click().run()
    assert not at.exception
    job_id = jobs.list_jobs()[0]["job_id"]
    st = jobs.job_status(job_id)
    assert st["target"] == "ray" and st["ray"]["submission_id"] == f"igds-{job_id}-a1"
    assert st["ray"]["dashboard"] == ray_local["dashboard"] and st["ray"]["num_cpus"] == 0.0  # a light job

    st = wait_until(lambda: (s := jobs.job_status(job_id))["state"] == "running"
                    and (s.get("progress") or {}).get("done", 0) >= 3 and s)
    assert ray_target.ray_state(st["ray"]) == "RUNNING" and st["heartbeat"]
    at.run()
    assert f"job `{job_id}` is **running** on ray ({ray_local['dashboard']}, igds-{job_id}-a1)" in \
        " ".join(m.value for m in at.markdown)
    assert any(md_text("count: ") in p.proto.text for p in at.get("progress"))  # shown as text

    at.button(key="toy_cancel").click().run()  # the dashboard's Cancel: jobs.cancel_job(job_id)
    st = jobs.wait_job(job_id, timeout=30)
    assert st["state"] == "cancelled" and st["result"]["stopped"] is True
    stopped_at = st["result"]["count"]
    log = jobs.read_log(job_id)  # written on the worker, read here through the job folder
    assert any("step 1 started" in line for line in log) and any(f"cancelled after step {stopped_at}" in line
                                                                  for line in log)
    assert wait_until(lambda: ray_target.ray_state(st["ray"]) in ray_target.ENDED)
    at.run()
    assert at.button(key="toy_resume").label == "Resume"

    at.button(key="toy_resume").click().run()  # resubmits under a new submission id, from the checkpoint
    st = jobs.wait_job(job_id, timeout=60)
    assert st["state"] == "done" and st["attempt"] == 2 and st["result"] == {"count": PARAMS["steps"]}
    assert st["ray"]["submission_id"] == f"igds-{job_id}-a2"
    assert [p["step"] for p in jobs.read_metrics(job_id) if p["attempt"] == 2][0] == stopped_at + 1


def test_a_submitted_job_whose_ray_job_ended_without_a_final_state_reads_dead(ray_local):
    # a Ray job that exits without ever running the job (e.g. its node died before the process started)
    sid = ray_target.submit_entrypoint(ray_local["dashboard"], entrypoint="true", entrypoint_num_cpus=0)
    ray = {"dashboard": ray_local["dashboard"], "submission_id": sid, "num_cpus": 0.0, "num_gpus": 0.0}
    job_id = jobs._new_job("count", {}, None, {"target": "ray", "ray": ray})
    wait_until(lambda: ray_target.ray_state(ray) in ray_target.ENDED)
    st = jobs.job_status(job_id)
    assert st["state"] == "dead" and jobs.cancel_job(job_id)["state"] == "dead"
