"""A tune against the suite's server limited to 60 requests a minute: evaluations lost, and throughput against
the limit, with the tune reacting to 429s alone (AIMD) and with `llmtune_rpm = 60` pacing it.

"at the limit" is the fastest any client could answer the same requests: the server allows 60 in any 60 s, so a
full window goes at once and the next when the first leaves it; throughput / limit is that over the time the
tune took from its first answer to its last.

    python benchmarks/bench_ratelimit.py [LIMIT]      # LIMIT requests per minute, default 60 (about 9 minutes)

The last two rows tune the same 128 requests as two targets on two pytest-xdist workers (`-n 2`): the limit is
shared (each worker paces half of llmtune_rpm) and a 429's pause holds both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from _project import FakeOpenAI, make_project
from tabulate import tabulate

TEST = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

REVIEWS = [f"{word} film number {i}" for i in range(FIRST, LAST) for word in ("great", "dull")]

@llm_eval(space={"model": "m", "temperature": 0, "max_tokens": choice([8, 9]),
                 "prompt": choice(["Review: {r}\\nSentiment:", "Examples: ...\\nReview: {r} ->"])},
          num_samples=4, holdout=0, strategy="random")  # one rung: 4 configs x 32 instances, 128 requests
@pytest.mark.parametrize("r", REVIEWS)
def test_sentiment(llm, r):
    assert llm(r=r)[0].startswith("positive" if r.startswith("great") else "negative")
'''


def run(limit: int, ini: str, workers: int = 0) -> list[object]:
    server = FakeOpenAI(rate_limit=limit, window=60.0).start()
    halves = [(0, 8), (8, 16)] if workers else [(0, 16)]  # two targets of 64 requests, or one of 128
    root = make_project({f"test_bench{n}.py": TEST.replace("FIRST", str(first)).replace("LAST", str(last))
                         for n, (first, last) in enumerate(halves)})
    (root / "pytest.ini").write_text(f"[pytest]\nllmtune_max_retries = 10\n{ini}\n")
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-bench"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "--llm-tune", "-p", "no:cacheprovider", "-n",
                           str(workers)], cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    server.stop()
    answered = sorted(server.answered)
    span = answered[-1] - answered[0]
    # the fastest any client can go: a full window at once, then the next when the first leaves the window
    ideal = (len(answered) - 1) // limit * 60.0
    failed = done.stdout.count("raised on") + (done.returncode != 0)
    setting = (ini or "(429s only)") + (f", -n {workers}" if workers else "")
    return [setting, len(answered), server.throttled, failed, round(seconds, 1), round(span, 1),
            round(ideal, 1), round(ideal / span, 3) if span else float("nan")]


def main() -> None:
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else 60
    rows = [run(limit, ""), run(limit, f"llmtune_rpm = {limit}"), run(limit, "", 2),
            run(limit, f"llmtune_rpm = {limit}", 2)]
    print(f"the suite's server allows {limit} requests a minute (a 429 with retry-after beyond that)")
    print(tabulate(rows, headers=["setting", "requests answered", "429s", "failed evaluations", "wall s",
                                  "first to last answer s", "at the limit s", "throughput / limit"]))


if __name__ == "__main__":
    main()
