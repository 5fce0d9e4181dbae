"""After the brackets: the leader finished when the budget stopped the search, the finalists scored on the
instances the search never saw, and the winner's confirmation run with fresh samples."""

from __future__ import annotations

import concurrent.futures as cf
from collections.abc import Mapping

from pytest_llmtune.search.budget import BudgetSpent
from pytest_llmtune.search.evaluation import Evaluate, Evaluation, EvaluationError, Executor
from pytest_llmtune.search.halving import Trial
from pytest_llmtune.search.result import Confirmation, HeldOut, SearchResult
from pytest_llmtune.search.scores import Scores

__all__ = ["FINALISTS", "confirm", "finish_leader", "score_held_out", "score_on"]

FINALISTS = 3  # the best complete candidates scored on the held-out instances


def score_held_out(result: SearchResult, evaluate: Evaluate, instances: range, *, executor: Executor,
                   finalists: int = FINALISTS) -> None:
    """Score the best complete candidates on `instances`, which the search never saw, into `result.held_out`.

    For information only: the winner stays the best on the tuning instances, so its held-out score is an
    honest estimate of what it does on new data (choosing by it would make that estimate optimistic too).
    """
    winner = result.winner
    chosen = ([winner] if winner else []) + [t for t in result.complete if t is not winner]  # the winner first
    new = {trial.index: HeldOut() for trial in chosen[:finalists] if trial.index not in result.held_out}
    result.held_out.update(new)  # a finalist already scored (the winner, before its confirmation) is not again
    score_on(result, evaluate, {index: (held, instances) for index, held in new.items()}, executor=executor)


def confirm(result: SearchResult, evaluate: Evaluate, instances: range, *, executor: Executor) -> Confirmation:
    """The winner again on every instance, with samples of its own (`evaluate` draws them): what the search
    measured of the config it picked is the luckiest of the configs it tried, and fresh samples are not. These
    results are what the lock keeps, so that a live check compares like with like."""
    assert result.winner is not None
    confirmed = Confirmation()
    score_on(result, evaluate, {result.winner.index: (confirmed, instances)}, executor=executor)
    return confirmed


def score_on(result: SearchResult, evaluate: Evaluate, into: Mapping[int, tuple[HeldOut | Confirmation, range]], *,
             executor: Executor) -> None:
    """Evaluate each candidate of `into` on its instances, concurrently, into its scores."""
    pending: dict[cf.Future[Evaluation], tuple[int, int]] = {}
    for candidate, (_, instances) in into.items():
        for instance in instances:
            pending[executor.submit(evaluate, candidate, instance)] = (candidate, instance)
    for future in cf.as_completed(pending):
        candidate, instance = pending[future]
        scores, error = into[candidate][0], future.exception()
        if isinstance(error, (EvaluationError, BudgetSpent)):
            where = f"{error.where}: " if isinstance(error, EvaluationError) else ""
            scores.error = scores.error or f"{where}{error}"
            continue
        if error is not None:
            raise error
        _add(result, scores, instance, future.result())


def finish_leader(result: SearchResult, leader: Trial, evaluate: Evaluate, instances: int, *,
                  executor: Executor) -> None:
    """Evaluate `leader` on the instances it has not been scored on: when the budget stopped the search before
    any candidate was scored on every instance, a tune still ends with the best it could buy."""
    missing = [i for i in range(instances) if i not in leader.metrics]
    pending = {executor.submit(evaluate, leader.index, instance): instance for instance in missing}
    failed: BaseException | None = None
    for future in cf.as_completed(pending):
        error = future.exception()
        if isinstance(error, (BudgetSpent, EvaluationError)):
            failed = failed or error
            continue
        if error is not None:
            raise error
        _add(result, leader, pending[future], future.result())
    if failed is None:
        leader.rung = len(result.halving.rungs) - 1
        result.ranked = result.halving.rank(result.ranked)
        result.finished = (f"config #{leader.index}, the leader when the budget stopped the search, was finished on "
                           f"its {len(missing)} remaining instances with the budget kept for it")
    else:
        result.finished = f"finishing the leader, config #{leader.index}, failed: {failed}"


def _add(result: SearchResult, scores: Scores, instance: int, evaluation: Evaluation) -> None:
    scores.add(instance, evaluation.outcome)
    result.usage.merge(evaluation.usage)
    result.judge.merge(evaluation.judge)
    result.ungraded += evaluation.ungraded
