"""Application code: add two numbers with the locked config, falling back to a second endpoint.

    python app.py 12 35 http://127.0.0.1:8080/v1 [http://fallback:8080/v1 ...]
"""

import sys
from pathlib import Path

from pytest_llmtune import Response, create, locked, usage_summary
from pytest_llmtune.evals import vote

CONFIG = locked("test_arithmetic.py::test_addition", lockfile=Path(__file__).with_name("llmtune.lock"))


def add(a: int, b: int, endpoints: list[str], retry_timeout: float = 10) -> tuple[str | None, Response]:
    """The voted answer, and the response (which endpoint answered: `response.config_index`).

    Each endpoint is retried for up to `retry_timeout` seconds before the next one is tried.
    """
    alternatives = [{"base_url": url, "retry_timeout": retry_timeout} for url in endpoints]
    response = create({"a": a, "b": b}, config_list=alternatives, **CONFIG)
    return vote(response.texts).answer, response


if __name__ == "__main__":
    answer, response = add(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
    print(f"{sys.argv[1]} + {sys.argv[2]} = {answer}  (answered by endpoint #{response.config_index})")
    print("\n".join(usage_summary().lines()))
