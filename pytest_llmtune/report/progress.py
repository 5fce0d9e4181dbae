"""The tune's progress as it runs. On a terminal: one line per target, rewritten in place (rung, configs alive,
evaluations, requests, tokens, spending against the budget, ETA). In a log (CI, no terminal): a line per rung,
and at most one a minute between. `-q`: nothing until the summary. `-v`: also a line per config that finished a
rung, with its score so far."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pytest_llmtune.report.leaderboard import cut, format_score, plural, wrap
from pytest_llmtune.report.terminal import bracket_line, fit_note
from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.costs import BudgetFit
from pytest_llmtune.search.halving import SuccessiveHalving
from pytest_llmtune.search.rungs import Progress
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.search.stats import aggregate
from pytest_llmtune.usage import Usage

__all__ = ["ProgressDisplay", "Screen", "ShownTune", "duration"]

REDRAW = 0.2  # seconds between redraws of the line on a terminal
LOG_EVERY = 60.0  # seconds between lines in a log, within a rung


def duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Screen(Protocol):
    """Where the progress goes: the session gives pytest's terminal reporter (its public writing methods). The
    one place this layer writes, and only through what it is given."""

    def isatty(self) -> bool: ...
    def write(self, text: str) -> None: ...
    def write_line(self, line: str) -> None: ...
    def rewrite(self, line: str, erase: bool = False) -> None: ...


class ProgressDisplay:
    """Shows one target's search on `screen` (None: show nothing), `width` columns wide."""

    def __init__(self, screen: Screen | None, verbosity: int, target: str, spec: EvalSpec, spending: Spending,
                 usage: Usage, *, width: int = 100, clock: Callable[[], float] = time.monotonic,
                 throttled: Callable[[], str | None] = lambda: None) -> None:
        self.reporter = None if verbosity < 0 else screen
        self.tty = bool(screen is not None and screen.isatty())
        self.verbose = verbosity > 0
        self.width = width
        self.target, self.spec, self.spending, self.usage, self.clock = target, spec, spending, usage, clock
        self.throttled = throttled  # why the endpoint's limits hold requests back now, if they do
        self.started = clock()
        self.shown = float("-inf") if self.tty else self.started  # when the last line was written
        self.drawn = ""  # the line in place, on a terminal

    def announce(self, line: str) -> None:
        """A line above the progress line: a bracket's plan, a step after the search."""
        self.above(wrap(line, self.width) if self.tty else [line])

    def update(self, progress: Progress) -> None:
        if self.reporter is None:
            return
        now = self.clock()
        if progress.finished and self.verbose:
            self.above(self.config_lines(progress))
        if self.tty:
            if progress.finished or now - self.shown >= REDRAW:
                self.draw(self.line(progress, now))
                self.shown = now
        elif progress.finished or now - self.shown >= LOG_EVERY:
            self.reporter.write_line(self.line(progress, now, log=True))
            self.shown = now

    def close(self) -> None:
        """The search is over: the line in place stays as it last read."""
        if self.drawn and self.reporter is not None:
            self.reporter.write("\n")
            self.drawn = ""

    def above(self, lines: list[str]) -> None:
        """Lines written above the line in place."""
        if self.reporter is None:
            return
        drawn = self.drawn
        if drawn:
            self.reporter.rewrite("", erase=True)
            self.reporter.write("\r")
        for line in lines:
            self.reporter.write_line(line)
        if drawn:
            self.draw(drawn)

    def draw(self, line: str) -> None:
        assert self.reporter is not None
        self.reporter.rewrite(line, erase=True)
        self.drawn = line

    def line(self, progress: Progress, now: float, log: bool = False) -> str:
        """In a log, the state in words; on a terminal, in short parts, dropping the least telling until it fits:
        `test_x  rung 1/2  12 configs x 10  48/120 evals  48 req  5,760 tok  $0.0012  budget 58%  5s ETA 4s`."""
        usage, budget, eta = self.usage, self.spending.budget, self.eta(progress, now)
        elapsed = duration(now - self.started)
        if log:
            state = "done" if progress.finished else f"{progress.done}/{progress.total} evaluations"
            spent = f"; {budget.words(self.spending.spent)} of {budget.words(budget.amount)}" if budget else ""
            return (f"llmtune: {self.target} rung {progress.rung + 1}/{progress.rungs}: "
                    f"{plural(progress.configs, 'config')} x {progress.instances} instances, {state}; "
                    f"{plural(usage.requests, 'request')}, "
                    f"{usage.live.tokens:,} tokens, ${usage.live.cost:.4f}{spent}; {elapsed} elapsed"
                    + (f", ETA {eta}" if eta else "") + (f"; {throttled}" if (throttled := self.throttled()) else ""))
        parts = {"rung": f"rung {progress.rung + 1}/{progress.rungs}",
                 "configs": f"{plural(progress.configs, 'config')} x {progress.instances}",
                 "evals": "rung done" if progress.finished else f"{progress.done}/{progress.total} evals",
                 "req": f"{usage.requests:,} req", "tok": f"{usage.live.tokens:,} tok",
                 "cost": f"${usage.live.cost:.4f}" if usage.live.cost else "",
                 "budget": f"budget {self.spending.spent / budget.amount:.0%}" if budget else "",
                 "throttle": "throttled" if self.throttled() else "",
                 "time": elapsed + (f" ETA {eta}" if eta else "")}
        name = self.target.rsplit("::", 1)[-1]
        for drop in ("req", "tok", "cost", "configs", ""):  # the least telling first: rung, evals, budget, time stay
            line = "  ".join([name, *(text for text in parts.values() if text)])
            if len(line) < self.width:
                break
            parts.pop(drop, None)
        return cut(line, self.width - 1)

    def eta(self, progress: Progress, now: float) -> str | None:
        """From the share of the plan done, or of the optimization budget spent, whichever is further on; with
        num_samples=-1 (brackets until the budget is spent) from the budget alone: a bracket's plan is not the
        search's."""
        budget = self.spending.budget
        spent = self.spending.spent / budget.amount if budget is not None else 0.0
        done = spent if self.spec.num_samples == -1 else max(progress.fraction, spent)
        elapsed = now - self.started
        if done < 0.02 or elapsed < 1:
            return None
        return duration(elapsed * (1 - done) / done) if done < 1 else None

    def config_lines(self, progress: Progress) -> list[str]:
        lines = []
        for index, values, tokens in progress.scores:
            score = format_score(values, aggregate(list(values), self.spec.agg), binary=self.spec.metric is None)
            lines.append(f"  config #{progress.offset + index} after rung {progress.rung + 1}/{progress.rungs}: "
                         f"{self.spec.metric_name} {score} on {len(values)} instances, "
                         f"{tokens / max(len(values), 1):.1f} tokens/instance")
        return lines


@dataclass
class ShownTune:
    """A tune's events as lines of its display: what `search.tune.TuneObserver` asks for."""

    display: ProgressDisplay
    target: str
    instances: int  # searched
    held_out: int
    concurrency: int
    budget: Budget | None

    def bracket(self, candidates: int, halving: SuccessiveHalving, fitted: tuple[int, BudgetFit] | None) -> None:
        note = fit_note(fitted, self.budget) if fitted else ""
        self.display.announce(bracket_line(self.target, candidates, self.instances, halving, self.concurrency,
                                           held_out=self.held_out, fitted=note))

    def progress(self, progress: Progress) -> None:
        self.display.update(progress)

    def searched(self) -> None:
        self.display.close()

    def phase(self, what: str) -> None:
        self.display.announce(f"llmtune: {self.target}: {what}")
