"""The Overview's "Where heavy work runs" expander stores the executor setting and the queue's slots that every page,
command and job reads, and refuses a bad address without changing what was stored."""

import socket

from streamlit.testing.v1 import AppTest

from igds.executor.config import executor_config
from igds.jobs.queue import queue_config
from igds.store import ActivationStore


def form():
    from igds.store import ActivationStore
    from igds.ui.executor import executor_settings

    executor_settings(ActivationStore())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


def test_the_form_saves_the_executor_and_queue_settings_and_refuses_a_bad_address():
    at = AppTest.from_function(form, default_timeout=30).run()
    assert not at.exception
    at.radio(key="exe_kind").set_value("ray")
    at.radio(key="exe_target").set_value("ray")
    at.number_input(key="exe_actors").set_value(3)
    at.number_input(key="exe_gpus").set_value(1.0)
    at.button(key="exe_save").click().run()
    assert not at.exception and "Saved: stages run ray, jobs run ray" in at.success[0].value
    cfg = executor_config(ActivationStore())
    assert (cfg.kind, cfg.job_target, cfg.actors, cfg.gpus_per_actor, cfg.address) == ("ray", "ray", 3, 1.0, None)

    port = closed_port()
    for bad, said in (("no-port-here", "write host:port"), (f"127.0.0.1:{port}", f"127.0.0.1:{port}")):
        at.text_input(key="exe_address").set_value(bad)
        at.button(key="exe_save").click().run()
        assert not at.exception and at.error and said in at.error[0].value and "Not saved" in at.error[0].value
        assert executor_config(ActivationStore()).address is None  # what was stored is unchanged

    at.number_input(key="queue_slots").set_value(2)
    at.number_input(key="queue_threads").set_value(1)
    at.button(key="queue_save").click().run()
    assert not at.exception and (queue_config().slots, queue_config().threads_per_slot) == (2, 1)
