"""The package layout is the architecture (docs/architecture.md): imports point down, no import loop."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
IGDS = ROOT / "igds"
# lowest first; a module may import its own layer and the layers below it
LAYERS = [
    {"igds", "igds.constants", "igds.settings", "igds.progress", "igds.config", "igds.hashing", "igds.ranking",
     "igds.scope"},
    {"igds.data"},
    {"igds.modeling"},
    {"igds.store"},
    {"igds.method"},
    {"igds.training"},
    {"igds.executor"},
    {"igds.workflow"},
    {"igds.experiment"},
    {"igds.jobs"},
    {"igds.ui", "igds.cli", "igds.__main__", "igds.demo"},
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    for depth in (2, 1):
        prefix = ".".join(module.split(".")[:depth])
        for i, layer in enumerate(LAYERS):
            if prefix in layer:
                return i
    raise AssertionError(f"{module} belongs to no layer; add it to LAYERS and docs/architecture.md")


def igds_imports(path: Path) -> set[str]:
    """Every igds module imported anywhere in the file (function-level imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "igds"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "igds":
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names
                    if (IGDS.parent / f"{node.module}.{a.name}".replace(".", "/")).with_suffix(".py").exists()
                    or (IGDS.parent / f"{node.module}.{a.name}".replace(".", "/")).is_dir()}
    return out


def graph() -> dict[str, set[str]]:
    return {module_name(p): igds_imports(p) for p in IGDS.rglob("*.py")}


def test_imports_point_down_the_layers():
    upward = [f"{mod} (layer {layer_of(mod)}) imports {dep} (layer {layer_of(dep)})"
              for mod, deps in graph().items() for dep in deps if layer_of(dep) > layer_of(mod)]
    assert upward == []


def test_no_import_loop():
    # a module importing its own package (whose __init__ re-exports it) is not a loop
    edges = {m: {d for d in deps if d != m and not m.startswith(d + ".")} for m, deps in graph().items()}
    seen, stack, loops = set(), [], []

    def visit(node):
        if node in stack:
            loops.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt in edges:
                visit(nxt)
        stack.pop()

    for node in sorted(edges):
        visit(node)
    assert loops == [], loops
