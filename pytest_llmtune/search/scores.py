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
    accepted: bool | None = None  # a cascade target's check on the answer (None: no check)
    answered: int | None = None  # a cascade's stage whose answer counted (numbered from 0)
    judge_tokens: int = 0  # what the test's judge calls spent on the instance: the tune's, not the config's
    judge_cost: float = 0.0


@dataclass(kw_only=True)
class Scores:
    """Per-instance metrics (instance number -> metric), the other numbers, the answers, and what they cost."""

    metrics: dict[int, float] = field(default_factory=dict)
    others: dict[int, Mapping[str, float]] = field(default_factory=dict)  # instance -> other metrics
    answers: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # instance -> (answer, miss)
    samples: dict[int, tuple[str, ...]] = field(default_factory=dict)  # instance -> every answer's first line
    spent: dict[int, tuple[int, float]] = field(default_factory=dict)  # instance -> (tokens, dollars)
    accepted: dict[int, bool] = field(default_factory=dict)  # instance -> a cascade target's check on its answer
    answered: dict[int, int] = field(default_factory=dict)  # instance -> a cascade's stage that answered
    tokens: int = 0
    cost: float = 0.0  # dollars, at list price
    judge_tokens: int = 0  # the judge's calls, for the same instances (not the config's cost)
    judge_cost: float = 0.0

    @property
    def spent_tokens(self) -> int:
        """What evaluating it cost the tune: the config's requests and the judge's."""
        return self.tokens + self.judge_tokens

    @property
    def spent_cost(self) -> float:
        return self.cost + self.judge_cost

    def add(self, instance: int, outcome: Outcome) -> None:
        self.metrics[instance] = outcome.metric
        self.answers[instance] = (outcome.answer, outcome.miss)
        self.samples[instance] = outcome.answers
        if outcome.others:
            self.others[instance] = outcome.others
        self.spent[instance] = (outcome.tokens, outcome.cost)
        if outcome.accepted is not None:
            self.accepted[instance] = outcome.accepted
        if outcome.answered is not None:
            self.answered[instance] = outcome.answered
        self.tokens += outcome.tokens
        self.cost += outcome.cost
        self.judge_tokens += outcome.judge_tokens
        self.judge_cost += outcome.judge_cost

    def values(self) -> list[float]:
        """The metrics in instance order."""
        return [self.metrics[i] for i in sorted(self.metrics)]

    @property
    def tokens_per_instance(self) -> float:
        return self.tokens / len(self.metrics) if self.metrics else 0.0

    @property
    def cost_per_instance(self) -> float:
        """To 9 significant digits: a sum of dollars depends on the order the evaluations finished in, and two
        configs that cost the same must compare equal, run after run."""
        return float(f"{self.cost / len(self.metrics):.9g}") if self.metrics else 0.0
