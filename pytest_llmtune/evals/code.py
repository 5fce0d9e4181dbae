"""Run generated Python in a separate, limited process, and score code samples (pass@k, choose by tests).

What `run_code` isolates, and what it does not (POSIX only; a plain process, not a sandbox):
- Isolated: the caller's process (the program runs in a new `python -I -B` process), the caller's environment
  (the child sees PATH, and HOME and TMPDIR pointing at its own temporary working directory, removed afterwards;
  no API keys), wall-clock time, CPU time, address space (RLIMIT_AS), file size (RLIMIT_FSIZE), open files,
  core dumps, the number of processes (RLIMIT_NPROC, which Linux does not enforce for root), and the output kept.
  The child runs in its own session; the whole process group is killed when the program ends or times out, so
  forked children die with it.
- A guard against accidents, not a security boundary: an audit hook (`sys.addaudithook`) in the child refuses
  file writes, renames, removals and permission changes outside its working directory, and refuses starting
  other programs (subprocess, os.system, os.exec*, which would run without the hook). Code that uses ctypes,
  C extensions, or file descriptors opened by other means gets past it; a path writable by the same user is
  still writable to such code.
- Not isolated: the network (no network namespace), reading files (the whole filesystem the user can read),
  and a grandchild that calls `setsid()` escapes the group kill (only a PID namespace or cgroup would catch it).
  A few calls raise no audit event (os.mkfifo, os.mknod, binding a Unix socket); paths relative to a directory
  descriptor are resolved through /proc (Linux), elsewhere they are refused.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["CodeChoice", "CodeResult", "Status", "check_program", "choose", "extract_code", "pass_at_k", "run_code"]

Status = Literal["passed", "failed", "timeout", "memory", "crashed"]

MAX_FILE_BYTES = 16 * 2**20  # RLIMIT_FSIZE: a program writing more is stopped with "File too large"
MAX_OPEN_FILES = 256
PROCESS_MARGIN = 64  # processes (tasks) the program may add to those its user already runs
EXIT_GRACE = 1.0  # seconds to drain the pipes after the program ended and its group was killed
CHUNK = 65_536

# Runs first in the child: its limits, then the write guard, then the program from main.py. Limits are set
# here, not in a preexec_fn, because @llm_eval tests run in threads and preexec_fn is unsafe with threads.
_BOOTSTRAP = r"""
import os, resource, sys

def _limit(kind, soft, hard):
    _, ceiling = resource.getrlimit(kind)
    if ceiling != resource.RLIM_INFINITY:
        soft, hard = min(soft, ceiling), min(hard, ceiling)
    try:
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        pass  # a limit this platform refuses (macOS and RLIMIT_AS): run without it rather than not at all

def _guard(root):
    write = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    paths = {"os.mkdir": ((0, 2),), "os.rename": ((0, 2), (1, 3)), "os.link": ((0, 2), (1, 3)),
             "os.symlink": ((1, 2),), "os.truncate": ((0, -1),), "os.chmod": ((0, 2),), "os.chown": ((0, 3),),
             "os.utime": ((0, 3),), "os.remove": ((0, 1),), "os.rmdir": ((0, 1),), "shutil.rmtree": ((0, 1),),
             "os.setxattr": ((0, -1),), "os.removexattr": ((0, -1),)}
    spawns = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn")
    allowed = {os.devnull, "/dev/stdout", "/dev/stderr"}

    def outside(path, dir_fd):
        if path is None or isinstance(path, int):
            return False  # a descriptor already open
        path = os.path.abspath(os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}") if isinstance(dir_fd, int)
                                            and dir_fd >= 0 else os.getcwd(), os.fsdecode(path)))
        real = os.path.realpath(path)  # a symlink inside pointing outside is outside
        return path not in allowed and real != root and not real.startswith(root + os.sep)

    def refuse(what):
        raise PermissionError(13, f"llmtune run_code: {what} is refused")

    def hook(event, args):
        if event in spawns:
            refuse(f"starting a program ({event})")
        targets = [(args[0], None)] if event == "open" and (args[2] or 0) & write else []
        targets += [(args[p], args[d] if 0 <= d < len(args) else None) for p, d in paths.get(event, ())]
        for path, dir_fd in targets:
            try:
                out = outside(path, dir_fd)
            except (OSError, ValueError, TypeError):
                out = True
            if out:
                refuse(f"writing outside the working directory ({event} {os.fsdecode(path)!r})")

    sys.addaudithook(hook)

memory, cpu, fsize, nproc, nofile = map(int, sys.argv[1:])
_limit(resource.RLIMIT_AS, memory, memory)
_limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL a second later
_limit(resource.RLIMIT_FSIZE, fsize, fsize)
_limit(resource.RLIMIT_NOFILE, nofile, nofile)
_limit(resource.RLIMIT_CORE, 0, 0)
if nproc > 0:
    _limit(resource.RLIMIT_NPROC, nproc, nproc)
with open("main.py", encoding="utf-8") as source:
    _code = compile(source.read(), "main.py", "exec")
_guard(os.path.realpath(os.getcwd()))
sys.argv = ["main.py"]
exec(_code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})
"""


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

    The call returns within about `timeout` seconds plus one. Output beyond `max_output` bytes per stream is
    read and discarded, never held in memory.
    """
    _require(timeout > 0, "timeout", timeout, "timeout > 0")
    _require(memory_mb >= 16, "memory_mb", memory_mb, "memory_mb >= 16")
    _require(max_output >= 0, "max_output", max_output, "max_output >= 0")
    limits = [memory_mb * 2**20, math.ceil(timeout) + 1, MAX_FILE_BYTES, _process_limit(), MAX_OPEN_FILES]
    with tempfile.TemporaryDirectory(prefix="llmtune-code-", ignore_cleanup_errors=True) as workdir:
        Path(workdir, "main.py").write_text(program, encoding="utf-8")
        started = time.monotonic()
        returncode, stdout, stderr = _execute(workdir, [str(v) for v in limits], started + timeout, max_output)
        seconds = time.monotonic() - started
    out, err = stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    status, reason = _classify(returncode, err, timeout)
    return CodeResult(status == "passed", status, returncode, out, err, seconds, reason)


def _require(ok: bool, name: str, value: object, constraint: str) -> None:
    if not ok:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be `{constraint}`")


def _execute(workdir: str, limits: list[str], deadline: float, max_output: int) -> tuple[int | None, bytes, bytes]:
    """Start the child in its own session, collect its output until it ends or the deadline, kill its group."""
    command = [sys.executable, "-I", "-B", "-X", "utf8", "-c", _BOOTSTRAP, *limits]
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": workdir, "TMPDIR": workdir}
    pipe = subprocess.PIPE
    with subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=pipe, stderr=pipe,
                          start_new_session=True) as process:
        try:
            stdout, stderr = _collect(process, deadline, max_output)
            ended = _has_exited(process)
        finally:
            _kill_group(process.pid)  # before reaping: until then its pid, the group's id, cannot be reused
            process.wait()
    return (process.returncode if ended else None), bytes(stdout), bytes(stderr)


def _collect(process: subprocess.Popen[bytes], deadline: float, max_output: int) -> tuple[bytearray, bytearray]:
    """Read both pipes in chunks until they close and the child has exited, or until the deadline."""
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = bytearray(), bytearray()
    keep = {process.stdout.fileno(): (stdout, False), process.stderr.fileno(): (stderr, True)}
    with selectors.DefaultSelector() as selector:
        for fd in keep:
            selector.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline and (selector.get_map() or not _has_exited(process)):
            for key, _ in selector.select(timeout=min(0.05, max(0.0, deadline - time.monotonic()))):
                _read_chunk(selector, key.fd, *keep[key.fd], max_output)
            if _has_exited(process):
                _kill_group(process.pid)  # children left behind hold the pipes open: they go too
                deadline = min(deadline, time.monotonic() + EXIT_GRACE)
    return stdout, stderr


def _read_chunk(selector: selectors.BaseSelector, fd: int, kept: bytearray, tail: bool, max_output: int) -> None:
    """Append one chunk to `kept` and trim it to `max_output` bytes: the head, or the tail for stderr."""
    chunk = os.read(fd, CHUNK)
    if not chunk:
        selector.unregister(fd)
        return
    kept += chunk
    if len(kept) > max_output and tail:
        del kept[: len(kept) - max_output]
    elif len(kept) > max_output:
        del kept[max_output:]


def _has_exited(process: subprocess.Popen[bytes]) -> bool:
    """True once the child has exited, without reaping it (WNOWAIT), so the group can still be killed safely."""
    if not hasattr(os, "waitid"):  # macOS before Python 3.13: reaping leaves a small window for pid reuse
        return process.poll() is not None
    return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # nobody left in the group
        os.killpg(pid, signal.SIGKILL)


def _process_limit() -> int:
    """RLIMIT_NPROC counts every task of the user, so the limit is what the user runs now plus a margin.

    0 (leave it) for root, whom Linux exempts, and without /proc.
    """
    if os.getuid() == 0 or not os.path.isdir("/proc/self/task"):
        return 0
    tasks = 0
    for entry in os.scandir("/proc"):
        with contextlib.suppress(OSError):  # a process that ended while we counted
            if entry.name.isdigit() and entry.stat().st_uid == os.getuid():
                tasks += len(os.listdir(f"/proc/{entry.name}/task"))
    return tasks + PROCESS_MARGIN


def _classify(returncode: int | None, stderr: str, timeout: float) -> tuple[Status, str]:
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")[:200]
    if returncode is None:
        return "timeout", f"still running after {timeout:g} s: killed with its process group"
    if returncode == -signal.SIGXCPU:
        return "timeout", "CPU time limit (RLIMIT_CPU) reached"
    if returncode == 0:
        return "passed", "exit code 0"
    if last.startswith("MemoryError") or "out of memory" in stderr.lower():
        return "memory", f"out of memory (RLIMIT_AS): {last}"
    if returncode < 0:
        return _signalled(returncode)
    return "failed", last or f"exit code {returncode}"


def _signalled(returncode: int) -> tuple[Status, str]:
    name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)
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
