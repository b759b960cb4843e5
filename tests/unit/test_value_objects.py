"""Token scope, length rule and pool defined once (issue 25): an AST scan of ``igds/``.

- A default for ``positions``, ``max_length`` or ``pool_limit`` (a function's parameter or a config field; and
  ``pool_setting`` of a config) is a value object's from :mod:`igds.scope` (or None: "not given"), never a literal
  of its own; no ``.get("positions", <literal>)``-style fallback either. The stages themselves pass the run's own
  (``cfg.scope``, ``cfg.length``, ``sel_cfg.pool``).
- No function takes more than 10 parameters, except those named here with a reason.
"""

import ast
from pathlib import Path

import pytest

from igds.method.config import ExtractConfig, InterventionConfig
from igds.method.selection import SelectionConfig
from igds.scope import CONTENT, DEFAULT_POOL, STAGE_LENGTH, LengthRule, PoolSpec, TokenScope

IGDS = Path(__file__).resolve().parents[2] / "igds"
NAMES = {"positions", "max_length", "pool_limit"}
FIELD_NAMES = NAMES | {"pool_setting"}
MAX_PARAMS = 10
# function -> why it takes more than MAX_PARAMS parameters
MANY_PARAMS = {
    "igds/store/results.py:replace_eval": "one row of the evals table, column by column, in one SQL statement",
    "igds/training/distributed.py:train_lora_ray": "Ray Train's worker setup (spec, data, config, CPUs, GPUs, "
                                                   "env) plus the local trainer's callbacks, passed through",
    "igds/data/ingest.py:_scan": "the streaming reader's per-file state (limits, mapping, counters) in one pass",
    "igds/method/steer.py:generate_steered": "a generation (prompt, budget) and a steering edit (features, "
                                              "α, mode, scope) that the lens page sets one widget each",
    "igds/workflow/stages.py:select_igds": "live_selection's inputs (run, task, effects, selection and resonance "
                                           "configs, SAE, matrix) plus the stored selection's name, preset, quartile",
    "igds/workflow/vetting.py:save_vetted_selection": "select_igds's inputs plus the vetting session it applies",
}


def py_files():
    return [p for p in sorted(IGDS.rglob("*.py")) if p.name != "scope.py" or p.parent != IGDS]


def rel(p: Path) -> str:
    return str(p.relative_to(IGDS.parent))


def scope_names(tree: ast.Module) -> set[str]:
    """Names this module imported from igds.scope."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "igds.scope":
            out |= {a.asname or a.name for a in node.names}
    return out


def root_name(node) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def from_scope(default, allowed: set[str]) -> bool:
    """A default that is None or read off a value object imported from igds.scope."""
    return (isinstance(default, ast.Constant) and default.value is None) or root_name(default) in allowed


def test_defaults_of_scope_length_and_pool_come_from_the_value_objects():
    bad = []
    for p in py_files():
        tree = ast.parse(p.read_text())
        allowed = scope_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                positional = a.posonlyargs + a.args
                pairs = list(zip(positional[len(positional) - len(a.defaults):], a.defaults, strict=True))
                pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
                bad += [f"{rel(p)}:{node.lineno} {node.name}({arg.arg}={ast.unparse(d)})" for arg, d in pairs
                        if arg.arg in NAMES and not from_scope(d, allowed)]
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in NAMES and isinstance(node.args[1], ast.Constant)):
                bad.append(f"{rel(p)}:{node.lineno} .get({node.args[0].value!r}, <default>)")
    assert bad == [], "defaults outside igds/scope.py:\n" + "\n".join(bad)


def test_config_fields_take_their_defaults_from_the_value_objects():  # dataclass fields: AnnAssign, not args
    bad = []
    for p in py_files():
        tree = ast.parse(p.read_text())
        allowed = scope_names(tree)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for stmt in cls.body:
                if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and stmt.target.id in FIELD_NAMES and stmt.value is not None):
                    continue
                value = stmt.value
                if isinstance(value, ast.Call) and getattr(value.func, "id", None) == "field":
                    value = next((k.value for k in value.keywords if k.arg == "default"), None)
                if value is not None and not from_scope(value, allowed):
                    bad.append(f"{rel(p)}:{stmt.lineno} {cls.name}.{stmt.target.id} = {ast.unparse(value)}")
    assert bad == [], "config defaults not from igds.scope:\n" + "\n".join(bad)


def test_no_function_takes_more_than_ten_parameters_unless_named_with_a_reason():
    found = {}
    for p in py_files():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                names = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
                n = len(names) - (names[:1] in (["self"], ["cls"])) + bool(a.vararg) + bool(a.kwarg)
                if n > MAX_PARAMS:
                    found[f"{rel(p)}:{node.name}"] = n
    assert set(found) - set(MANY_PARAMS) == set(), found
    assert set(MANY_PARAMS) - set(found) == set(), "named but no longer over the limit: drop them from the list"


def test_the_configs_carry_their_value_objects():
    assert ExtractConfig().scope == CONTENT and ExtractConfig().length == STAGE_LENGTH
    assert InterventionConfig().scope == CONTENT and InterventionConfig(max_length=96).length == LengthRule(96)
    assert SelectionConfig(pool_setting="task-only", pool_limit=5).pool == PoolSpec("task-only", 5)
    assert SelectionConfig().pool == DEFAULT_POOL
    with pytest.raises(ValueError, match="positions must be one of"):
        TokenScope("everything")
    with pytest.raises(ValueError, match="pool setting"):
        SelectionConfig(pool_setting="both")
    with pytest.raises(ValueError, match="pool_limit must be >= 0"):
        PoolSpec(limit=-1)
    run = {"config": {"extract": {"positions": "all", "max_length": 128}}}
    assert TokenScope.of_run(run) == TokenScope("all")
    assert TokenScope.of_run({"config": {"extract": {}}}) == CONTENT  # a run stored before the field
