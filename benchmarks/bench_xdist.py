"""A four-target tune on pytest-xdist workers: wall time at -n 0, 1 and 2, against the ideal halving, and whether
the locks are the same.

    python benchmarks/bench_xdist.py

Two workloads, each four test files of one target (10 instances, the default search: 170 evaluations a target):
- latency-bound: the server answers each request in 0.15 s, `--llm-concurrency 2` (a provider's limit per key
  would bound it so): the time is the requests' waiting, and workers multiply the requests in flight;
- CPU-bound: the server answers at once and each evaluation's check burns about 25 ms of pure-Python CPU (as
  parsing, a local judge or `run_code` would): threads share one core under the GIL, workers use a core each.
Each run starts from an empty cassette directory, so every request is sent. "ideal" is the -n 0 wall time over
the workers; the goal is -n 2 within 1.3x of it. -n 1 shows xdist's own cost (a controller and one worker).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from _project import FakeOpenAI, make_project, run_pytest
from tabulate import tabulate

TARGET = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

CASES = [(a, a + OFFSET) for a in range(10)]
SPACE = {"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
         "temperature": uniform(0, 1)}


def burn():
    return sum(i * i for i in range(BURN))


@llm_eval(space=SPACE, optimization_budget=None)
@pytest.mark.parametrize("a,b", CASES)
def test_sum(llm, a, b):
    answer = llm(a=a, b=b)[0].split()[0]
    burn()
    assert answer == str(a + b)
'''
WORKLOADS = {"latency-bound": (0.15, 0, 2), "CPU-bound": (0.0, 400_000, 8)}  # latency, burn, concurrency


def project(burn: int) -> Path:
    return make_project({f"test_sum{n}.py": TARGET.replace("OFFSET", str(n)).replace("BURN", str(burn))
                         for n in range(4)})


def locks(root: Path) -> str:
    targets = json.loads((root / "llmtune.lock").read_text())["targets"]
    return json.dumps({name: {k: v for k, v in entry.items() if k != "plugin_version"}
                       for name, entry in targets.items()}, sort_keys=True)


def main() -> None:
    rows = []
    for name, (latency, burn, concurrency) in WORKLOADS.items():
        server = FakeOpenAI(latency=latency).start()
        root = project(burn)
        seconds, locked = {}, {}
        try:
            for workers in (0, 1, 2):
                shutil.rmtree(root / "llmtune_cassettes", ignore_errors=True)
                (root / "llmtune.lock").unlink(missing_ok=True)
                seconds[workers] = run_pytest(root, "--llm-tune", "-n", str(workers), "--llm-concurrency",
                                              str(concurrency), "-p", "no:randomly", base_url=server.base_url)
                locked[workers] = locks(root)
        finally:
            server.stop()
            shutil.rmtree(root, ignore_errors=True)
        ideal = seconds[0] / 2
        rows.append([name, f"{seconds[0]:.1f}", f"{seconds[1]:.1f}", f"{seconds[2]:.1f}", f"{ideal:.1f}",
                     f"{seconds[2] / ideal:.2f}x", "yes" if locked[0] == locked[1] == locked[2] else "NO"])
        time.sleep(1)
    print(f"{os.cpu_count()} cores; 4 targets x 170 evaluations; wall seconds of `pytest --llm-tune -n N`")
    print(tabulate(rows, ["workload", "-n 0", "-n 1", "-n 2", "ideal (-n 0 / 2)", "-n 2 / ideal", "same locks"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
