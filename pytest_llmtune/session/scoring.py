"""From a run of a body to a score: the metric that drives the search, the other metrics, or the error.

A miss is a failed assertion (or `pytest.fail`): the instance scores 0 on a pass rate or a max-metric. With a
metric dict, the named metric drives the search and every other number in the dict is kept and shown; a miss
then counts as "failed an assertion", never inferred from a metric's value.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.llm.client import CascadeError
from pytest_llmtune.report.instances import answer_line, answer_lines
from pytest_llmtune.search.evaluation import Evaluation, EvaluationError, TargetError
from pytest_llmtune.search.spec import EvalSpec, MetricError
from pytest_llmtune.session.state import Run
from pytest_llmtune.usage import Usage

__all__ = ["error_of", "evaluation_of", "other_metrics"]


def evaluation_of(run: Run, spec: EvalSpec, item: pytest.Item) -> Evaluation:
    """The run's score; raises `EvaluationError` when the body produced none, `TargetError` when a cascade's check
    raised (a defect of the target's code, not of the config)."""
    if isinstance(run.error, CascadeError):
        raise TargetError(f"{item.nodeid}: {run.error}") from run.error
    error = error_of(run, item)
    if error is not None:
        raise error
    assert run.result is not None
    try:
        if run.result.passed:
            metric, others = spec.metric_of(run.result.returned), other_metrics(run.result.returned, spec)
        else:
            metric, others = spec.miss_value(run.result.miss or ""), {}
    except MetricError as problem:
        raise EvaluationError(f"MetricError: {problem}", where=item.nodeid) from None
    usage = run.llm.usage if run.llm is not None else Usage()
    served = run.llm.answers if run.llm is not None else []
    accepted = answered = None
    if run.llm is not None and run.llm.accept is not None:  # a cascade target: what accept said of the answer
        accepted = bool(run.llm.accepted and run.llm.accepted[-1])
        answered = run.llm.answered[-1] if run.llm.answered and len(run.llm.stages) > 1 else None
    judge = run.llm.judge_usage if run.llm is not None else Usage()
    return Evaluation(metric, run.result.passed, usage, usage.cost, others, answer_line(served), run.result.miss,
                      answer_lines(served), accepted, answered, judge, run.llm.ungraded if run.llm is not None else 0)


def error_of(run: Run, item: pytest.Item) -> EvaluationError | None:
    """Why the run has no score: a setup or teardown error, an exception in the body, a body that never ran."""
    failed = [report for report in run.reports if report.failed or (report.skipped and report.when != "teardown")]
    if run.result is not None and not failed and run.error is None:
        return None
    if run.error is not None:  # raised by the body
        return EvaluationError(signature(run.error), _traceback(run.error), item.nodeid)
    if failed:
        report = failed[0]
        phase = "" if report.when == "call" else f" in {report.when}"
        if report.skipped:
            return EvaluationError(f"skipped{phase}: {_skip_reason(report)}", report.longreprtext, item.nodeid)
        return EvaluationError(_first_line(report.longreprtext) + phase, report.longreprtext, item.nodeid)
    return EvaluationError("the test body did not run", "", item.nodeid)


def signature(error: BaseException) -> str:
    """`Type: first line of the message`: two failures with the same signature failed the same way."""
    message = str(error).strip().split("\n", 1)[0]
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def other_metrics(returned: Any, spec: EvalSpec) -> dict[str, float]:
    if not isinstance(returned, Mapping):
        return {}
    return {str(key): float(value) for key, value in returned.items()
            if key != spec.metric and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value)}


def _first_line(text: str) -> str:
    lines = [line[2:] if line.startswith("E ") else line for line in text.splitlines() if line.startswith("E ")]
    return (lines[0] if lines else (text.strip().splitlines() or ["error"])[0]).strip()


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    return str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)


def _traceback(error: BaseException) -> str:
    """One short traceback: a line per frame. The SDK's errors without their chain (its transport's internals)."""
    if isinstance(error, LlmtuneError):
        return f"{type(error).__name__}: {error}"  # our errors say what to do
    from_sdk = type(error).__module__.split(".", 1)[0] == "openai"
    with _RENDERING:  # CPython 3.11's ast.parse, which renders the source lines, is not safe across threads
        return str(pytest.ExceptionInfo.from_exception(error).getrepr(style="short", chain=not from_sdk))


_RENDERING = threading.Lock()
