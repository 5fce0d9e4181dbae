"""What decides a target's result, as fingerprints of syntax trees: a lock is stale when one of them changed.

- `body`: the test function as syntax (comments, formatting and docstrings do not count; its decorators do not
  either: the space, the metric and the instances have fingerprints of their own, and the threshold is a gate
  setting), with the definitions of its own module that it uses, transitively: helpers, constants, fixtures.
- `module:<path>`: each module under the rootdir that the test module imports, transitively (helpers outside the
  test module), whole; and of the `conftest.py` files between the rootdir and the test, the fixtures the test
  asks for and the autouse ones, with the definitions they use (their hooks are not part of it).

Installed packages (anything under site-packages or the interpreter's prefix) are not fingerprinted: pin them.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_llmtune.search.space import fingerprint
from pytest_llmtune.store.lockfile import MODULE_PREFIX

__all__ = ["code_fingerprints"]


def code_fingerprints(function: Callable[..., Any], rootdir: Path) -> dict[str, str]:
    """`{"body": ..., "module:<path relative to rootdir>": ...}` for a test function."""
    function, rootdir = inspect.unwrap(function), rootdir.resolve()
    module = sys.modules.get(function.__module__)
    try:
        source = textwrap.dedent(inspect.getsource(function))
    except (OSError, TypeError):
        return {"body": fingerprint(getattr(function, "__qualname__", repr(function)))}
    node = ast.parse(source).body[0]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        node.decorator_list = []
    nodes = [node, *_enclosing_class(function, module)]
    path = _file_of(module)
    if path is None:
        return {"body": fingerprint("".join(map(_dump, nodes)))}
    found = {"body": fingerprint("".join(map(_dump, nodes)) + _used_definitions(nodes, _parse(path)))}
    for helper in sorted(_project_modules(path, module, rootdir, set())):
        found[MODULE_PREFIX + helper.relative_to(rootdir).as_posix()] = fingerprint(_dump(_parse(helper)))
    for conftest in sorted(_conftests(path, rootdir)):
        tree = _parse(conftest)
        used = _used_definitions([*nodes, *(s for s in tree.body if _autouse(s))], tree)
        if used:
            found[MODULE_PREFIX + conftest.relative_to(rootdir).as_posix()] = fingerprint(used)
    return found


def _dump(node: ast.AST) -> str:
    for child in ast.walk(node):  # docstrings are comments here
        body = getattr(child, "body", None)
        if (isinstance(child, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            child.body = body[1:] or [ast.Pass()]
    return ast.dump(node, include_attributes=False)


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return ast.Module(body=[], type_ignores=[])


def _enclosing_class(function: Callable[..., Any], module: ModuleType | None) -> list[ast.ClassDef]:
    """A test method's class, without the method: its fixtures, its other methods, its attributes."""
    path = _file_of(module)
    names = getattr(function, "__qualname__", "").split(".")
    if path is None or len(names) < 2 or "<locals>" in names:
        return []
    scope: list[ast.stmt] = _parse(path).body
    found: ast.ClassDef | None = None
    for name in names[:-1]:
        found = next((s for s in scope if isinstance(s, ast.ClassDef) and s.name == name), None)
        if found is None:
            return []
        scope = found.body
    assert found is not None
    found.body = [s for s in found.body if not (isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef))
                                                 and s.name == names[-1])] or [ast.Pass()]
    return [found]


def _autouse(statement: ast.stmt) -> bool:
    return isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)) and any(
        keyword.arg == "autouse" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True
        for decorator in statement.decorator_list for keyword in getattr(decorator, "keywords", []))


def _used_definitions(nodes: Sequence[ast.AST], tree: ast.Module) -> str:
    """The module-level definitions of `tree` that `nodes` use by name, and those they use, in the module's order."""
    definitions: dict[str, list[ast.stmt]] = {}
    for statement in tree.body:
        for name in _defined_names(statement):
            definitions.setdefault(name, []).append(statement)
    wanted, used = [name for node in nodes for name in _names(node)], set()
    chosen = {id(node) for node in nodes if node in tree.body}  # autouse fixtures come as themselves
    while wanted:
        name = wanted.pop()
        if name in used:
            continue
        used.add(name)
        for statement in definitions.get(name, []):
            if id(statement) not in chosen:
                chosen.add(id(statement))
                wanted.extend(_names(statement))
    return "".join(_dump(statement) for statement in tree.body if id(statement) in chosen)


def _defined_names(statement: ast.stmt) -> Iterator[str]:
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        yield statement.name
        for decorator in statement.decorator_list:  # @pytest.fixture(name="x")
            for keyword in getattr(decorator, "keywords", []):
                if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                    yield str(keyword.value.value)
    elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        for target in targets:
            yield from (n.id for n in ast.walk(target) if isinstance(n, ast.Name))


def _names(node: ast.AST) -> Iterator[str]:
    """The names `node` reads, and its parameters (fixtures are asked for by name)."""
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            yield child.id
        elif isinstance(child, ast.arg):
            yield child.arg


def _file_of(module: ModuleType | None) -> Path | None:
    file = getattr(module, "__file__", None)
    return Path(file).resolve() if file and str(file).endswith(".py") else None


def _installed(path: Path) -> bool:
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return "site-packages" in path.parts or any(path.is_relative_to(prefix) for prefix in prefixes)


def _in_project(path: Path | None, rootdir: Path) -> bool:
    return path is not None and path.is_relative_to(rootdir) and not _installed(path)


def _project_modules(path: Path, module: ModuleType | None, rootdir: Path, seen: set[Path]) -> set[Path]:
    """The project's modules that the module at `path` imports, transitively (itself excluded)."""
    found: set[Path] = set()
    rootdir = rootdir.resolve()
    for name in _imported(_parse(path), getattr(module, "__package__", None) or ""):
        imported = _file_of(sys.modules.get(name)) or _find(name)
        if not _in_project(imported, rootdir) or imported in seen:
            continue
        assert imported is not None
        seen.add(imported)
        found.add(imported)
        found |= _project_modules(imported, sys.modules.get(name), rootdir, seen)
    found.discard(path)
    return found


def _imported(tree: ast.Module, package: str) -> Iterable[str]:
    """Module names an `import` or `from ... import` in `tree` may load (`from a import b`: a, and a.b)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ("." * node.level) + (node.module or "")
            try:
                absolute = importlib.util.resolve_name(base, package) if node.level else base
            except (ImportError, ValueError):
                continue
            yield absolute
            yield from (f"{absolute}.{alias.name}" for alias in node.names)


def _find(name: str) -> Path | None:
    """A module not imported yet: where it would come from, without importing it (nor its package)."""
    parent = name.rpartition(".")[0]
    if parent and parent not in sys.modules:
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    origin = spec.origin if spec is not None else None
    return Path(origin).resolve() if origin and origin.endswith(".py") else None


def _conftests(path: Path, rootdir: Path) -> set[Path]:
    rootdir = rootdir.resolve()
    found = set()
    for directory in path.parents:
        if not directory.is_relative_to(rootdir):
            break
        conftest = directory / "conftest.py"
        if conftest.is_file() and conftest != path:
            found.add(conftest)
    return found
