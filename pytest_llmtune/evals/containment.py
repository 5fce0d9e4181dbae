"""What this machine lets `run_code` isolate, probed once per process by trying it.

- Namespaces (Linux, util-linux `unshare`): a PID namespace, so that every process the program starts, even one
  that called `setsid()`, dies when the program ends; a mount namespace with its own /proc; a network namespace
  with no interface up, so no connection leaves the sandbox. All inside a user namespace (for root too, where
  one may be made: its root then has no power over the caller's namespaces); a user other than root needs
  unprivileged user namespaces (some distributions turn them off, e.g. Ubuntu 24.04's AppArmor default).
- A cgroup below the caller's own (cgroup v2, or v1's memory and pids hierarchies), where it is writable: the
  memory limit and a task limit then hold for the program and all its processes together, not per process.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Cgroup", "Isolation", "isolation"]

NAMESPACES = ("--pid", "--fork", "--kill-child", "--mount-proc", "--net")
FALLBACKS = (NAMESPACES, ("--pid", "--fork", "--kill-child", "--net"), ("--pid", "--fork", "--kill-child"))
PROBE_SECONDS = 10.0
STALE_SECONDS = 60.0  # a group left by a dead run is removed by the next probe after this
REMOVE_SECONDS = 1.0  # killed processes leave their cgroup within milliseconds; a stuck one is left behind

_probe_lock = threading.Lock()
_probed: list[Isolation] = []


@dataclass(frozen=True)
class Isolation:
    """What `run_code` isolates on this machine, and in `escapes`, what a program can still do."""

    unshare: tuple[str, ...]  # the command that starts the child in new namespaces; () where none can be made
    cgroup_version: int | None  # 2 or 1 when a writable cgroup holds the totals, else None
    cgroup_parents: tuple[Path, ...]  # where each run's cgroup is made: one for v2, memory and pids for v1

    @property
    def pid_namespace(self) -> bool:
        return "--pid" in self.unshare

    @property
    def network(self) -> bool:
        """True when the program can reach the network (no network namespace here)."""
        return "--net" not in self.unshare

    def escapes(self) -> list[str]:
        """What a program run here can do that it should not, in words; see the module docstrings."""
        found = [
            "read every file the user running the tests can read",
            "write files outside its working directory or start programs through ctypes or C extensions "
            "(an audit hook refuses the ordinary ways; it is a guard, not a boundary)",
            "connect to a Unix socket on the filesystem (a network namespace covers network interfaces only)",
        ]
        if os.geteuid() == 0 and self.cgroup_version is not None:
            found.append("leave its cgroup, as root, through ctypes, and so its memory and task limits")
        if os.geteuid() == 0 and self.unshare and "--user" not in self.unshare:
            found.append("enter the caller's namespaces, network included, as root through ctypes (no user "
                         "namespace could be made here)")
        if not self.pid_namespace:
            found.append("keep a process running after the run ends: one that calls setsid() leaves the process "
                         "group that is killed (no PID namespace here)")
        if self.network:
            found.append("connect to any host this machine reaches (no network namespace here)")
        if self.cgroup_version is None:
            found.append("use memory_mb in each of several processes: the memory and CPU limits are per process, "
                         "and the number of processes is " + ("not limited for root" if os.geteuid() == 0
                                                               else "limited per user, not per run"))
        return found

    def cgroup(self, memory_bytes: int, tasks: int) -> Cgroup | None:
        """A new cgroup for one run with these limits, or None where this machine has no writable cgroup."""
        if self.cgroup_version is None:
            return None
        try:
            return Cgroup.create(self.cgroup_version, self.cgroup_parents, memory_bytes, tasks)
        except OSError as error:  # it worked when probed: say so rather than run with weaker limits
            raise RuntimeError(f"run_code could not make the cgroup that limits all its processes together, "
                               f"under {', '.join(map(str, self.cgroup_parents))}: {error}") from error


def isolation() -> Isolation:
    """Probe what this machine allows (once per process; about 0.1 s) and return it."""
    with _probe_lock:
        if not _probed:
            prefix = _unshare_prefix()
            version, parents = _writable_cgroup(prefix)
            _probed.append(Isolation(prefix, version, parents))
    return _probed[0]


def _unshare_prefix() -> tuple[str, ...]:
    """The fullest `unshare` command that runs this Python here, or () where none does."""
    exe = shutil.which("unshare")
    if exe is None or not sys.platform.startswith("linux"):
        return ()
    # A user namespace even for root: its root has no capability over the caller's namespaces, so code that
    # unmounts its /proc (ctypes) still cannot enter the caller's network. Root without one, where none may be made.
    users = [("--user", "--map-root-user"), ()] if os.geteuid() == 0 else [("--user", "--map-root-user")]
    for user in users:
        for flags in FALLBACKS:
            if _runs((exe, *user, *flags), "pass"):
                return (exe, *user, *flags)
    return ()


def _runs(prefix: tuple[str, ...], code: str) -> bool:
    try:
        done = subprocess.run([*prefix, sys.executable, "-I", "-c", code], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=PROBE_SECONDS)
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


@dataclass
class Cgroup:
    """One run's cgroup: the child writes itself into `procs` first thing; `close` kills what is left, removes it."""

    version: int
    dirs: tuple[Path, ...]

    @classmethod
    def create(cls, version: int, parents: tuple[Path, ...], memory_bytes: int, tasks: int) -> Cgroup:
        name = f"llmtune-{os.getpid()}-{secrets.token_hex(4)}"  # never a name a dead run left behind
        made = cls(version, ())
        try:
            for parent in parents:
                (parent / name).mkdir()
                made = cls(version, (*made.dirs, parent / name))
            for file, value in made._limits(memory_bytes, tasks):
                file.write_text(str(value))
        except OSError:
            made.close()  # only what this call made
            raise
        return made

    @property
    def procs(self) -> list[str]:
        return [str(path / "cgroup.procs") for path in self.dirs]

    def _limits(self, memory_bytes: int, tasks: int) -> list[tuple[Path, int]]:
        memory, pids = self.dirs[0], self.dirs[-1]
        if self.version == 2:
            limit, swap = memory / "memory.max", (memory / "memory.swap.max", 0)
        else:  # v1's memsw is memory plus swap; written after the memory limit, since it must never be below it
            limit, swap = memory / "memory.limit_in_bytes", (memory / "memory.memsw.limit_in_bytes", memory_bytes)
        with_swap = [swap] if swap[0].exists() else []  # where the kernel accounts swap
        return [(limit, memory_bytes), *with_swap, (pids / "pids.max", tasks)]

    def oom_kills(self) -> int:
        """Processes the kernel killed for going over the memory limit (0 where the kernel does not count)."""
        events = self.dirs[0] / ("memory.events" if self.version == 2 else "memory.oom_control")
        with contextlib.suppress(OSError):
            for line in events.read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        return 0

    def close(self) -> None:
        """Kill every process still in the group, then remove it and any group the program made inside it.

        Best effort within REMOVE_SECONDS: a process that will not die keeps its group; the next probe removes an
        empty group its dead owner left.
        """
        deadline = time.monotonic() + REMOVE_SECONDS
        for top in reversed(self.dirs):
            while top.exists() and time.monotonic() < deadline:
                for path in _depth_first(top):
                    _kill_all(path)
                    with contextlib.suppress(OSError):
                        path.rmdir()
                if top.exists():
                    time.sleep(0.01)


def _depth_first(top: Path) -> list[Path]:
    return [Path(path) for path, _, _ in os.walk(top, topdown=False)]


def _kill_all(path: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def _remove_left_behind(parents: tuple[Path, ...]) -> None:
    """Remove the groups of runs whose process died before it could (killed with -9, say).

    Only a group that is empty and older than STALE_SECONDS: its pid may belong to another PID namespace (a
    container sharing the hierarchy) where that run is alive, between making its group and joining it.
    """
    for parent in parents:
        for top in parent.glob("llmtune-*-*"):
            pid = top.name.split("-")[1]
            with contextlib.suppress(OSError):
                if Path(f"/proc/{pid}").exists() or time.time() - top.stat().st_mtime < STALE_SECONDS:
                    continue
                for path in _depth_first(top):
                    if not (path / "cgroup.procs").read_text().strip():
                        path.rmdir()


def _writable_cgroup(prefix: tuple[str, ...]) -> tuple[int | None, tuple[Path, ...]]:
    """cgroup v2, else v1, where a cgroup can be made below ours, limited, and joined from inside `prefix`."""
    for version, parents in _cgroup_parents():
        try:
            group = Cgroup.create(version, parents, 64 * 2**20, 8)
        except OSError:
            continue
        try:
            joined = _runs(prefix, f"for p in {group.procs!r}:\n    open(p, 'w').write('0')")
        finally:
            group.close()
        if joined:
            _remove_left_behind(parents)
            return version, parents
    return None, ()


def _cgroup_parents() -> list[tuple[int, tuple[Path, ...]]]:
    """Our own cgroup in each hierarchy that could hold the limits: [(2, (dir,)), (1, (memory, pids))]."""
    try:
        found = cgroup_dirs(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text())
    except OSError:
        return []
    options: list[tuple[int, tuple[Path, ...]]] = []
    if "" in found and {"memory", "pids"} <= set(_read_words(found[""] / "cgroup.controllers")):
        options.append((2, (found[""],)))
    if "memory" in found and "pids" in found:
        options.append((1, (found["memory"], found["pids"])))
    return options


def cgroup_dirs(mountinfo: str, membership: str) -> dict[str, Path]:
    """Where our cgroup is mounted: {"": the v2 directory, "memory": ..., "pids": ...} for those found.

    `mountinfo` and `membership` are the texts of /proc/self/mountinfo and /proc/self/cgroup. A hierarchy
    mounted from below its root (a container's view) holds our cgroup at the part of our path below that root.
    """
    ours: dict[str, str] = {}  # controller ("" for v2) -> our path in that hierarchy
    for line in membership.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            ours[controller] = path
    found: dict[str, Path] = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        root, point, kind = fields[3], fields[4], fields[fields.index("-") + 1]
        for controller in ("", "memory", "pids"):
            is_v2 = kind == "cgroup2" and controller == ""
            is_v1 = kind == "cgroup" and controller in fields[-1].split(",")
            mine = ours.get(controller)
            if (is_v2 or is_v1) and mine is not None and (mine + "/").startswith(root.rstrip("/") + "/"):
                found[controller] = Path(point, mine[len(root.rstrip("/")) :].lstrip("/"))
    return found


def _read_words(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except OSError:
        return []
