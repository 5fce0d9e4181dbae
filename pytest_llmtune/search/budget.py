"""Budgets, in dollars or tokens: the inference budget of a config and the optimization budget of a tune."""

from __future__ import annotations

import math
import re
import statistics
import threading
from collections.abc import Callable, Sequence
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
        """A number is dollars; "500 tokens" is tokens; "$0.50" and "0.5 usd" are dollars."""
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return cls(float(value), "usd")
        match = re.fullmatch(r"\s*\$?\s*([0-9]*\.?[0-9]+)\s*(tokens?|usd|\$)?\s*", str(value))
        if not match or float(match.group(1)) <= 0:
            raise ValueError(f"{name}={value!r}: give dollars (0.02, \"$0.02\") or tokens (\"500 tokens\"), above 0")
        unit = "tokens" if (match.group(2) or "").startswith("token") else "usd"
        return cls(float(match.group(1)), unit)

    def measure(self, tokens: int, dollars: float) -> float:
        return float(tokens) if self.unit == "tokens" else dollars

    def words(self, amount: float) -> str:
        return f"{amount:,.0f} tokens" if self.unit == "tokens" else f"${amount:.4f}"

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

    `admit()` is called just before a request goes to the network: it reserves room for one more request
    (as costly as the costliest so far) and refuses when the spent and reserved amounts reach the budget.
    """

    def __init__(self, budget: Budget | None) -> None:
        self.budget = budget
        self.spent = 0.0
        self._in_flight = 0
        self._largest = 0.0
        self._lock = threading.Lock()
        self._holding = threading.local()
        # what finishing the search's leader on every instance would cost: exploration stops short of it
        self.reserve: Callable[[], float] = lambda: 0.0
        self.finishing = False  # the leader is being finished: the whole budget is open

    def admit(self) -> None:
        with self._lock:
            if self.budget is None:
                self._in_flight += 1
            else:
                kept = 0.0 if self.finishing else self.reserve()
                if self.spent + self._in_flight * self._largest + kept >= self.budget.amount:
                    why = f", {self.budget.words(kept)} kept to finish the leader" if kept else ""
                    raise BudgetSpent(f"the optimization budget of {self.budget.words(self.budget.amount)} is "
                                      f"spent ({self.budget.words(self.spent)}{why})")
                self._in_flight += 1
        self._holding.value = True

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
        if getattr(self._holding, "value", False):
            self._in_flight -= 1
            self._holding.value = False

    @property
    def holding(self) -> bool:
        return bool(getattr(self._holding, "value", False))
