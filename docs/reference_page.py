"""The options and ini settings reference (docs/reference.md), generated from the plugin's own declarations so it
cannot drift: `python docs/reference_page.py > docs/reference.md`; tests/test_docs.py checks the committed page."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from pytest_llmtune import plugin  # noqa: E402
from pytest_llmtune.session.settings import INI  # noqa: E402


class _Group:
    def __init__(self) -> None:
        self.options: list[tuple[tuple[str, ...], dict[str, Any]]] = []

    def addoption(self, *names: str, **attrs: Any) -> None:
        self.options.append((names, attrs))


class _Parser:
    def __init__(self) -> None:
        self.group = _Group()

    def getgroup(self, name: str, description: str = "") -> _Group:
        return self.group

    def addini(self, *args: Any, **kwargs: Any) -> None:
        pass


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def page() -> str:
    parser = _Parser()
    plugin.pytest_addoption(parser)  # type: ignore[arg-type]
    lines = ["# Reference: options and ini settings", "",
             "Generated from the plugin's declarations (`docs/reference_page.py`); `pytest --help` shows the same.",
             "Precedence: the command line, then the ini file (`pytest.ini`, `[pytest]` in `tox.ini` or `setup.cfg`, "
             "`[tool.pytest.ini_options]` in `pyproject.toml`), then the default.", "",
             "## Command-line options", "", "| option | meaning |", "|---|---|"]
    for names, attrs in parser.group.options:
        flag = ", ".join(f"`{name}`" + (f" `{attrs['metavar']}`" if attrs.get("metavar") else "") for name in names)
        lines.append(f"| {flag} | {_cell(attrs.get('help', ''))} |")
    lines += ["", "## Ini settings", "", "| setting | meaning | default |", "|---|---|---|"]
    for name, ini in INI.items():
        default = ini.shown or (str(ini.default).lower() if isinstance(ini.default, bool) else str(ini.default))
        lines.append(f"| `{name}` | {_cell(ini.help)} | {_cell(default) or '(empty)'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(page())
