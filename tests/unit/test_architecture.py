"""Layering rules: thin pages, no UI in the library, no heavy imports at package import time."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = {"torch", "duckdb", "transformers", "peft", "sae_lens"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


@pytest.mark.parametrize("page", sorted((ROOT / "pages").glob("*.py")), ids=lambda p: p.name)
def test_pages_are_thin_and_import_no_heavy_libraries(page):
    assert not imported_modules(page) & HEAVY, f"{page.name} imports {imported_modules(page) & HEAVY}"
    assert len(page.read_text().splitlines()) <= 150
    assert "SELECT" not in page.read_text(), "pages call igds functions instead of running SQL"


def test_library_never_imports_streamlit_outside_ui():
    offenders = [p for p in (ROOT / "igds").rglob("*.py") if "ui" not in p.relative_to(ROOT / "igds").parts
                 and "streamlit" in imported_modules(p)]
    assert offenders == []


def test_import_igds_is_light():
    code = f"import sys, igds, igds.settings, igds.config; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


BULK_TABLES = ("feature_acts", "example_stats", "effects", "effect_summary", "attribution", "recall", "example_nll",
               "selection_members", "eval_outputs", "null_effects", "null_summary", "feature_contexts",
               "dataset_rows", "highlight_tokens", "highlight_acts")
BULK_SQL = re.compile(rf"\b(FROM|JOIN|INTO|UPDATE)\s+({'|'.join(BULK_TABLES)})\b", re.IGNORECASE)


def bulk_table_sql(path: Path) -> list[str]:
    """``file:line: table`` for every string constant (f-string parts included) that reads or writes a bulk table."""
    source = path.read_text()
    lines = source.splitlines()
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            # an implicitly concatenated literal spans several lines: name the one that holds each hit
            span = range(node.lineno, (node.end_lineno or node.lineno) + 1)
            seen: dict[str, int] = {}
            for m in BULK_SQL.finditer(node.value):
                table = m.group(2)
                rows = [i for i in span for _ in re.finditer(rf"\b{table}\b", lines[i - 1], re.IGNORECASE)]
                k = seen[table] = seen.get(table, -1) + 1
                line = rows[k] if k < len(rows) else node.lineno
                hits.append(f"{path.relative_to(ROOT)}:{line}: {table} ({m.group(0)!r})")
    return hits


def test_only_the_store_queries_the_bulk_tables():
    offenders = [hit for p in sorted((ROOT / "igds").rglob("*.py"))
                 if p.relative_to(ROOT / "igds").parts[0] != "store" for hit in bulk_table_sql(p)]
    assert offenders == [], "SQL on bulk tables outside igds/store/ (add a store method):\n" + "\n".join(offenders)
