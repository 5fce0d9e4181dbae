"""Run generated Python in a separate, limited process, and score code samples (pass@k, choose by tests).

What `run_code` isolates (POSIX; `isolation()` says what this machine allows, `isolation().escapes()` what not):
- Everywhere: the caller's process (the program runs in a new `python -I -B` process) and environment (the child
  sees PATH, and HOME and TMPDIR pointing at its own temporary working directory, removed afterwards; no API
  keys; OMP_NUM_THREADS and the like set to 1, so that numerical libraries start one thread, not one a core);
  wall-clock time; per process: CPU time (RLIMIT_CPU), address space (RLIMIT_AS: each thread's stack takes
  8 MB of it, so memory_mb=512 allows about 60 threads), file size (RLIMIT_FSIZE), open files, core dumps,
  processes (RLIMIT_NPROC, counted per user; Linux exempts root); the output kept. When the program ends or
  times out, the processes it started are killed (see the next point for which). Should the caller itself die
  first (kill -9), the program's waiting parent stops the run 2 s after its deadline; the temporary directory
  is then left behind.
- On Linux where util-linux `unshare` may make namespaces (in a user namespace where one may be made, for root
  too, so that even ctypes code cannot enter the caller's namespaces; root without one elsewhere): a PID
  namespace, so no process survives the run, not even one that called `setsid()`; a network namespace with
  no interface up, so no TCP or UDP connection leaves it, not even to 127.0.0.1 (Unix sockets on the
  filesystem are still reachable); its own /proc. The program's waiting parent is the namespace's PID 1, which
  cannot die of a signal: it exits 128 + the signal instead, so there an exit code above 128 reads as that
  signal (the shell's convention).
  Elsewhere (macOS, containers without the privilege, Ubuntu 24.04's default AppArmor profile): the child runs
  in its own session and its process group is killed at the end, so a process that calls `setsid()` escapes
  and keeps running, and the network is reachable.
- Where a cgroup below the caller's is writable (v2 with the memory and pids controllers, or v1): memory_mb and
  256 tasks (processes and threads) hold for all the run's processes together, and one killed at the memory
  limit makes the status "memory". Elsewhere the limits are per process: k forked processes may use k x
  memory_mb. Run as root, a program that gets past the audit hook (ctypes) can leave the cgroup.
- A guard against accidents, not a security boundary: an audit hook (`sys.addaudithook`) in the child refuses
  file writes, renames, removals and permission changes outside its working directory, and refuses starting
  other programs (subprocess, os.system, os.exec*, which would run without the hook). Code that uses ctypes,
  C extensions, or file descriptors opened by other means gets past it; a path writable by the same user is
  still writable to such code (as root: every path). A few calls raise no audit event (os.mkfifo, os.mknod,
  binding a Unix socket); paths relative to a directory descriptor are resolved through /proc (Linux), elsewhere
  they are refused.
- Not isolated: reading files (the whole filesystem the user can read).
"""


from __future__ import annotations

import math
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pytest_llmtune.evals.containment import isolation
from pytest_llmtune.evals.sandbox import Limits, Ran, execute

__all__ = ["CodeChoice", "CodeResult", "Status", "check_program", "choose", "extract_code", "pass_at_k", "run_code"]

Status = Literal["passed", "failed", "timeout", "memory", "crashed"]
MAX_TIMEOUT = 86_400.0  # a day: beyond it, interval timers overflow somewhere
MAX_MEMORY_MB = 2**30  # a petabyte: beyond it, setrlimit overflows


@dataclass(frozen=True)
class CodeResult:
    """How a program ran: `status` is "passed", "failed", "timeout", "memory" or "crashed"; `reason` one line."""

    passed: bool
    status: Status
    returncode: int | None  # negative: killed by that signal; None: still running at the deadline
    stdout: str  # its first `max_output` bytes
    stderr: str  # its last `max_output` bytes: the traceback is at the end
    seconds: float
    reason: str


@dataclass(frozen=True)
class CodeChoice:
    """The candidate that passed most tests (ties to the earliest), and how many each candidate passed."""

    index: int
    passed: tuple[int, ...]
    total: int  # tests run per candidate


def run_code(program: str, *, timeout: float = 5.0, memory_mb: int = 512, max_output: int = 64_000) -> CodeResult:
    """Run Python source in a new, limited process in a fresh temporary directory; see the module docstring.

    The call returns within about `timeout` seconds plus one, plus the time to remove the files the program
    wrote. Output beyond `max_output` bytes per stream is read and discarded, never held in memory.
    """
    _require(0 < timeout <= MAX_TIMEOUT, "timeout", timeout, f"0 < timeout <= {MAX_TIMEOUT}")
    _require(16 <= memory_mb <= MAX_MEMORY_MB, "memory_mb", memory_mb, f"16 <= memory_mb <= {MAX_MEMORY_MB}")
    _require(max_output >= 0, "max_output", max_output, "max_output >= 0")
    isolated = isolation()
    workdir = tempfile.mkdtemp(prefix="llmtune-code-")
    try:
        Path(workdir, "main.py").write_text(program, encoding="utf-8")
        started = time.monotonic()
        limits = Limits(memory_mb * 2**20, math.ceil(timeout) + 1, started + timeout, max_output)
        ran = execute(workdir, limits, isolated)
        seconds = time.monotonic() - started
    finally:
        # never raises: a file the program made undeletable (as root: chattr +i) is left behind with its directory
        shutil.rmtree(workdir, ignore_errors=True)
    out, err = ran.stdout.decode("utf-8", "replace"), ran.stderr.decode("utf-8", "replace")
    status, reason = _classify(ran, err, timeout, memory_mb)
    return CodeResult(status == "passed", status, ran.returncode, out, err, seconds, reason)


def _require(ok: bool, name: str, value: object, constraint: str) -> None:
    if not ok:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be `{constraint}`")


def _classify(ran: Ran, stderr: str, timeout: float, memory_mb: int) -> tuple[Status, str]:
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")[:200]
    returncode = ran.returncode
    if returncode is None:
        return "timeout", f"still running after {timeout:g} s: killed with every process it started"
    if returncode == -signal.SIGXCPU:
        return "timeout", "CPU time limit (RLIMIT_CPU) reached"
    if returncode == 0:
        return "passed", "exit code 0"
    if ran.oom_kills:
        return "memory", (f"out of memory: its processes together reached {memory_mb} MB (cgroup); "
                          f"the kernel killed {ran.oom_kills}")
    if last.startswith("MemoryError") or "out of memory" in stderr.lower():
        return "memory", f"out of memory (RLIMIT_AS): {last}"
    if returncode < 0:
        return _signalled(returncode)
    return "failed", last or f"exit code {returncode}"


def _signalled(returncode: int) -> tuple[Status, str]:
    try:
        name = signal.Signals(-returncode).name
    except ValueError:  # a real-time signal has a number, no name
        name = f"signal {-returncode}"
    return "crashed", f"killed by {name}"


def check_program(
    completion: str,
    test: str,
    *,
    entry_point: str | None = None,
    prompt: str = "",
    timeout: float = 5.0,
    memory_mb: int = 512,
) -> CodeResult:
    """Run `prompt + completion`, then `test`, then `check(entry_point)` when given (HumanEval's layout)."""
    program = prompt + completion + "\n" + test
    if entry_point is not None:
        program += f"\n\ncheck({entry_point})\n"
    return run_code(program, timeout=timeout, memory_mb=memory_mb)


_FENCE = r"```[ \t]*{lang}[^\n]*\n(.*?)(?:```|\Z)"  # an unclosed fence (the model ran out of tokens) runs to the end


def extract_code(text: str) -> str:
    """The code in the first ```python fence, else in the first ``` fence of any language, else the text."""
    for lang in ("(?:python3?|py)(?=[ \t]*\n)", ""):
        match = re.search(_FENCE.format(lang=lang), text, re.DOTALL)
        if match:
            return match.group(1)
    return text


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of pass@k from `n` samples of which `c` passed: 1 - C(n-c, k) / C(n, k).

    Chen et al. 2021 ("Evaluating Large Language Models Trained on Code"), the HumanEval paper.
    """
    _require(n >= 1, "n", n, "n >= 1")
    _require(0 <= c <= n, "c", c, f"0 <= c <= n = {n}")
    _require(1 <= k <= n, "k", k, f"1 <= k <= n = {n}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def choose(
    candidates: Sequence[str],
    tests: Sequence[str],
    *,
    prompt: str = "",
    timeout: float = 5.0,
    memory_mb: int = 512,
    workers: int = 4,
) -> CodeChoice:
    """Run every candidate against every test separately and pick the one that passes most.

    `tests` are Python snippets, usually one assertion each (`"assert add(2, 3) == 5"`). They may come from
    the user or be generated, e.g. by asking the model for assertions about the function (as in CodeT):
    either way they are strings here. Generated tests can be wrong; a candidate that passes more of them is
    still the better bet. Runs `workers` programs at a time; ties go to the earliest candidate.
    """
    _require(len(candidates) >= 1, "len(candidates)", len(candidates), "len(candidates) >= 1")
    _require(workers >= 1, "workers", workers, "workers >= 1")

    def passes(pair: tuple[str, str]) -> bool:
        return check_program(pair[0], pair[1], prompt=prompt, timeout=timeout, memory_mb=memory_mb).passed

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(passes, [(candidate, test) for candidate in candidates for test in tests]))
    m = len(tests)
    passed = tuple(sum(results[i * m : (i + 1) * m]) for i in range(len(candidates)))
    return CodeChoice(passed.index(max(passed)), passed, m)
