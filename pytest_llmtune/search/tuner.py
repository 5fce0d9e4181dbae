"""The tune of one target: candidates through successive halving, evaluations run concurrently.

No pytest here: an evaluation is any `evaluate(config_index, instance_index) -> Evaluation`.
Costs are watched as evaluations finish: a config whose instances show, at 95% confidence, an
average cost over the inference budget is dropped at once and its pending evaluations cancelled.
When the optimization budget is spent, the search stops and keeps what it finished.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.search.budget import Budget, BudgetSpent, over_budget
from pytest_llmtune.search.halving import Outcome, SuccessiveHalving, Trial
from pytest_llmtune.usage import Usage

__all__ = ["Evaluation", "EvaluationError", "Progress", "SearchResult", "merge", "search"]

PROGRESS_EVERY = 10.0  # seconds between progress lines within a long rung


@dataclass(frozen=True)
class Evaluation:
    metric: float
    passed: bool
    usage: Usage
    cost: float = 0.0  # dollars, at list price


class EvaluationError(LlmtuneError):
    """An evaluation raised something other than a failed assertion; the search of its target stops."""

    def __init__(self, config: int, instance: int, error: BaseException) -> None:
        super().__init__(f"config #{config} on instance #{instance}: {type(error).__name__}: {error}")
        self.config, self.instance, self.error = config, instance, error
        self.configs: list[dict[str, Any]] = []  # the configs `config` indexes, set by the caller


@dataclass
class Progress:
    rung: int
    rungs: int
    configs: int
    instances: int
    done: int
    total: int
    usage: Usage
    finished: bool = False


@dataclass
class SearchResult:
    configs: list[dict[str, Any]]
    ranked: list[Trial]
    halving: SuccessiveHalving
    usage: Usage = field(default_factory=Usage)
    passed: dict[tuple[int, int], bool] = field(default_factory=dict)
    stopped: str | None = None  # why the search ended early (the optimization budget)

    @property
    def winner(self) -> Trial | None:
        """The best config scored on every instance, if any was."""
        complete = [t for t in self.ranked if t.dropped is None and len(t.metrics) == self.halving.n_instances]
        return complete[0] if complete else None


@dataclass
class _Rung:
    """One rung's evaluations in flight."""

    pool: cf.ThreadPoolExecutor
    evaluate: Callable[[int, int], Evaluation]
    result: SearchResult
    inference_budget: Budget | None
    costs: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))

    def run(self, number: int, pairs: list[tuple[int, int]],
            on_progress: Callable[[Progress], None]) -> dict[tuple[int, int], Outcome]:
        futures = {self.pool.submit(self.evaluate, c, i): (c, i) for c, i in pairs}
        outcomes: dict[tuple[int, int], Outcome] = {}
        pending, last_report = set(futures), time.monotonic()
        try:
            while pending:
                done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    self.collect(future, futures, pending, outcomes)
                if pending and time.monotonic() - last_report >= PROGRESS_EVERY:
                    last_report = time.monotonic()
                    on_progress(self.progress(number, len(outcomes), len(pairs)))
        except BaseException:
            for future in pending:
                future.cancel()
            raise
        on_progress(self.progress(number, len(outcomes), len(pairs), finished=True))
        return outcomes

    def collect(self, future: cf.Future[Evaluation], futures: Mapping[cf.Future[Evaluation], tuple[int, int]],
                pending: set[cf.Future[Evaluation]], outcomes: dict[tuple[int, int], Outcome]) -> None:
        config, instance = futures[future]
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, BudgetSpent):
            raise error
        if error is not None:
            raise EvaluationError(config, instance, error)
        evaluation = future.result()
        outcomes[config, instance] = Outcome(evaluation.metric, evaluation.usage.tokens, evaluation.cost)
        self.result.passed[config, instance] = evaluation.passed
        self.result.usage.merge(evaluation.usage)
        self.watch_cost(config, evaluation, futures, pending)

    def watch_cost(self, config: int, evaluation: Evaluation, futures: Mapping[cf.Future[Evaluation], tuple[int, int]],
                   pending: set[cf.Future[Evaluation]]) -> None:
        budget, trial = self.inference_budget, self.result.halving.trials[config]
        if budget is None:
            return
        self.costs[config].append(budget.measure(evaluation.usage.tokens, evaluation.cost))
        if trial.dropped is not None or not over_budget(self.costs[config], budget.amount):
            return
        seen = self.costs[config]
        trial.dropped = (f"dropped for cost after {len(seen)} instances: mean {budget.words(sum(seen) / len(seen))} "
                         f"per instance, over the inference budget of {budget.words(budget.amount)} at 95% confidence")
        for future in pending:
            if futures[future][0] == config:
                future.cancel()

    def progress(self, number: int, done: int, total: int, finished: bool = False) -> Progress:
        halving = self.result.halving
        rung = halving.rungs[number]
        return Progress(number, len(halving.rungs), rung.configs, rung.instances, done, total, self.result.usage,
                        finished)


def search(
    configs: list[dict[str, Any]],
    evaluate: Callable[[int, int], Evaluation],
    *,
    halving: SuccessiveHalving,
    concurrency: int,
    inference_budget: Budget | None = None,
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> SearchResult:
    result = SearchResult(configs, [], halving)
    pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llmtune")
    rung = _Rung(pool, evaluate, result, inference_budget)
    try:
        result.ranked = halving.run(lambda number, pairs: rung.run(number, pairs, on_progress))
    except BudgetSpent as spent:
        pool.shutdown(wait=True, cancel_futures=True)  # requests in flight are paid for: let them be recorded
        result.stopped = str(spent)
        result.ranked = halving.rank(halving.trials)
        return result
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return result


def merge(results: list[SearchResult]) -> SearchResult:
    """Brackets as one result: configs and trials renumbered, ranked together (all brackets share one plan)."""
    if len(results) == 1:
        return results[0]
    merged = SearchResult([], [], results[0].halving, stopped=results[-1].stopped)
    for result in results:
        offset = len(merged.configs)
        merged.configs += result.configs
        for trial in result.halving.trials:
            trial.index += offset
            merged.ranked.append(trial)
        merged.usage.merge(result.usage)
    merged.ranked = merged.halving.rank(merged.ranked)
    return merged
