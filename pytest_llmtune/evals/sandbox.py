"""Start a program in a limited child process, collect its output, and kill everything it started.

The child runs `_BOOTSTRAP` in a new `python -I -B`: it joins the run's cgroup (where there is one), forks the
program, waits for it and exits as it did; the program sets its limits and the write guard, then runs main.py.
The child starts under `unshare` where the machine allows (see containment.py), else in a session of its own whose
process group is killed at the end.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from pytest_llmtune.evals.containment import Isolation

__all__ = ["Limits", "Ran", "execute"]

MAX_FILE_BYTES = 16 * 2**20  # RLIMIT_FSIZE: a program writing more is stopped with "File too large"
MAX_OPEN_FILES = 256
PROCESS_MARGIN = 256  # processes (tasks) the program may add to those its user already runs
MAX_TASKS = 256  # processes and threads of one run together, where a cgroup holds them (its waiting parent too)
# numerical libraries start a thread per core on import (and OpenBLAS reserves memory for each): one each here,
# so that `import numpy` neither needs 64 tasks nor 64 buffers on a 64-core machine
ONE_THREAD = dict.fromkeys(["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                            "VECLIB_MAXIMUM_THREADS"], "1")
EXIT_GRACE = 1.0  # seconds to drain the pipes after the program ended and its group was killed
INIT_GRACE = 2.0  # the waiting parent stops the run itself this long after the deadline, should the caller die
TIMED_OUT = 124  # its exit code then (under a PID namespace; without one it is killed with its group: -9)
CHUNK = 65_536

# Limits are set in the child, not in a preexec_fn, because @llm_eval tests run in threads and preexec_fn is
# unsafe with threads.
_BOOTSTRAP = r"""
import os, posix, resource, signal, sys

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
    opener = os.open

    def guarded_open(path, flags, mode=0o777, *, dir_fd=None):
        # the "open" audit event does not carry dir_fd, so a path relative to one is checked here
        if dir_fd is not None and flags & write and outside(path, dir_fd):
            refuse(f"writing outside the working directory (os.open {os.fsdecode(path)!r})")
        return opener(path, flags, mode, dir_fd=dir_fd)

    os.open = posix.open = guarded_open

def _stop_all(*_):  # the caller missed the deadline (it died, or stalled): stop the run, exit TIMED_OUT
    if os.getpid() != 1:  # no PID namespace whose end kills them all: kill the group, this process with it
        os.killpg(0, signal.SIGKILL)
    os._exit(124)

def _report(code):  # exit as the program did; killed by a signal, die of it (PID 1 cannot: exit 128 + it)
    if os.WIFSIGNALED(code):
        sig = os.WTERMSIG(code)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        os._exit(128 + sig)
    os._exit(os.waitstatus_to_exitcode(code))

memory, cpu, fsize, nproc, nofile, started = map(int, sys.argv[1:7])
seconds = float(sys.argv[7])
_limit(resource.RLIMIT_CORE, 0, 0)  # no core file from this process either, should it die of the program's signal
for procs in sys.argv[8:]:  # the run's cgroup, joined first: every process of the run is in it
    with open(procs, "w") as group:
        group.write("0")
os.write(started, b"1")  # tells the caller the sandbox was made; closed before the program could reach it
os.close(started)
program = os.fork()
if program:
    # This process waits for the program and exits as it did. Under `unshare --pid` it is the namespace's
    # init: when it exits, the kernel kills every process left in the namespace. Its own deadline stops the
    # run should the caller die before it kills it.
    signal.signal(signal.SIGALRM, _stop_all)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    while True:
        pid, code = os.waitpid(-1, 0)  # init also reaps the orphans the namespace hands it
        if pid == program:
            _report(code)
_limit(resource.RLIMIT_AS, memory, memory)
_limit(resource.RLIMIT_CPU, cpu, cpu + 1)  # SIGXCPU at the soft limit, SIGKILL a second later
_limit(resource.RLIMIT_FSIZE, fsize, fsize)
_limit(resource.RLIMIT_NOFILE, nofile, nofile)
if nproc > 0:
    _limit(resource.RLIMIT_NPROC, nproc, nproc)
with open("main.py", encoding="utf-8") as source:
    _code = compile(source.read(), "main.py", "exec")
_guard(os.path.realpath(os.getcwd()))
sys.argv = ["main.py"]
exec(_code, {"__name__": "__main__", "__file__": "main.py", "__builtins__": __builtins__})
"""


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu_seconds: int
    deadline: float  # time.monotonic() at which the whole run is killed
    max_output: int  # bytes kept per stream


@dataclass(frozen=True)
class Ran:
    returncode: int | None  # the program's: negative for a signal; None when it was still running at the deadline
    stdout: bytes
    stderr: bytes
    oom_kills: int  # processes the kernel killed at the cgroup's memory limit


def execute(workdir: str, limits: Limits, isolation: Isolation) -> Ran:
    """Run main.py in `workdir` under `limits`, isolated as `isolation` allows; kill everything it started."""
    group = isolation.cgroup(limits.memory_bytes, MAX_TASKS + 1)
    try:
        returncode, stdout, stderr = _run(workdir, limits, isolation.unshare, group.procs if group else [])
        return Ran(returncode, stdout, stderr, group.oom_kills() if group else 0)
    finally:
        if group:
            group.close()


def _run(workdir: str, limits: Limits, unshare: tuple[str, ...], procs: list[str]) -> tuple[int | None, bytes, bytes]:
    read_started, write_started = os.pipe()
    rlimits = [limits.memory_bytes, limits.cpu_seconds, MAX_FILE_BYTES, _process_limit(), MAX_OPEN_FILES]
    own_deadline = max(limits.deadline - time.monotonic(), 0.0) + INIT_GRACE
    command = [*unshare, sys.executable, "-I", "-B", "-X", "utf8", "-c", _BOOTSTRAP,
               *map(str, [*rlimits, write_started, own_deadline]), *procs]
    env = {"PATH": os.environ.get("PATH", os.defpath), "HOME": workdir, "TMPDIR": workdir, **ONE_THREAD}
    try:
        with subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, pass_fds=(write_started,), start_new_session=True) as process:
            os.close(write_started)
            write_started = -1
            try:
                stdout, stderr = _collect(process, limits.deadline, limits.max_output)
                ended = _has_exited(process)
            finally:
                _kill_group(process.pid)  # before reaping: until then its pid, the group's id, cannot be reused
                process.wait()
        started = _was_written(read_started)
    finally:
        for fd in (read_started, write_started):
            if fd >= 0:
                os.close(fd)
    if ended and time.monotonic() >= limits.deadline + INIT_GRACE and process.returncode in (TIMED_OUT, -9):
        return None, bytes(stdout), bytes(stderr)  # the waiting parent's own deadline stopped it: a timeout
    if ended and not started:  # unshare, or the cgroup join, failed: nothing of the program ran
        raise RuntimeError(f"run_code could not start its sandbox ({' '.join(unshare) or 'no namespaces'}): "
                           f"{bytes(stderr).decode('utf-8', 'replace').strip()[-500:]}")
    return _returncode(process.returncode, bool(unshare)) if ended else None, bytes(stdout), bytes(stderr)


def _was_written(fd: int) -> bool:
    os.set_blocking(fd, False)
    try:
        return os.read(fd, 1) == b"1"
    except BlockingIOError:
        return False


def _returncode(code: int, as_init: bool) -> int:
    """The program's exit code, or minus the signal that killed it. Its parent, PID 1 of a namespace, cannot die
    of a signal, so it exits 128 + the signal (the shell's convention): there, such exit codes read as signals."""
    if as_init and code > 128 and code - 128 in signal.valid_signals():
        return 128 - code
    return code


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
