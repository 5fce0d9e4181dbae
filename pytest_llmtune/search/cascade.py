"""Cascades composed from what the search measured: a cheap config first, the next one when `accept` rejects its
answer (FrugalGPT's and AutoGen's cascades, tuned).

A cascade's config is `{"cascade": [stage config, ...]}`. On an instance its outcome is that of its first stage
whose answer was accepted (the last stage's when none was), and its cost is the sum of the stages it ran. A single
config's evaluation records whether `accept` took its answer, so both follow from the per-instance results the
search already has: a cascade of evaluated configs is scored without a request. Only what a promising cascade
still lacks is evaluated (its cheap stages on the instances they were not scored on; a later stage only where the
ones before it rejected), within the optimization budget.

Composed cascades that are known on every tuning instance join the search's complete candidates and are ranked,
compared and selected with the same statistics as single configs; the winner, cascade or not, is then scored on the
held-out instances by running it end to end.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pytest_llmtune.search.budget import BudgetSpent
from pytest_llmtune.search.direction import Direction
from pytest_llmtune.search.evaluation import Config, Evaluate, Evaluation, EvaluationError, Executor
from pytest_llmtune.search.halving import Trial, significantly_worse
from pytest_llmtune.search.scores import Outcome, Scores
from pytest_llmtune.usage import Usage

__all__ = ["CASCADE", "FINISHED", "KEPT", "POOL", "CascadeTrial", "Cascades", "front", "is_cascade", "outcome_on",
           "stages_of"]

T = TypeVar("T", bound=Scores)

CASCADE = "cascade"  # the key of a cascade's config
POOL = 12  # the earlier stages are drawn from this many candidates: those whose accepted answers score best
FINALS = 4  # the last stage is one of this many leading candidates
FINISHED = 3  # promising cascades whose missing results are evaluated, cheapest (or best) first
KEPT = 8  # composed cascades kept beside the single configs: the front's, then the best


def is_cascade(config: Mapping[str, Any]) -> bool:
    return set(config) == {CASCADE}


def stages_of(config: Mapping[str, Any]) -> list[Config]:
    """The configs a call runs, in order: a cascade's stages, or the config itself."""
    return [dict(stage) for stage in config[CASCADE]] if is_cascade(config) else [dict(config)]


@dataclass
class CascadeTrial(Trial):
    """A cascade composed from its stages' results: `stages` numbers them among the search's candidates;
    `answered` is the stage whose answer counted on each instance (from 0)."""

    stages: tuple[int, ...] = ()

    def shares(self) -> list[float]:
        """The share of the instances each stage answered, in stage order."""
        count = max(1, len(self.answered))
        return [sum(1 for s in self.answered.values() if s == number) / count for number in range(len(self.stages))]


def outcome_on(stages: Sequence[Scores], instance: int) -> tuple[Outcome, int] | None:
    """The cascade's outcome on `instance` and the stage that gave it; None while a stage it needs lacks it."""
    tokens, cost = 0, 0.0
    for number, stage in enumerate(stages):
        if instance not in stage.metrics:
            return None
        spent = stage.spent.get(instance, (0, 0.0))
        tokens, cost = tokens + spent[0], cost + spent[1]
        if stage.accepted.get(instance, False) or number == len(stages) - 1:
            answer, miss = stage.answers.get(instance, ("", None))
            return Outcome(stage.metrics[instance], tokens, cost, stage.others.get(instance, {}), answer, miss,
                           stage.samples.get(instance, ()), True, number), number
    raise AssertionError("a cascade has stages")


def needed(stages: Sequence[Scores], instance: int) -> int | None:
    """The first stage whose result on `instance` the cascade needs and lacks, or None."""
    for number, stage in enumerate(stages):
        if instance not in stage.metrics:
            return number
        if stage.accepted.get(instance, False):
            return None
    return None


def front(trials: Sequence[T], direction: Direction, score: Callable[[T], float]) -> list[T]:
    """The nondominated of `trials` on (score, cost per instance), cheapest first: no other is at least as good
    and at most as costly, and better or cheaper."""
    def key(trial: T) -> tuple[float, float]:
        return (trial.cost_per_instance or trial.tokens_per_instance, direction.ahead(score(trial)))

    kept: list[T] = []
    for trial in sorted(trials, key=key):
        if not kept or direction.ahead(score(trial)) < direction.ahead(score(kept[-1])):
            kept.append(trial)
    return kept


@dataclass
class Cascades:
    """The cascades of one search: proposed from its trials, finished where promising, composed into trials."""

    trials: Sequence[Trial]  # every candidate of the search, ranked (the halving's order)
    instances: int  # the tuning instances
    direction: Direction
    score: Callable[[Trial], float]  # the spec's aggregate of a trial's metrics
    max_stages: int = 3
    select: str = "best"
    min_instances: int = 5
    composed: list[CascadeTrial] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)  # what finishing evaluated, or why it stopped
    usage: Usage = field(default_factory=Usage)  # what finishing's evaluations used
    judge: Usage = field(default_factory=Usage)  # what their `llm.judge` calls used
    ungraded: int = 0

    def expense(self, trial: Scores) -> float:
        return trial.cost_per_instance or trial.tokens_per_instance

    def precision(self, trial: Trial) -> tuple[float, float]:
        """How good the answers `accept` takes are, then how many it takes (ranks the cheap stages)."""
        taken = [trial.metrics[i] for i, ok in trial.accepted.items() if ok and i in trial.metrics]
        if not taken:
            return (-1e18, 0.0)
        return (-self.direction.ahead(statistics.fmean(taken)), len(taken) / len(trial.metrics))

    def complete(self) -> list[Trial]:
        return [t for t in self.trials if t.dropped is None and len(t.metrics) == self.instances]

    def sequences(self) -> Iterator[tuple[Trial, ...]]:
        """Ordered stage sequences, cheap first, ending on one of the leading candidates (`trials` is ranked: the
        furthest on, then the best). A last stage need not be complete: a cascade needs it only where the stages
        before it rejected."""
        scored = [t for t in self.trials if t.dropped is None and len(t.metrics) >= self.min_instances]
        finals = scored[:FINALS]
        taking = [t for t in scored if any(t.accepted.values())]
        pool = sorted(taking, key=lambda t: (*self.precision(t), self.expense(t), t.index))
        pool = sorted(pool[:POOL], key=lambda t: (self.expense(t), t.index))
        for final in finals:
            cheaper = [t for t in pool if t is not final and self.expense(t) < self.expense(final)]
            for size in range(1, self.max_stages):
                for earlier in itertools.combinations(cheaper, size):
                    yield (*earlier, final)

    def compose(self, stages: tuple[Trial, ...], index: int) -> CascadeTrial:
        """The cascade's results on every instance where they are known."""
        trial = CascadeTrial(index, stages=tuple(s.index for s in stages))
        for instance in range(self.instances):
            known = outcome_on(stages, instance)
            if known is not None:
                trial.add(instance, known[0])
        return trial

    def promising(self) -> list[tuple[Trial, ...]]:
        """Cascades worth finishing: known on enough instances, not worse than the best complete candidate
        beyond noise there, and cheaper than it; the cheapest first (select="cheapest") or the best."""
        complete = self.complete()
        if not complete:
            return []
        best = min(complete, key=lambda t: (self.direction.ahead(self.score(t)), self.expense(t)))
        found = []
        for stages in self.sequences():
            trial = self.compose(stages, -1)
            if (len(trial.metrics) >= self.min_instances and len(trial.metrics) < self.instances
                    and self.expense(trial) < self.expense(best)
                    and not significantly_worse(trial, best, self.direction)):
                found.append((stages, trial))
        if self.select == "cheapest":
            found.sort(key=lambda pair: (self.expense(pair[1]), self.direction.ahead(self.score(pair[1]))))
        else:
            found.sort(key=lambda pair: (self.direction.ahead(self.score(pair[1])), self.expense(pair[1])))
        return [stages for stages, _ in found]

    def finish(self, evaluate: Evaluate, executor: Executor,
               affordable: Callable[[Sequence[tuple[Trial, int]]], bool] = lambda pairs: True) -> None:
        """Evaluate what the most promising cascades lack, stage by stage, until the budget stops it.
        `affordable(pairs)`: whether the budget pays for those (stage, instance) evaluations, asked before each
        round (a budget admits a request while any room is left, so an expensive stage would eat what is kept)."""
        done: set[tuple[int, ...]] = set()
        for stages in self.promising():
            key = tuple(s.index for s in stages)
            if len(done) >= FINISHED or key in done:
                continue
            done.add(key)
            try:
                self._finish(stages, evaluate, executor, affordable)
            except BudgetSpent as spent:
                self.finished.append(f"stopped by the optimization budget: {spent}")
                return
            except EvaluationError as error:
                self.finished.append(f"cascade of configs {' -> '.join(f'#{k}' for k in key)}: {error}")

    def _finish(self, stages: tuple[Trial, ...], evaluate: Evaluate, executor: Executor,
                affordable: Callable[[Sequence[tuple[Trial, int]]], bool]) -> None:
        while True:
            pairs = [(stages[number], instance) for instance in range(self.instances)
                     if (number := needed(stages, instance)) is not None]
            if not pairs:
                return
            if not affordable(pairs):
                self.finished.append(f"the cascade of configs {' -> '.join(f'#{s.index}' for s in stages)} was not "
                                     f"finished: its {len(pairs)} missing evaluations cost more than is left")
                return
            futures = {executor.submit(evaluate, trial.index, instance): (trial, instance)
                       for trial, instance in pairs}
            failed: BaseException | None = None
            for future in cf.as_completed(futures):
                trial, instance = futures[future]
                error = future.exception()
                if error is not None:
                    failed = failed or error
                    continue
                evaluation: Evaluation = future.result()
                trial.add(instance, evaluation.outcome)
                self.usage.merge(evaluation.usage)
                self.judge.merge(evaluation.judge)
                self.ungraded += evaluation.ungraded
            if failed is not None:
                raise failed
            self.finished.append(f"{len(pairs)} evaluations for the cascade of configs "
                                 f"{' -> '.join(f'#{s.index}' for s in stages)}")

    def build(self, first_index: int) -> list[CascadeTrial]:
        """The cascades known on every instance: those on the cost-quality front with the single configs, then
        the best, at most KEPT, numbered from `first_index`."""
        complete = [trial for stages in self.sequences()
                    if len((trial := self.compose(stages, -1)).metrics) == self.instances]
        singles = self.complete()
        on_front = {id(t) for t in front([*singles, *complete], self.direction, self.score)}
        ranked = sorted(complete, key=lambda t: (id(t) not in on_front, self.direction.ahead(self.score(t)),
                                                 self.expense(t)))
        kept = []
        for offset, trial in enumerate(ranked[:KEPT]):
            trial.index = first_index + offset
            kept.append(trial)
        self.composed = kept
        return kept
