"""What the search asks for and gets back: an evaluation of one candidate on one instance, its errors, and the
executor that runs evaluations (a thread pool for concurrency, or `InlineExecutor` for one at a time).

No pytest here: an evaluation is any `Evaluate`, `(candidate, instance) -> Evaluation`, where `candidate` numbers a
config among those the caller was given (`EvaluateWith(configs)`) and `instance` numbers an instance in the search's
order.
"""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.search.scores import Outcome
from pytest_llmtune.usage import Usage

__all__ = ["Config", "Evaluate", "EvaluateWith", "Evaluation", "EvaluationError", "Executor", "Failure",
           "InlineExecutor", "NothingFits", "SearchFailed", "TargetError"]

Config = dict[str, Any]  # a candidate's request settings, as the space gives them and the lockfile holds them


@dataclass(frozen=True)
class Evaluation:
    """One config on one instance: the metric that drives the search, and what it cost."""

    metric: float
    passed: bool
    usage: Usage
    cost: float = 0.0  # dollars, at list price
    others: Mapping[str, float] = field(default_factory=dict)
    answer: str = ""  # the model's first answer line, for reports
    miss: str | None = None  # why the instance missed (its failed assertion)
    answers: tuple[str, ...] = ()  # the first line of every answer (n samples: n of them), for reports
    accepted: bool | None = None  # a cascade target's check on the answer (None: no check)
    answered: int | None = None  # a cascade's stage whose answer counted
    judge: Usage = field(default_factory=Usage)  # what `llm.judge` asked: spent by the tune, not the config's cost
    ungraded: int = 0  # judge replies without a grade (each made the instance a miss)

    @property
    def spent(self) -> Usage:
        """What the evaluation spent: the config's requests and the judge's."""
        total = Usage()
        total.merge(self.usage)
        total.merge(self.judge)
        return total

    @property
    def outcome(self) -> Outcome:
        """What the search keeps of it."""
        return Outcome(self.metric, self.usage.tokens, self.cost, self.others, self.answer, self.miss, self.answers,
                       self.accepted, self.answered, self.judge.tokens, self.judge.cost)


Evaluate = Callable[[int, int], Evaluation]  # (candidate, instance) -> its evaluation
EvaluateWith = Callable[[list[Config]], Evaluate]  # the configs that `candidate` numbers -> an Evaluate over them


class EvaluationError(LlmtuneError):
    """An evaluation that produced no result. `signature` is what makes two failures "the same way";
    `detail` is the text to show once (a traceback); `where` names the instance."""

    def __init__(self, signature: str, detail: str = "", where: str = "") -> None:
        super().__init__(signature)
        self.signature, self.detail, self.where = signature, detail, where


@dataclass(frozen=True)
class Failure:
    """The first error of one candidate."""

    candidate: int
    instance: int
    error: EvaluationError


class SearchFailed(LlmtuneError):
    """Candidates kept failing the same way: the search of this target stopped."""

    def __init__(self, failure: Failure, in_a_row: int) -> None:
        super().__init__(f"{in_a_row} config{'' if in_a_row == 1 else 's'} failed the same way: "
                         f"{failure.error.signature}")
        self.failure, self.in_a_row = failure, in_a_row  # the first failure; how many candidates failed alike
        self.config: Config | None = None  # the failing config, set by the caller that knows the configs


class TargetError(LlmtuneError):
    """An evaluation that shows the target's own code broken for every config (a cascade's `accept` raised): the
    tune of the target stops with this message, as the application would stop on it."""


class NothingFits(LlmtuneError):
    """The optimization budget cannot pay for one config on every instance: said before the search spends it."""


class Executor(Protocol):
    def submit(self, fn: Callable[..., Evaluation], /, *args: Any) -> cf.Future[Evaluation]: ...


class InlineExecutor:
    """Runs each evaluation at once, in the caller's thread: for evaluations that must not overlap."""

    def submit(self, fn: Callable[..., Evaluation], /, *args: Any) -> cf.Future[Evaluation]:
        future: cf.Future[Evaluation] = cf.Future()
        try:
            future.set_result(fn(*args))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # noqa: BLE001 - handed to the search like a thread's exception
            future.set_exception(error)
        return future
