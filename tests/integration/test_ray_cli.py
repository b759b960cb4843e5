"""The executor setting on the command line (issue 17): ``igds executor set`` stores it in the workspace, ``show``
prints it, every stage reads it, and a Ray address where nothing listens is refused by name, before any model
loads, without a traceback."""

import json
import socket

from igds.cli import main
from igds.executor.config import executor_config
from igds.store import ActivationStore


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def test_executor_set_stores_the_setting_and_show_prints_it(capsys):
    assert main(["executor", "show"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "local"
    assert main(["executor", "set", "--kind", "ray", "--address", "10.0.0.5:6379", "--actors", "3",
                 "--cpus-per-actor", "0.5", "--gpus-per-actor", "1"]) == 0
    capsys.readouterr()
    cfg = executor_config(ActivationStore())
    assert (cfg.kind, cfg.address, cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor) == \
        ("ray", "10.0.0.5:6379", 3, 0.5, 1.0)
    # flags not given keep their stored value; an empty address clears it
    assert main(["executor", "set", "--actors", "4", "--address", ""]) == 0
    assert main(["executor", "show"]) == 0
    shown = json.loads(capsys.readouterr().out.split("\n}\n", 1)[1])
    assert shown["actors"] == 4 and shown["kind"] == "ray" and shown["address"] is None
    assert shown["cpus_per_actor"] == 0.5


def test_bad_settings_are_refused_with_a_clear_error(capsys):
    assert main(["executor", "set", "--kind", "spark"]) == 2
    err = capsys.readouterr().err
    assert "no executor 'spark'; registered: local, ray" in err and "Traceback" not in err
    assert main(["executor", "set", "--cpus-per-actor", "0"]) == 2
    assert "cpus_per_actor > 0" in capsys.readouterr().err
    assert executor_config(ActivationStore()).kind == "local"


def test_an_unreachable_ray_address_is_named_before_any_model_loads(capsys, monkeypatch):
    address = f"127.0.0.1:{closed_port()}"

    def no_model(*a, **k):
        raise AssertionError("a model was loaded before the address was checked")

    monkeypatch.setattr("igds.workflow.workspace.load_model", no_model)
    assert main(["extract", "--tasks", "summarization", "--ray-address", address]) == 2
    err = capsys.readouterr().err
    assert f"cannot reach the Ray cluster at '{address}'" in err and "Traceback" not in err
    # the stored setting is used when no flag is given; --check refuses it at set time
    assert main(["executor", "set", "--kind", "ray", "--address", address, "--check"]) == 2
    assert address in capsys.readouterr().err and executor_config(ActivationStore()).kind == "local"
    assert main(["executor", "set", "--kind", "ray", "--address", address]) == 0
    assert main(["intervene", "--task", "summarization"]) == 2
    assert f"cannot reach the Ray cluster at '{address}'" in capsys.readouterr().err
