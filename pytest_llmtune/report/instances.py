"""Each instance under the locked (or winning) config: its score, answer and miss reason, as junit properties,
as a table with -v, and as "MISS" lines after pytest's short test summary (-rA, -rm)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from pytest_llmtune.records import BodyResult
from pytest_llmtune.report.leaderboard import cut, render
from pytest_llmtune.search.spec import EvalSpec, MetricError
from pytest_llmtune.usage import Usage

__all__ = ["ANSWER_PROPERTY", "MISS_PROPERTY", "Row", "answer_line", "answer_lines", "instance_properties",
           "instance_table", "miss_lines", "report_row", "run_rows"]

MISS_PROPERTY = "llmtune_miss"
ANSWER_PROPERTY = "llmtune_answer"


class Served(Protocol):
    """What the `llm` callable served one instance: its texts, in order, and their usage."""

    answers: list[str]
    usage: Usage


def answer_line(answers: Sequence[str]) -> str:
    """The model's first answer, its first non-empty line."""
    return answer_lines(answers[:1])[0] if answers else ""


def answer_lines(answers: Sequence[str]) -> tuple[str, ...]:
    """Each answer's first non-empty line ("" for an empty answer)."""
    return tuple(next((line.strip() for line in text.strip().splitlines() if line.strip()), "") for text in answers)


def instance_properties(result: BodyResult, llm: Served | None, spec: EvalSpec) -> list[tuple[str, Any]]:
    """junit properties of an instance's own run: its score, miss reason, answer, tokens and cost."""
    properties: list[tuple[str, Any]] = []
    if spec.metric is not None:
        properties.append(("llmtune_metric", spec.metric))
    try:
        score = spec.metric_of(result.returned) if result.passed else spec.miss_value(result.miss or "")
        properties.append(("llmtune_score", round(score, 6)))
    except MetricError as error:  # no score: say why (the target's verdict fails on it too)
        properties.append(("llmtune_metric_error", str(error)))
    if result.miss is not None:
        properties.append((MISS_PROPERTY, result.miss))
    if llm is not None:
        properties += [(ANSWER_PROPERTY, answer_line(llm.answers)), ("llmtune_tokens", llm.usage.tokens),
                       ("llmtune_cost_usd", round(llm.usage.cost, 8))]
    return properties


Row = list[str]  # instance, outcome (its metric, with a metric dict), the answer's first line, why it missed


def run_rows(runs: Iterable[tuple[str, BodyResult | None, Served | None]], spec: EvalSpec) -> list[Row]:
    """Rows from the runs this process made (the instance's own run, or the verdict's evaluation of it)."""
    rows = []
    for nodeid, result, llm in runs:
        outcome, why = ("error", "no result: see the test's report") if result is None else _outcome(result, spec)
        rows.append([instance_of(nodeid), outcome, answer_line(llm.answers) if llm is not None else "", why])
    return rows


def _outcome(result: BodyResult, spec: EvalSpec) -> tuple[str, str]:
    """`pass`, `MISS`, or with a metric dict the instance's metric (a returned 0 is no pass)."""
    if not result.passed:
        return "MISS", result.miss or ""
    if spec.metric is None:
        return "pass", ""
    try:
        return f"{spec.metric}={spec.metric_of(result.returned):.3g}", ""
    except MetricError as error:
        return "error", str(error)


def report_row(report: Any) -> Row:
    """A row from an instance's report: what a pytest-xdist controller sees of runs made by its workers."""
    properties = dict(report.user_properties)
    miss, metric = properties.get(MISS_PROPERTY), properties.get("llmtune_metric")
    outcome = "MISS" if report.passed and miss is not None else "pass" if report.passed else report.outcome
    if outcome == "pass" and metric is not None and "llmtune_score" in properties:
        outcome = f"{metric}={float(properties['llmtune_score']):.3g}"
    why = str(miss or "") if report.passed else "see the test's report"
    return [instance_of(report.nodeid), outcome, str(properties.get(ANSWER_PROPERTY, "")), why]


def instance_of(nodeid: str) -> str:
    return nodeid.split("[", 1)[1][:-1] if "[" in nodeid else nodeid.rsplit("::", 1)[-1]


def instance_table(rows: list[Row], width: int) -> list[str]:
    """One row per instance (-v): its id, outcome, the model's first answer line and why it missed, cut to fit."""
    if not rows:
        return []
    rows = [list(row) for row in rows]
    first = max(len(row[0]) for row in rows + [["instance"]])
    outcome = max(len(row[1]) for row in rows + [["", "outcome"]])
    room = max(width - 1 - min(first, 30) - outcome - 6, 20)  # for the answer and the reason
    answer = min(max(len(row[2]) for row in rows), max(room // 2, room - max(len(row[3]) for row in rows)), 40)
    for row in rows:
        row[0], row[2], row[3] = cut(row[0], 30), cut(row[2], answer), cut(row[3], room - answer)
    return render(rows, ["instance", "outcome", "answer (first line)", "why it missed"])


def miss_lines(reports: Iterable[Any], width: int | None) -> list[str]:
    """`MISS nodeid - reason`, as pytest's short summary writes its lines (cut to the terminal's width)."""
    lines = []
    for report in reports:
        reason = dict(report.user_properties).get(MISS_PROPERTY, "")
        line = f"MISS {report.nodeid} - {reason}"
        lines.append(cut(line, width) if width else line)
    return lines
