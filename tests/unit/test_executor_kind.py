"""The executor kind is read in exactly one place (issue 25): ``igds.executor.registry._kind_of``.

A static scan of ``igds/`` finds every decision on an executor setting's kind: a comparison of any ``.kind`` with an
executor kind's name (``"local"``, ``"ray"``), and a comparison, lookup or ``.get`` keyed by the ``kind`` of a name
that holds an ``ExecutorConfig`` in this code base (``executor``, ``exe``, ``cfg``, ``executor_cfg``). Showing the
setting (the Overview's form, a message) is no decision. A runtime probe records which function reads
``ExecutorConfig.kind`` while a stage opens its pool, checks its setting and decides where a job runs.
"""

import ast
import sys
from pathlib import Path

from igds.executor.config import EXECUTOR_KINDS, ExecutorConfig

IGDS = Path(__file__).resolve().parents[2] / "igds"
HOLDERS = {"executor", "exe", "cfg", "executor_cfg"}
ONE_PLACE = [("igds/executor/registry.py", "_kind_of")]


def is_kind(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "kind"


def is_holder_kind(node) -> bool:
    return is_kind(node) and isinstance(node.value, ast.Name) and node.value.id in HOLDERS


def reads_of_the_kind() -> list[tuple[str, str]]:
    found = []
    for p in sorted(IGDS.rglob("*.py")):
        tree = ast.parse(p.read_text())
        for fn in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(fn):
                if isinstance(node, ast.Compare):
                    sides = [node.left, *node.comparators]
                    decided = any(is_kind(s) for s in sides) and any(
                        is_holder_kind(s) or (isinstance(s, ast.Constant) and s.value in EXECUTOR_KINDS)
                        for s in sides)
                elif isinstance(node, ast.Subscript):
                    decided = is_holder_kind(node.slice)
                elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
                    decided = bool(node.args) and is_holder_kind(node.args[0])
                else:
                    decided = False
                if decided:
                    found.append((str(p.relative_to(IGDS.parent)), fn.name))
    return sorted(set(found))


def test_the_executor_kind_is_read_in_one_place_in_the_source():
    assert reads_of_the_kind() == ONE_PLACE


def test_the_executor_kind_is_read_in_one_place_at_run_time(monkeypatch):
    from igds.executor.registry import check_executor, open_pool, runs_here

    readers = []
    real = ExecutorConfig.__getattribute__

    def spy(self, name):
        if name == "kind":
            frame = sys._getframe(1)
            readers.append((Path(frame.f_code.co_filename).name, frame.f_code.co_name))
        return real(self, name)

    monkeypatch.setattr(ExecutorConfig, "__getattribute__", spy)
    local = ExecutorConfig()
    assert runs_here(local)
    check_executor(ExecutorConfig(kind="ray"), probe=False)
    try:
        open_pool(ExecutorConfig(kind="nowhere"), None)
    except Exception as e:  # an unknown kind is refused by name
        assert "no executor 'nowhere'" in str(e)
    # dataclass machinery (__init__, __post_init__, __repr__, to_dict) aside, only _kind_of reads it
    assert {r for r in readers if not r[1].startswith("__") and r[1] not in ("to_dict", "asdict")} == \
        {("registry.py", "_kind_of")}
