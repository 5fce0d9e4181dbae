"""`pytest --llm-test` replaying 1,000 recorded instances, beside plain pytest running 1,000 trivial tests.

    python benchmarks/bench_replay.py [N]
"""

from __future__ import annotations

import sys

from _project import FakeOpenAI, make_project, run_pytest
from tabulate import tabulate

LLM_TEST = '''
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={"model": "m", "temperature": 0, "prompt": "What is {a} + {b}?"})
@pytest.mark.parametrize("a", range(N))
def test_add(llm, a):
    assert llm(a=a, b=1)[0]
'''
PLAIN_TEST = '''
import pytest

@pytest.mark.parametrize("a", range(N))
def test_trivial(a):
    assert a + 1
'''


def main(n: int) -> None:
    server = FakeOpenAI().start()
    llm_project = make_project({"test_llm.py": LLM_TEST.replace("N", str(n))})
    record = run_pytest(llm_project, "--llm-tune", base_url=server.base_url)
    recorded = server.requests
    replay = min(run_pytest(llm_project, "--llm-test") for _ in range(3))
    plain_project = make_project({"test_plain.py": PLAIN_TEST.replace("N", str(n))})
    plain = min(run_pytest(plain_project) for _ in range(3))
    server.stop()
    print(tabulate([
        [f"pytest --llm-tune (records {recorded})", f"{record:.2f}", f"{1000 * record / n:.2f}", ""],
        [f"pytest --llm-test (replays {n})", f"{replay:.2f}", f"{1000 * replay / n:.2f}", f"{replay / plain:.2f}"],
        [f"plain pytest ({n} trivial tests)", f"{plain:.2f}", f"{1000 * plain / n:.2f}", "1.00"],
    ], headers=["run", "wall s (best of 3)", "ms per test", "vs plain"]))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
