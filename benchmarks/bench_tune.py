"""Tune wall time against an endpoint that takes 200 ms per request, beside the ideal requests x 0.2 s / N.

    python benchmarks/bench_tune.py
"""

from __future__ import annotations

from _project import FakeOpenAI, make_project, run_pytest
from tabulate import tabulate

LATENCY = 0.2
TEST = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform, randint

REVIEWS = [f"{word} film number {i}" for i in range(12) for word in ("great", "dull", "brilliant", "boring")]

@llm_eval(space={"model": "m", "temperature": uniform(0, 1), "max_tokens": randint(1, 16),
                 "prompt": choice(["Review: {r}\\nSentiment:", "Examples: ...\\nReview: {r} ->"])},
          holdout=0)  # the same workload as the measurements before holdouts existed
@pytest.mark.parametrize("r", REVIEWS)
def test_sentiment(llm, r):
    assert llm(r=r)[0].startswith("positive" if r.startswith(("great", "brilliant")) else "negative")
'''


def main() -> None:
    server = FakeOpenAI(latency=LATENCY).start()
    rows = []
    for concurrency in (8, 4, 1):
        root = make_project({"test_bench.py": TEST})
        server.requests = 0
        seconds = run_pytest(root, "--llm-tune", f"--llm-concurrency={concurrency}", base_url=server.base_url)
        requests = server.requests
        ideal = requests * LATENCY / concurrency
        server.requests = 0
        rerun = run_pytest(root, "--llm-tune", f"--llm-concurrency={concurrency}", base_url=server.base_url)
        rows.append([concurrency, requests, f"{seconds:.1f}", f"{ideal:.1f}", f"{seconds / ideal:.2f}",
                     f"{(seconds - rerun) / ideal:.2f}", server.requests, f"{rerun:.1f}"])
    server.stop()
    # the rerun replays everything: its time is the fixed cost (start-up, imports, replay), not waiting
    print(tabulate(rows, headers=["concurrency", "requests", "tune s", "ideal s", "tune/ideal",
                                  "(tune-rerun)/ideal", "rerun requests", "rerun s"]))


if __name__ == "__main__":
    main()
