"""Budgets, in dollars or tokens: the inference budget of a config and the optimization budget of a tune."""

from __future__ import annotations

import contextlib
import math
import re
import statistics
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from pytest_llmtune.errors import LlmtuneError

__all__ = ["Budget", "BudgetSpent", "Spending", "over_budget"]

CONFIDENCE = 0.95  # a config is dropped for cost when its mean is over budget at this one-sided confidence


class BudgetSpent(LlmtuneError):
    """The optimization budget is spent: no further request is sent."""


@dataclass(frozen=True)
class Budget:
    amount: float
    unit: str  # "usd" or "tokens"

    @classmethod
    def parse(cls, value: float | str, name: str) -> Budget:
        """A number is dollars; "500 tokens" (or "3,000 tokens", as the summary writes it) is tokens; "$0.50" and
        "0.5 usd" are dollars."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return cls(float(value), "usd")
        match = re.fullmatch(r"\s*\$?\s*([0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]*\.?[0-9]+)\s*(tokens?|usd|\$)?\s*",
                             str(value))
        if not match or float(match.group(1).replace(",", "")) <= 0:
            raise ValueError(f"{name}={value!r}: give dollars (0.02, \"$0.02\") or tokens (\"500 tokens\"), above 0")
        unit = "tokens" if (match.group(2) or "").startswith("token") else "usd"
        return cls(float(match.group(1).replace(",", "")), unit)

    def measure(self, tokens: int, dollars: float) -> float:
        return float(tokens) if self.unit == "tokens" else dollars

    def words(self, amount: float) -> str:
        """`amount` in words: tokens, or dollars to the cent's hundredth, with two significant digits below it
        ($0.000090 against a budget of $0.000080 reads as two amounts, not as $0.0001 twice)."""
        if self.unit == "tokens":
            return f"{amount:,.0f} tokens"
        if amount == 0 or abs(amount) >= 0.001:
            return f"${amount:.4f}"
        return f"${amount:.{1 - math.floor(math.log10(abs(amount)))}f}"

    def argument(self, amount: float) -> str:
        """`amount` as the marker argument that gives it: '"3800 tokens"' or '0.25'."""
        return f'"{amount:.0f} tokens"' if self.unit == "tokens" else f"{amount:.4g}"


def over_budget(costs: Sequence[float], budget: float, confidence: float = CONFIDENCE) -> bool:
    """Whether the mean cost is over `budget` at this one-sided confidence (Student's t on what was seen)."""
    if len(costs) < 2:
        return False
    mean = statistics.fmean(costs)
    spread = statistics.stdev(costs)
    if spread == 0:
        return mean > budget
    from scipy.stats import t

    lower = mean - float(t.ppf(confidence, len(costs) - 1)) * spread / math.sqrt(len(costs))
    return lower > budget


class Spending:
    """What a tune has spent on live requests, and the gate that stops it within one request of its budget.

    `admit(worst)` is called just before a request goes to the network. It reserves room for the request: its
    worst case (`worst`: its prompt and n x max_tokens, priced), or, when it has no bound, the costliest so far.
    While the spent amount and the room held for the requests in flight reach the budget, it waits for those to
    settle (their real cost is usually far below their worst); with none in flight, it refuses. Every request in
    flight is counted at its worst, the first ones too, so a tune ends at most one request's worst case over its
    budget, and spends the budget to the end rather than stopping at its worst-case estimate. What `keeping` keeps
    back for the search's leader is not spent on the search: a request is admitted only while the spent amount and
    the reserve are under the budget, and its own worst case fits beside what finishing the leader needs without
    the reserve's margin (`floor`), so the last request before the reserve never takes what the lock needs.
    """

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.spent = 0.0
        self._in_flight = 0
        self._reserved = 0.0  # room held for the requests in flight
        self._largest = 0.0
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._holding = threading.local()
        # what finishing the search's leader on every instance would cost: exploration stops short of it
        self._reserve: Callable[[], float] = lambda: 0.0
        self._floor: Callable[[], float] = lambda: 0.0  # of it, what the lock needs: no request may take that
        self._for = "to finish the leader"
        self.finishing = False  # the leader is being finished: the whole budget is open

    @contextlib.contextmanager
    def keeping(self, reserve: Callable[[], float], floor: Callable[[], float] = lambda: 0.0,
                purpose: str = "to finish the leader") -> Iterator[None]:
        """Within: every admission keeps back `reserve()` (the search's room to finish its leader, with a margin
        for noise), and a request's worst case must fit beside `floor()` (read after `reserve()`: what of it the
        lock needs, without the margin); `purpose` says what for when the budget stops the search."""
        self._reserve, self._floor, self._for = reserve, floor, purpose
        try:
            yield
        finally:
            self._reserve, self._floor = (lambda: 0.0), (lambda: 0.0)

    def admit(self, worst: float | None = None) -> None:
        if self.holding:  # the SDK retrying this thread's request (a 5xx, a timeout): it keeps its room
            return
        with self._lock:
            room = worst if worst is not None else self._largest
            while self.budget is not None:
                kept = 0.0 if self.finishing else self._reserve()
                if self.spent + self._reserved + kept < self.budget.amount and (  # what the lock needs is kept
                        not kept or self.spent + self._reserved + room + self._floor() <= self.budget.amount):
                    break  # whole, this request's worst case beside it
                if not self._in_flight and kept:
                    need = self._floor() or kept
                    margin = f"; the reserve is {self.budget.words(kept)}, with a margin for noise" if kept > need \
                        else ""
                    raise BudgetSpent(
                        f"the search stopped at {self.budget.words(self.spent)} of the optimization budget of "
                        f"{self.budget.words(self.budget.amount)}: what is left is kept {self._for} (about "
                        f"{self.budget.words(need)}{margin})")
                if not self._in_flight:
                    raise BudgetSpent(f"the optimization budget of {self.budget.words(self.budget.amount)} is "
                                      f"spent ({self.budget.words(self.spent)})")
                self._settled.wait(timeout=0.5)  # a request in flight settles: its worst case becomes its cost
            self._in_flight += 1
            self._reserved += room
        self._holding.value = room

    def settle(self, tokens: int, dollars: float) -> None:
        """After a live response: charge it and free its reservation."""
        amount = self.budget.measure(tokens, dollars) if self.budget else dollars
        with self._lock:
            self.spent += amount
            self._largest = max(self._largest, amount)
            self._release()

    def release(self) -> None:
        """After a request that was admitted but not answered."""
        with self._lock:
            self._release()

    def _release(self) -> None:
        room = getattr(self._holding, "value", None)
        if room is not None:
            self._in_flight -= 1
            self._reserved -= room
            self._holding.value = None
            self._settled.notify_all()

    @property
    def holding(self) -> bool:
        return getattr(self._holding, "value", None) is not None
