"""The docs cannot rot: the reference page is generated from the plugin's declarations, every Python block of the
README and the docs compiles, and every block that is a test module (its first line `# test_x.py`) tunes and gates
against the suite's server. `scripts/test` also builds the site with every Sphinx warning an error."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import FakeOpenAI

ROOT = Path(__file__).parent.parent
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks() -> list[tuple[str, str]]:
    return [(f"{page.name}#{number}", text) for page in PAGES
            for number, text in enumerate(BLOCK.findall(page.read_text(encoding="utf-8")), 1)]


def modules() -> list[tuple[str, str, str]]:
    """The blocks that are test modules: (where, file name, source)."""
    found = []
    for where, text in blocks():
        first = text.splitlines()[0] if text.strip() else ""
        named = re.fullmatch(r"# (test_\w+\.py)", first.strip())
        if named:
            found.append((where, named.group(1), text))
    return found


def test_the_reference_page_is_generated_from_the_plugins_declarations() -> None:
    page = subprocess.run([sys.executable, str(ROOT / "docs" / "reference_page.py")], check=True,
                          capture_output=True, text=True, encoding="utf-8").stdout

    assert (ROOT / "docs" / "reference.md").read_text(encoding="utf-8") == page, (
        "docs/reference.md is out of date: run `.venv/bin/python docs/reference_page.py > docs/reference.md`")


@pytest.mark.parametrize(("where", "text"), blocks(), ids=[where for where, _ in blocks()])
def test_every_python_block_compiles(where: str, text: str) -> None:
    ast.parse(text, filename=where)


def test_the_docs_hold_test_modules_to_run() -> None:
    assert len(modules()) >= 3


@pytest.mark.parametrize(("where", "name", "text"), modules(), ids=[where for where, _, _ in modules()])
def test_a_test_module_of_the_docs_tunes_and_gates(where: str, name: str, text: str, pytester: pytest.Pytester,
                                                    openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(**{name.removesuffix(".py"): text})

    tuned = pytester.runpytest("--llm-tune", "-p", "no:cacheprovider")
    gated = pytester.runpytest("--llm-test", "-p", "no:cacheprovider")

    assert tuned.ret == pytest.ExitCode.OK, tuned.stdout.str()
    assert (pytester.path / "llmtune.lock").exists()
    assert gated.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), gated.stdout.str()
    assert "all " in gated.stdout.str() and "results as locked" in gated.stdout.str()
