"""One evaluation: call a test body, and turn its return value or failed assertion into a metric."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.search.spec import EvalSpec

__all__ = ["Scored", "score_call"]


@dataclass(frozen=True)
class Scored:
    metric: float
    passed: bool
    message: str = ""  # the failed assertion, for a miss


def score_call(call: Callable[[], Any], spec: EvalSpec, misses: tuple[type[BaseException], ...]) -> Scored:
    """A failed assertion (or another of `misses`) is a miss; any other exception propagates as an error."""
    try:
        returned = call()
    except misses as miss:
        message = str(miss).split("\n", 1)[0] or type(miss).__name__
        return Scored(spec.miss_value(message), passed=False, message=message)
    return Scored(spec.metric_of(returned), passed=True)
