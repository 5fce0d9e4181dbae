"""What run_code isolates: the probe, the cgroup paths read from /proc, and the program's view from inside."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_llmtune.evals import Isolation, isolation, run_code
from pytest_llmtune.evals.containment import cgroup_dirs

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
    assert len(full) == 2 and all("read every file" in line or "audit hook" in line for line in full)
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


def test_an_exit_code_that_looks_like_a_signal_stays_an_exit_code() -> None:
    result = run_code("raise SystemExit(137)")

    assert (result.status, result.returncode, result.reason) == ("failed", 137, "exit code 137")


def test_each_run_removes_its_cgroup() -> None:
    found = isolation()
    if found.cgroup_version is None:
        pytest.skip(f"no writable cgroup here: {found.escapes()}")
    named = f"llmtune-{os.getpid()}-"
    run_code("print(1)")

    assert [p for parent in found.cgroup_parents for p in parent.iterdir() if p.name.startswith(named)] == []
