"""One bracket's search: its candidates through the rungs of successive halving, evaluations run by an executor.

At most `concurrency` evaluations are in flight; the rest wait in a queue, so a candidate that is dropped (for cost,
or for an error) simply has its queued evaluations never started.

- Cost: a candidate whose instances show, at 95% confidence, an average cost over the inference budget is dropped.
- Errors: an evaluation that raises `EvaluationError` drops its candidate, and the search goes on without it. When
  candidates keep failing the same way with nothing succeeding in between (a dead endpoint, a bad key, a bug in the
  test), the search stops at once with that one error (`SearchFailed`).
- The optimization budget: when it is spent, the search stops and keeps what it finished.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from pytest_llmtune.search.budget import Budget, BudgetSpent, over_budget
from pytest_llmtune.search.evaluation import (
    Config,
    Evaluate,
    Evaluation,
    EvaluationError,
    Executor,
    Failure,
    SearchFailed,
)
from pytest_llmtune.search.halving import Outcome, SuccessiveHalving
from pytest_llmtune.search.result import SearchResult
from pytest_llmtune.usage import Usage

__all__ = ["SAME_FAILURES_TO_STOP", "OnEvaluation", "OnProgress", "Progress", "numbered", "run_bracket"]

SAME_FAILURES_TO_STOP = 3  # distinct candidates failing the same way in a row, with no success between them
Pair = tuple[int, int]  # (candidate, instance)


@dataclass(kw_only=True)
class Progress:
    """Where a bracket's search is: sent on every finished evaluation and about once a second; the caller decides
    what to show."""

    rung: int
    rungs: int
    configs: int  # alive: not dropped
    instances: int
    done: int  # evaluations of this rung
    total: int
    usage: Usage
    finished: bool = False
    planned: int = 0  # evaluations of the bracket's whole plan
    before: int = 0  # of those, in the rungs before this one
    offset: int = 0  # the bracket's first candidate's number, as the merged result numbers them
    scores: tuple[tuple[int, tuple[float, ...], int], ...] = ()  # with finished: (candidate, metrics, tokens)

    @property
    def fraction(self) -> float:
        """How much of the bracket's plan is done, by evaluations."""
        return min((self.before + self.done) / self.planned, 1.0) if self.planned else 0.0

OnProgress = Callable[[Progress], None]
OnEvaluation = Callable[[int, int, Evaluation], None]  # (candidate, instance, its evaluation)


@dataclass
class RungRunner:
    """Runs one rung's evaluations, at most `concurrency` at a time, watching costs and errors."""

    executor: Executor
    concurrency: int
    evaluate: Evaluate
    result: SearchResult
    inference_budget: Budget | None
    on_evaluation: OnEvaluation = lambda candidate, instance, evaluation: None
    metric_range: tuple[float, float] | None = None  # bounds of a mean-aggregated metric: lets rungs overlap
    costs: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    streak: list[Failure] = field(default_factory=list)  # failures of one signature since the last success
    in_flight: dict[cf.Future[Evaluation], Pair] = field(default_factory=dict)
    ahead: dict[Pair, Outcome] = field(default_factory=dict)  # next-rung results, finished early

    def run(self, number: int, pairs: list[Pair],
            on_progress: Callable[[Progress], None]) -> dict[Pair, Outcome]:
        """The rung's evaluations. Slots the rung leaves idle (its last, slow evaluations) start the next rung's
        evaluations of configs already sure to be promoted, whatever the rest of the rung gives; their results
        wait for the next rung, so every rung still compares its configs on the same instances."""
        current = set(pairs)
        outcomes = {pair: self.ahead.pop(pair) for pair in pairs if pair in self.ahead}
        started = set(self.in_flight.values())
        queue = collections.deque(pair for pair in pairs if pair not in outcomes and pair not in started)
        try:
            while queue or current & set(self.in_flight.values()):
                while queue and len(self.in_flight) < self.concurrency:
                    candidate, instance = queue.popleft()
                    if self.result.halving.trials[candidate].dropped is None:
                        self.submit((candidate, instance))
                if len(self.in_flight) < self.concurrency and not queue:
                    for pair in self.sure_next(number, outcomes)[: self.concurrency - len(self.in_flight)]:
                        self.submit(pair)
                done, _ = cf.wait(self.in_flight, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    pair = self.in_flight.pop(future)
                    self.collect(future, pair, outcomes if pair in current else self.ahead)
                if self.in_flight:
                    on_progress(self.progress(number, len(outcomes), len(pairs)))
        except BaseException as stopped:
            queue.clear()
            cf.wait(self.in_flight)  # requests in flight are paid for: let them finish and be recorded
            if isinstance(stopped, BudgetSpent):  # keep what finished: a cut-short rung still informs the leader
                for future, pair in self.in_flight.items():
                    if future.exception() is None:
                        self.collect(future, pair, outcomes)
                self.in_flight.clear()
                self.result.halving.apply({**outcomes, **self.ahead})
            raise
        on_progress(self.progress(number, len(outcomes), len(pairs), outcomes))
        return outcomes

    def submit(self, pair: Pair) -> None:
        self.in_flight[self.executor.submit(self.evaluate, *pair)] = pair

    def drain(self) -> None:
        """Wait for early next-rung evaluations the search did not need (a config dropped meanwhile)."""
        cf.wait(self.in_flight)
        self.in_flight.clear()

    def sure_next(self, number: int, outcomes: Mapping[Pair, Outcome]) -> list[Pair]:
        """Next-rung evaluations of configs that rank among the promoted even if every evaluation of this rung
        still running gives them the worst value and their rivals the best (mean aggregates of bounded metrics
        only); pairs already started or finished are left out."""
        halving = self.result.halving
        if self.metric_range is None or number + 1 >= len(halving.rungs):
            return []
        rung, following = halving.rungs[number], halving.rungs[number + 1]
        low, high = self.metric_range
        alive = [t for t in halving.alive if t.dropped is None]
        bounds: dict[int, tuple[float, float]] = {}
        for trial in alive:
            known = {**{i: m for i, m in trial.metrics.items() if i < rung.instances},
                     **{i: o.metric for (c, i), o in outcomes.items() if c == trial.index}}
            missing = rung.instances - len(known)
            total = sum(known.values())
            bounds[trial.index] = ((total + missing * low) / rung.instances, (total + missing * high) / rung.instances)
        sign = halving.direction.sign
        busy = set(self.in_flight.values()) | set(self.ahead)
        pairs = []
        for trial in alive:
            worst = min(sign * b for b in bounds[trial.index])
            rivals = sum(1 for other in alive if other is not trial and max(sign * b for b in bounds[other.index])
                         >= worst)
            if rivals < following.configs:
                pairs += [(trial.index, i) for i in range(rung.instances, following.instances)
                          if i not in trial.metrics and (trial.index, i) not in busy]
        return pairs

    def collect(self, future: cf.Future[Evaluation], pair: Pair,
                outcomes: dict[Pair, Outcome]) -> None:
        candidate, instance = pair
        error = future.exception()
        if isinstance(error, EvaluationError):
            return self.failed(Failure(candidate, instance, error))
        if error is not None:
            raise error
        evaluation = future.result()
        self.streak.clear()
        outcomes[pair] = evaluation.outcome
        self.result.passed[pair] = evaluation.passed
        self.result.usage.merge(evaluation.usage)
        self.result.judge.merge(evaluation.judge)
        self.result.ungraded += evaluation.ungraded
        self.on_evaluation(candidate, instance, evaluation)
        self.watch_cost(candidate, evaluation)
        return None

    def failed(self, failure: Failure) -> None:
        trial = self.result.halving.trials[failure.candidate]
        if trial.dropped is not None:
            return  # one error per config is shown; later ones were already in flight
        trial.dropped = f"error on {failure.error.where or f'instance #{failure.instance}'}: {failure.error.signature}"
        self.result.failures.append(failure)
        if self.streak and self.streak[0].error.signature != failure.error.signature:
            self.streak.clear()
        self.streak.append(failure)
        alive = sum(t.dropped is None for t in self.result.halving.trials)
        if len(self.streak) >= SAME_FAILURES_TO_STOP or alive == 0:
            raise SearchFailed(self.streak[0], len(self.streak))

    def watch_cost(self, candidate: int, evaluation: Evaluation) -> None:
        budget, trial = self.inference_budget, self.result.halving.trials[candidate]
        if budget is None:
            return
        self.costs[candidate].append(budget.measure(evaluation.usage.tokens, evaluation.cost))
        if trial.dropped is not None or not over_budget(self.costs[candidate], budget.amount):
            return
        seen = self.costs[candidate]
        trial.dropped = (f"dropped for cost after {len(seen)} instances: mean {budget.words(sum(seen) / len(seen))} "
                         f"per instance, over the inference budget of {budget.words(budget.amount)} at 95% confidence")

    def progress(self, number: int, done: int, total: int,
                 outcomes: Mapping[Pair, Outcome] | None = None) -> Progress:
        """`outcomes`: the rung finished with these; each of its configs' scores so far goes with it."""
        halving = self.result.halving
        rung = halving.rungs[number]
        sizes = [r.configs * (r.instances - (halving.rungs[k - 1].instances if k else 0))
                 for k, r in enumerate(halving.rungs)]
        scores = []
        for trial in ([t for t in halving.alive if t.dropped is None] if outcomes is not None else []):
            mine = {i: o for (c, i), o in outcomes.items() if c == trial.index} if outcomes else {}
            metrics = {**trial.metrics, **{i: o.metric for i, o in mine.items()}}
            tokens = trial.tokens + sum(o.tokens for o in mine.values())
            scores.append((trial.index, tuple(metrics[i] for i in sorted(metrics)), tokens))
        alive = sum(trial.dropped is None for trial in halving.alive)
        return Progress(rung=number, rungs=len(halving.rungs), configs=alive, instances=rung.instances, done=done,
                        total=total, usage=self.result.usage, finished=outcomes is not None,
                        planned=sum(sizes[:number]) + total + sum(sizes[number + 1:]), before=sum(sizes[:number]),
                        scores=tuple(scores))


def run_bracket(
    configs: list[Config],
    evaluate: Evaluate,
    *,
    halving: SuccessiveHalving,
    executor: Executor,
    concurrency: int,
    inference_budget: Budget | None = None,
    on_progress: OnProgress = lambda progress: None,
    on_evaluation: OnEvaluation = lambda candidate, instance, evaluation: None,
    select: str = "best",
    metric_range: tuple[float, float] | None = None,
) -> SearchResult:
    """Every candidate through the rungs of `halving`. Raises `SearchFailed` when candidates keep failing alike."""
    result = SearchResult(configs, [], halving, select=select)
    rung = RungRunner(executor, concurrency, evaluate, result, inference_budget, on_evaluation, metric_range)
    try:
        result.ranked = halving.run(lambda number, pairs: rung.run(number, pairs, on_progress))
    except BudgetSpent as spent:
        result.stopped = str(spent)
        result.ranked = halving.rank(halving.trials)
    finally:
        rung.drain()
    return result


def numbered(on_progress: OnProgress, offset: int) -> OnProgress:
    """`on_progress` with the bracket's configs numbered as the merged result numbers them."""
    return lambda progress: on_progress(dataclasses.replace(progress, offset=offset))
