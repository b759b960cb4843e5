"""Layering rules: thin pages, no UI in the library, no heavy imports at package import time."""

import ast
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
