"""What run_code isolates: the probe, the cgroup paths read from /proc, and the program's view from inside."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import survivors

from pytest_llmtune.evals import Isolation, code, isolation, run_code
from pytest_llmtune.evals.containment import STALE_SECONDS, cgroup_dirs

V2_HOST = ("35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n",
           "0::/user.slice/user-1000.slice/session-3.scope\n")
V1_CONTAINER = ("1 0 0:40 /docker/abc /sys/fs/cgroup/memory ro,nosuid - cgroup cgroup rw,memory\n"
                "2 0 0:41 /docker/abc /sys/fs/cgroup/pids ro,nosuid - cgroup cgroup rw,pids\n"
                "3 0 0:42 /docker/abc /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n",
                "12:pids:/docker/abc\n4:memory:/docker/abc/job\n3:cpu,cpuacct:/docker/abc\n")
HYBRID = ("35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
          "39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n",
          "8:pids:/\n4:memory:/ci/job-7\n0::/\n")


def test_cgroup_dirs_on_a_v2_host() -> None:
    assert cgroup_dirs(*V2_HOST) == {"": Path("/sys/fs/cgroup/user.slice/user-1000.slice/session-3.scope")}


def test_cgroup_dirs_in_a_container_that_mounts_its_own_cgroup_as_the_root() -> None:
    assert cgroup_dirs(*V1_CONTAINER) == {"memory": Path("/sys/fs/cgroup/memory/job"),
                                          "pids": Path("/sys/fs/cgroup/pids")}


def test_cgroup_dirs_on_a_hybrid_host_finds_both_versions() -> None:
    assert cgroup_dirs(*HYBRID) == {"memory": Path("/sys/fs/cgroup/memory/ci/job-7"),
                                    "pids": Path("/sys/fs/cgroup/pids"), "": Path("/sys/fs/cgroup/unified")}


def test_cgroup_dirs_ignores_a_hierarchy_our_cgroup_is_not_under() -> None:
    mountinfo = "1 0 0:40 /docker/other /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"

    assert cgroup_dirs(mountinfo, "4:memory:/docker/abc\n") == {}
    assert cgroup_dirs("", "") == {}


def test_escapes_say_what_a_machine_without_namespaces_or_cgroup_leaves_open() -> None:
    bare = Isolation((), None, ()).escapes()
    full = Isolation(("unshare", "--pid", "--fork", "--net"), 1, (Path("/m"), Path("/p"))).escapes()

    assert any("setsid()" in line for line in bare) and any("connect to any host" in line for line in bare)
    assert any("memory_mb in each of several processes" in line for line in bare)
    assert not any("setsid()" in line or "connect to any host" in line or "memory_mb in each" in line
                   for line in full)
    assert any("Unix socket" in line for line in full) and any("read every file" in line for line in full)
    assert Isolation((), None, ()).network and not Isolation(("--net",), None, ()).network


def test_the_probe_runs_once_per_process() -> None:
    assert isolation() is isolation()


def test_the_program_runs_as_the_second_process_of_its_own_namespace() -> None:
    if not isolation().pid_namespace:
        pytest.skip(f"no PID namespace here: {isolation().escapes()}")
    result = run_code("import os\nprint(os.getpid(), os.getppid(), sorted(p for p in os.listdir('/proc') "
                      "if p.isdigit()))")

    assert result.stdout.strip() == "2 1 ['1', '2']"  # its waiting parent is init; nothing else is visible


def test_a_program_killing_itself_is_a_crash_not_ignored_as_init_would_be() -> None:
    result = run_code("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")

    assert (result.status, result.returncode, result.reason) == ("crashed", -9, "killed by SIGKILL")


def test_an_exit_code_above_128_reads_as_a_signal_only_under_a_pid_namespace(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The program's parent is PID 1 of the namespace, which cannot die of a signal: it exits 128 + the signal."""
    if not isolation().pid_namespace:
        pytest.skip(f"no PID namespace here: {isolation().escapes()}")
    namespaced = run_code("raise SystemExit(137)")
    monkeypatch.setattr(code, "isolation", lambda: Isolation((), None, ()))
    plain = run_code("raise SystemExit(137)")

    assert (namespaced.status, namespaced.returncode, namespaced.reason) == ("crashed", -9, "killed by SIGKILL")
    assert (plain.status, plain.returncode, plain.reason) == ("failed", 137, "exit code 137")


@pytest.mark.parametrize("signalled", ["os.kill(os.getpid(), signal.SIGKILL)", "os.abort()",
                                       "signal.raise_signal(signal.SIGTERM)"])
def test_a_program_killed_by_a_signal_is_a_crash_with_or_without_namespaces(
        monkeypatch: pytest.MonkeyPatch, signalled: str) -> None:
    program = f"import os, signal\n{signalled}"
    namespaced = run_code(program)
    monkeypatch.setattr(code, "isolation", lambda: Isolation((), None, ()))
    plain = run_code(program)

    assert namespaced.status == plain.status == "crashed"
    assert namespaced.returncode == plain.returncode and (plain.returncode or 0) < 0
    assert namespaced.reason == plain.reason


def test_each_run_removes_its_cgroup() -> None:
    found = isolation()
    if found.cgroup_version is None:
        pytest.skip(f"no writable cgroup here: {found.escapes()}")
    named = f"llmtune-{os.getpid()}-"
    run_code("print(1)")

    assert [p for parent in found.cgroup_parents for p in parent.iterdir() if p.name.startswith(named)] == []


def test_a_program_cannot_change_how_its_run_is_reported() -> None:
    """Writing into every descriptor its waiting parent holds, then failing: the run is still a failure."""
    program = ("import os\nparent = f'/proc/{os.getppid()}/fd'\nfor fd in os.listdir(parent):\n"
               "    for how in (lambda: os.open(f'{parent}/{fd}', os.O_WRONLY),\n"
               "                lambda: os.open(fd, os.O_WRONLY, dir_fd=os.open(parent, os.O_RDONLY))):\n"
               "        try:\n            os.write(how(), b'0' * 64)\n        except OSError:\n            pass\n"
               "raise SystemExit(3)\n")
    result = run_code(program)

    assert (result.status, result.returncode) == ("failed", 3)


def test_a_sandbox_that_cannot_be_made_raises_instead_of_grading_the_program(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if not shutil.which("unshare"):
        pytest.skip("no unshare here")
    monkeypatch.setattr(code, "isolation", lambda: Isolation((shutil.which("unshare") or "", "--no-such-flag"),
                                                            None, ()))

    with pytest.raises(RuntimeError, match=r"run_code could not start its sandbox .*unshare.*--no-such-flag"):
        run_code("print('hello')")


def test_a_cgroup_the_program_makes_inside_its_own_is_removed_with_it() -> None:
    found = isolation()
    if found.cgroup_version is None or os.geteuid() != 0:
        pytest.skip(f"needs root and a writable cgroup: {found.escapes()}")
    program = ("import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
               "mine = [l.split(':')[2] for l in open('/proc/self/cgroup').read().splitlines() if ':pids:' in l "
               "or l.startswith('0::')][0]\n"
               f"parents = {[str(p) for p in found.cgroup_parents]!r}\n"
               "for parent in parents:\n    for name in os.listdir(parent):\n"
               "        if name.startswith('llmtune-') and mine.endswith(name):\n"
               "            print(libc.mkdir(f'{parent}/{name}/inner'.encode(), 0o755))\n")
    started = time.monotonic()
    result = run_code(program, timeout=1)

    assert result.passed and "0" in result.stdout.split()  # it made one
    assert time.monotonic() - started < 3  # it took 5 s when the inner group blocked the removal
    assert [p for parent in found.cgroup_parents for p in parent.glob(f"llmtune-{os.getpid()}-*")] == []


CALLER = """
import sys
from pytest_llmtune.evals import run_code
print("started", flush=True)
run_code("import os, time\\nprint(os.getcwd(), flush=True)\\ntime.sleep(60)", timeout=float(sys.argv[1]))
"""


def test_a_run_whose_caller_is_killed_stops_on_its_own_and_the_next_probe_removes_its_cgroup(
        tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # the run's working directory, found here
    caller = subprocess.Popen([sys.executable, "-c", CALLER, "3"], stdout=subprocess.PIPE, text=True, env=env)
    assert caller.stdout is not None and caller.stdout.readline() == "started\n"
    workdir = running_program(tmp_path)  # wait until the program runs, however loaded the machine
    caller.kill()  # as kill -9 or the OOM killer would: run_code never gets to kill the run
    caller.wait()
    running_after_the_kill = survivors(workdir, seconds=0)
    left_behind = [p for parent in isolation().cgroup_parents for p in parent.glob(f"llmtune-{caller.pid}-*")]

    assert running_after_the_kill  # nobody killed them: the waiting parent's own deadline must
    assert left_behind or isolation().cgroup_version is None
    assert survivors(workdir, seconds=8) == []  # the deadline, 3 s, plus the waiting parent's 2 s
    for path in left_behind:
        os.utime(path, (time.time() - STALE_SECONDS, time.time() - STALE_SECONDS))  # as if a minute had passed
    probe()
    assert [path for path in left_behind if path.exists()] == []


def running_program(tmp_path: Path, seconds: float = 20.0) -> str:
    """The working directory of the run under `tmp_path`, once its program's process is seen running."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for workdir in tmp_path.glob("llmtune-code-*"):
            if survivors(str(workdir), seconds=0):
                return str(workdir)
        time.sleep(0.02)
    raise AssertionError(f"no run_code program started under {tmp_path} within {seconds} s")


def probe() -> None:
    subprocess.run([sys.executable, "-c", "from pytest_llmtune.evals import isolation; isolation()"], check=True)


def test_the_probe_removes_only_empty_groups_of_dead_runs_a_minute_old() -> None:
    found = isolation()
    if found.cgroup_version is None:
        pytest.skip(f"no writable cgroup here: {found.escapes()}")
    dead = 4_194_999  # above Linux's largest pid: no such process
    young, old = (found.cgroup_parents[0] / f"llmtune-{dead}-{age}" for age in ("young", "old"))
    young.mkdir()
    old.mkdir()
    os.utime(old, (time.time() - STALE_SECONDS - 1,) * 2)
    try:
        probe()
        assert young.exists() and not old.exists()  # a young one may be a live run in another PID namespace
    finally:
        for path in (young, old):
            if path.exists():
                path.rmdir()


@pytest.mark.parametrize("program", ["import os, signal\nos.kill(os.getpid(), signal.SIGRTMIN + 6)",
                                     "raise SystemExit(128 + 40)"], ids=["real-time-signal", "exit-168"])
def test_a_signal_with_no_name_is_a_crash_not_an_error(program: str) -> None:
    result = run_code(program)

    assert (result.status, result.reason) == ("crashed", "killed by signal 40")


@pytest.mark.parametrize(("limits", "constraint"), [({"timeout": 1e10}, "0 < timeout <= 86400.0"),
                                                    ({"memory_mb": 10**13}, "16 <= memory_mb <= 1073741824")])
def test_limits_the_os_cannot_hold_are_refused(limits: dict[str, float], constraint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(constraint)):
        run_code("print(1)", **limits)  # type: ignore[arg-type]


IMMUTABLE = """
import fcntl, os, struct
fd = os.open("stuck", os.O_WRONLY | os.O_CREAT)
fcntl.ioctl(fd, 0x40086602, struct.pack("l", 0x10))  # FS_IOC_SETFLAGS: FS_IMMUTABLE_FL, as chattr +i does
print(os.getcwd())
"""


def test_a_file_the_program_makes_undeletable_does_not_make_run_code_raise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root may make a file immutable")
    monkeypatch.setattr(code, "isolation", lambda: Isolation((), None, ()))  # root with every capability
    result = run_code(IMMUTABLE)

    if result.status != "passed":
        pytest.skip(f"this filesystem has no immutable flag: {result.reason}")
    stuck = Path(result.stdout.strip(), "stuck")
    assert stuck.exists()  # left behind with its directory; run_code returned its result
    with open(stuck) as file:
        fcntl.ioctl(file.fileno(), 0x40086602, struct.pack("l", 0))
    shutil.rmtree(stuck.parent)


STALLED_CALLER = """
import json
from pytest_llmtune.evals import run_code
result = run_code("import time\\ntime.sleep(60)", timeout=1.0)
print(json.dumps([result.status, result.returncode]))
"""


def test_a_caller_stalled_past_the_deadline_still_reads_a_timeout() -> None:
    caller = subprocess.Popen([sys.executable, "-c", STALLED_CALLER], stdout=subprocess.PIPE, text=True)
    time.sleep(0.8)
    caller.send_signal(signal.SIGSTOP)  # as a long GIL hold or a suspended machine would
    time.sleep(3.5)  # past the deadline and the waiting parent's own, which stops the run meanwhile
    caller.send_signal(signal.SIGCONT)
    out, _ = caller.communicate(timeout=30)

    assert json.loads(out) == ["timeout", None]

