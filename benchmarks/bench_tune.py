"""Tune wall time against an endpoint that takes a fixed time per request, beside the ideal requests x latency / N.

    python benchmarks/bench_tune.py

"window" is what the server saw, from the first request's arrival to the last response: its ratio to the ideal
says how many slots stood idle while the tune ran (rung barriers, brackets, held-out scoring). The rest of the
wall time is a fixed cost that does not grow with the tune: starting Python and pytest, importing scipy.stats
(for the Sobol sampler) and openai, and pytest's exit; the replayed rerun shows it.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from _project import FakeOpenAI, make_project, run_pytest
from tabulate import tabulate

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
RUNS = [(0.2, 8), (0.2, 4), (0.2, 1), (1.0, 8)]  # (latency in seconds, concurrency)


class TimedServer(FakeOpenAI):
    """The suite's server, noting when the first request arrived and the last response left."""

    def reset(self) -> None:
        self.requests, self.first, self.last = 0, float("inf"), 0.0
        self._times = threading.Lock()

    def respond(self, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
        arrived = time.perf_counter()
        try:
            return super().respond(path, body, headers)
        finally:
            with self._times:
                self.first, self.last = min(self.first, arrived), max(self.last, time.perf_counter())


def main() -> None:
    rows = []
    for latency, concurrency in RUNS:
        server = TimedServer(latency=latency).start()
        root = make_project({"test_bench.py": TEST})
        server.reset()
        seconds = run_pytest(root, "--llm-tune", f"--llm-concurrency={concurrency}", base_url=server.base_url)
        requests, window = server.requests, server.last - server.first
        ideal = requests * latency / concurrency
        server.reset()
        rerun = run_pytest(root, "--llm-tune", f"--llm-concurrency={concurrency}", base_url=server.base_url)
        server.stop()
        rows.append([latency, concurrency, requests, f"{ideal:.1f}", f"{seconds:.1f}", f"{seconds / ideal:.2f}",
                     f"{window:.1f}", f"{window / ideal:.2f}", f"{seconds - window:.1f}", f"{rerun:.1f}",
                     server.requests])
    print(tabulate(rows, headers=["latency s", "concurrency", "requests", "ideal s", "tune s", "tune/ideal",
                                  "window s", "window/ideal", "fixed s", "rerun s", "rerun requests"]))


if __name__ == "__main__":
    main()
