"""Find the processes a `run_code` run left alive, by the HOME it gave them (its working directory).

Under a PID namespace the program's own pids mean nothing outside it, so the tests look for the run's
processes from outside: every process of a run inherits HOME=<its working directory> in its environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def alive(pid: int) -> bool:
    """Running: not gone, and not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def survivors(workdir: str, seconds: float = 3.0) -> list[int]:
    """The run's processes still running `seconds` after it returned (killed ones need a moment to go)."""
    deadline = time.monotonic() + seconds
    while True:
        found = [pid for pid in _with_home(workdir) if alive(pid)]
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.05)


def kill(pids: list[int]) -> None:
    """Clean up after a test that shows an escape."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _with_home(workdir: str) -> list[int]:
    marker = f"\0HOME={workdir}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = b"\0" + (entry / "environ").read_bytes()
            except OSError:  # gone meanwhile, or another user's
                continue
            if marker in environ:
                found.append(int(entry.name))
    return found
