"""What run_code's isolation costs: seconds per program, isolated as this machine allows vs a plain process group.

    python benchmarks/bench_sandbox.py [RUNS]

Rows: a bare `python -I -c` start (the floor), then run_code without namespaces or cgroup (process group and
rlimits only), then run_code as isolated here (PID, mount and network namespaces, and a cgroup where writable).
Each is the median of RUNS runs, interleaved so that noise falls on every row alike; `choose` runs 8 candidates
x 3 tests on 4 workers.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from collections.abc import Callable

from tabulate import tabulate

import pytest_llmtune.evals.code as code_module
from pytest_llmtune.evals import Isolation, choose, isolation, run_code

TRIVIAL = "print(sum(range(1000)))"
CHECK = "def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nassert add(-1, 1) == 0\n"
CANDIDATES = ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n"] * 4
TESTS = ["assert add(2, 3) == 5", "assert add(0, 0) == 0", "assert add(-1, 1) == 0"]


def floor() -> None:
    subprocess.run([sys.executable, "-I", "-c", TRIVIAL], capture_output=True, check=True)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def main(runs: int) -> None:
    here = isolation()
    bare = Isolation((), None, ())
    cases = {"trivial program": lambda: run_code(TRIVIAL), "assertions (HumanEval-like)": lambda: run_code(CHECK),
             "choose: 24 programs, 4 workers": lambda: choose(CANDIDATES, TESTS)}
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(runs):
        times.setdefault(("python -I -c (floor)", "-"), []).append(timed(floor))
        for name, work in cases.items():
            for label, isolated in (("process group", bare), ("isolated here", here)):
                setattr(code_module, "isolation", lambda isolated=isolated: isolated)  # noqa: B010
                times.setdefault((name, label), []).append(timed(work))
    setattr(code_module, "isolation", isolation)  # noqa: B010
    medians = {key: statistics.median(values) for key, values in times.items()}
    rows = [[name, label, f"{seconds * 1000:.1f}",
             f"{seconds / medians[(name, 'process group')]:.2f}" if label == "isolated here" else ""]
            for (name, label), seconds in medians.items()]
    cgroup = f"cgroup v{here.cgroup_version}" if here.cgroup_version else "no cgroup"
    print(f"isolated here: {' '.join(here.unshare) or 'no namespaces'}; {cgroup}")
    print(tabulate(rows, headers=["program", "run as", "ms (median)", "isolated / group"], tablefmt="simple"))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
