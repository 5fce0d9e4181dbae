"""Shared by the benchmarks: a throwaway project and a timed pytest run in a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))

from openai_server import FakeOpenAI  # noqa: E402

__all__ = ["FakeOpenAI", "example", "make_project", "run_pytest"]


def make_project(files: dict[str, str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="llmtune-bench-"))
    (root / "pytest.ini").write_text("[pytest]\n")
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def run_pytest(root: Path, *args: str, base_url: str = "http://127.0.0.1:9/v1") -> float:
    """Wall seconds of `pytest -q ARGS` in a fresh process (exit code 0 or it raises)."""
    env = {**os.environ, "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-bench"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return seconds


def example(folder: str, file: str) -> Any:
    """An example's test module (examples/FOLDER/FILE), imported for its data and checks."""
    path = Path(__file__).resolve().parent.parent / "examples" / folder / file
    spec = importlib.util.spec_from_file_location(f"{folder}_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

