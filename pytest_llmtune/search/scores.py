"""One config's results, instance by instance: the search's trials, the finalists' held-out scores and the winner's
confirmation run all collect them in this record, through its one `add`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Outcome", "Scores"]


@dataclass(frozen=True)
class Outcome:
    """One config on one instance, as the search keeps it."""

    metric: float
    tokens: int
    cost: float = 0.0  # dollars, at list price
    others: Mapping[str, float] = field(default_factory=dict)  # the other numbers a metric dict held
    answer: str = ""  # the model's first answer line
    miss: str | None = None  # why the instance missed
    answers: tuple[str, ...] = ()  # the first line of every answer the instance got (n samples: n of them)


@dataclass(kw_only=True)
class Scores:
    """Per-instance metrics (instance number -> metric), the other numbers, the answers, and what they cost."""

    metrics: dict[int, float] = field(default_factory=dict)
    others: dict[int, Mapping[str, float]] = field(default_factory=dict)  # instance -> other metrics
    answers: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # instance -> (answer, miss)
    samples: dict[int, tuple[str, ...]] = field(default_factory=dict)  # instance -> every answer's first line
    tokens: int = 0
    cost: float = 0.0  # dollars, at list price

    def add(self, instance: int, outcome: Outcome) -> None:
        self.metrics[instance] = outcome.metric
        self.answers[instance] = (outcome.answer, outcome.miss)
        self.samples[instance] = outcome.answers
        if outcome.others:
            self.others[instance] = outcome.others
        self.tokens += outcome.tokens
        self.cost += outcome.cost

    def values(self) -> list[float]:
        """The metrics in instance order."""
        return [self.metrics[i] for i in sorted(self.metrics)]

    @property
    def tokens_per_instance(self) -> float:
        return self.tokens / len(self.metrics) if self.metrics else 0.0

    @property
    def cost_per_instance(self) -> float:
        return self.cost / len(self.metrics) if self.metrics else 0.0
