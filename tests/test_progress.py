"""The tune's progress: a line in place on a terminal, a line per rung (at most one a minute) in a log, nothing
with -q, a line per finished config with -v."""

from __future__ import annotations

from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import sentiment_test
from pytest_llmtune.report.progress import ProgressDisplay, duration
from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.rungs import Progress
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.usage import Usage

TARGET = "tests/test_sentiment.py::test_sentiment"


class Screen:
    """What a terminal shows, from the terminal reporter's public writing methods (the calls a tty receives)."""

    def __init__(self, tty: bool) -> None:
        self.tty, self.lines, self.current = tty, list[str](), ""
        self.redraws = 0

    def isatty(self) -> bool:
        return self.tty

    def write_line(self, line: str) -> None:
        self.lines.append(line)

    def rewrite(self, line: str, erase: bool = False) -> None:
        self.current, self.redraws = line, self.redraws + 1

    def write(self, text: str) -> None:
        if text == "\n":
            self.lines.append(self.current)
            self.current = ""


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def display(screen: Screen, clock: Clock, verbosity: int = 0, budget: str | None = "10000 tokens",
            width: int = 100) -> tuple[
        ProgressDisplay, Spending, Usage]:
    spending, usage = Spending(Budget.parse(budget, "optimization_budget") if budget else None), Usage()
    spec = EvalSpec(space=SearchSpace({"model": "m", "prompt": "{x}"}))
    return ProgressDisplay(screen, verbosity, TARGET, spec, spending, usage, width=width, clock=clock), spending, usage


def progress(done: int, total: int = 100, finished: bool = False, **fields: Any) -> Progress:
    return Progress(rung=0, rungs=2, configs=12, instances=10, done=done, total=total, usage=Usage(), finished=finished,
                    planned=220, before=0, **fields)


def test_on_a_terminal_one_line_is_rewritten_in_place_with_an_eta() -> None:
    screen, clock = Screen(tty=True), Clock()
    shown, spending, usage = display(screen, clock)

    for done in range(1, 51):
        clock.now += 0.1
        usage.record(100, 20, 0.0, replayed=False)
        spending.spent += 120
        shown.update(progress(done))

    assert screen.lines == []  # nothing scrolls
    assert 20 <= screen.redraws <= 30  # at most every 0.2 s, not on every evaluation
    clock.now += 1
    shown.update(progress(50))
    assert screen.current == ("test_sentiment  rung 1/2  12 configs x 10  50/100 evals  50 req  6,000 tok  "
                              "budget 60%  6s ETA 4s")  # 60% of the budget spent in 6 s
    shown.close()
    assert screen.lines == [screen.lines[-1]] and screen.lines[-1].startswith("test_sentiment  rung 1/2")


def test_a_narrow_terminal_keeps_the_rung_and_the_eta() -> None:
    screen, clock = Screen(tty=True), Clock()
    shown, spending, _ = display(screen, clock, width=70)
    clock.now, spending.spent = 10, 5000
    shown.update(progress(50))
    assert len(screen.current) < 70
    assert "rung 1/2" in screen.current and "ETA 10s" in screen.current


def test_in_a_log_a_line_per_rung_and_at_most_one_a_minute() -> None:
    screen, clock = Screen(tty=False), Clock()
    shown, _, _ = display(screen, clock)

    for done in range(1, 301):
        clock.now += 1.0
        shown.update(progress(done, total=300))
    shown.update(progress(300, total=300, finished=True))

    assert len(screen.lines) == 6  # 300 s: one a minute, then the rung's end
    assert screen.lines[0].startswith(f"llmtune: {TARGET} rung 1/2: 12 configs x 10 instances, 60/300 evaluations")
    assert screen.lines[-1].startswith(f"llmtune: {TARGET} rung 1/2: 12 configs x 10 instances, done")
    assert screen.redraws == 0


def test_quiet_shows_nothing_and_verbose_shows_each_config_that_finished_a_rung() -> None:
    quiet, verbose = Screen(tty=False), Screen(tty=False)
    scores = ((0, (1.0, 0.0, 1.0), 90), (1, (0.0, 0.0, 0.0), 30))
    for screen, verbosity in ((quiet, -1), (verbose, 1)):
        shown, _, _ = display(screen, Clock(), verbosity)
        shown.announce("llmtune: tuning ...")
        shown.update(progress(100, finished=True, scores=scores, offset=12))

    assert quiet.lines == []
    assert verbose.lines[1:3] == [
        "  config #12 after rung 1/2: pass_rate 0.667 [0.21, 0.94] on 3 instances, 30.0 tokens/instance",
        "  config #13 after rung 1/2: pass_rate 0.000 [0.00, 0.56] on 3 instances, 10.0 tokens/instance"]


@pytest.mark.parametrize(("seconds", "words"), [(0.4, "0s"), (59, "59s"), (61, "1m01s"), (3725, "1h02m")])
def test_durations_read_short(seconds: float, words: str) -> None:
    assert duration(seconds) == words


def test_a_tune_in_a_log_shows_its_plan_and_rungs(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())

    plain, quiet = pytester.runpytest("--llm-tune"), pytester.runpytest("--llm-tune", "-q")

    plain.stdout.fnmatch_lines(["llmtune: tuning test_sentiment.py::test_sentiment: 16 configs*",
                                "llmtune: test_sentiment.py::test_sentiment rung 1/*: 16 configs x * instances, done; "
                                "* requests, * tokens, $*; *s elapsed*"])
    assert "llmtune: tuning" not in quiet.stdout.str() and " rung 1/" not in quiet.stdout.str()
    quiet.stdout.fnmatch_lines(["*locked in llmtune.lock*"])  # the summary still


def test_verbose_shows_each_config_after_each_rung(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())

    result = pytester.runpytest("--llm-tune", "-v")

    text = result.stdout.str()
    assert text.count("after rung 1/") == 16
    result.stdout.fnmatch_lines(["  config #0 after rung 1/*: pass_rate * on * instances, * tokens/instance"])


def test_with_brackets_until_the_budget_is_spent_the_eta_follows_the_budget() -> None:
    screen, clock = Screen(tty=False), Clock()
    spending, usage = Spending(Budget.parse("10000 tokens", "optimization_budget")), Usage()
    spec = EvalSpec(space=SearchSpace({"model": "m", "prompt": "{x}"}), num_samples=-1,
                    optimization_budget=spending.budget)
    shown = ProgressDisplay(screen, 0, TARGET, spec, spending, usage, clock=clock)

    clock.now, spending.spent = 60, 3000  # 30% of the budget, 95% of the first bracket's plan
    shown.update(progress(95, finished=True))

    assert screen.lines[-1].endswith("1m00s elapsed, ETA 2m20s")
