"""The layer rules ruff cannot state (its banned-api lists are per folder): the top-level modules other than
plugin.py import no pytest, and application code that loads the lock and calls `create` imports neither pytest nor
scipy nor the search core's statistics, in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "pytest_llmtune"
TOP_LEVEL = sorted(path for path in PACKAGE.glob("*.py") if path.name != "plugin.py")


def imported(path: Path) -> set[str]:
    """The modules `path` imports when it runs (not those under `if TYPE_CHECKING:`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", TOP_LEVEL, ids=[path.name for path in TOP_LEVEL])
def test_a_top_level_module_imports_no_pytest(path: Path) -> None:
    found = {name for name in imported(path) if name.split(".")[0] in ("pytest", "_pytest")
             or name.startswith("pytest_llmtune.session")}

    assert not found, f"{path.name} imports {sorted(found)}: only the session layer speaks pytest"


def test_application_code_loads_no_pytest_and_no_scipy() -> None:
    program = """
import sys
from pytest_llmtune import create, locked, config_list_from_json  # what an application imports
create, locked, config_list_from_json
heavy = [m for m in ("pytest", "_pytest", "scipy", "pytest_llmtune.session", "pytest_llmtune.search.judge",
                     "pytest_llmtune.search.stats") if m in sys.modules]
print(",".join(heavy))
"""
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "", f"application code imported {result.stdout.strip()}"
