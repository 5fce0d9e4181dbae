"""The tune of one target: candidates through successive halving, evaluations run concurrently.

No pytest here: an evaluation is any `evaluate(config_index, instance_index) -> Evaluation`.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_llmtune.client import Usage
from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.halving import Outcome, Rung, SuccessiveHalving, Trial

__all__ = ["Evaluation", "EvaluationError", "Progress", "SearchResult", "search"]

PROGRESS_EVERY = 10.0  # seconds between progress lines within a long rung


@dataclass(frozen=True)
class Evaluation:
    metric: float
    passed: bool
    usage: Usage


class EvaluationError(LlmtuneError):
    """An evaluation raised something other than a failed assertion; the search of its target stops."""

    def __init__(self, config: int, instance: int, error: BaseException) -> None:
        super().__init__(f"config #{config} on instance #{instance}: {type(error).__name__}: {error}")
        self.config, self.instance, self.error = config, instance, error


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

    @property
    def winner(self) -> Trial:
        return self.ranked[0]


def search(
    configs: list[dict[str, Any]],
    n_instances: int,
    evaluate: Callable[[int, int], Evaluation],
    *,
    halving: SuccessiveHalving,
    concurrency: int,
    on_progress: Callable[[Progress], None] = lambda progress: None,
) -> SearchResult:
    result = SearchResult(configs, [], halving)
    pool = cf.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llmtune")
    try:
        def run_rung(number: int, pairs: list[tuple[int, int]]) -> Mapping[tuple[int, int], Outcome]:
            return _run_pairs(pool, pairs, evaluate, result, number, halving.rungs[number], on_progress)

        result.ranked = halving.run(run_rung)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # requests in flight are paid for: let them be recorded
        raise
    pool.shutdown(wait=True)
    return result


def _run_pairs(
    pool: cf.ThreadPoolExecutor,
    pairs: list[tuple[int, int]],
    evaluate: Callable[[int, int], Evaluation],
    result: SearchResult,
    number: int,
    rung: Rung,
    on_progress: Callable[[Progress], None],
) -> dict[tuple[int, int], Outcome]:
    futures = {pool.submit(evaluate, config, instance): (config, instance) for config, instance in pairs}
    outcomes: dict[tuple[int, int], Outcome] = {}
    pending = set(futures)
    last_report = time.monotonic()
    while pending:
        done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_EXCEPTION)
        for future in done:
            config, instance = futures[future]
            if future.exception() is not None:
                for other in pending:
                    other.cancel()
                raise EvaluationError(config, instance, future.exception())  # type: ignore[arg-type]
            evaluation = future.result()
            outcomes[config, instance] = Outcome(evaluation.metric, evaluation.usage.tokens)
            result.passed[config, instance] = evaluation.passed
            result.usage.merge(evaluation.usage)
        if pending and time.monotonic() - last_report >= PROGRESS_EVERY:
            last_report = time.monotonic()
            on_progress(Progress(number, len(result.halving.rungs), rung.configs, rung.instances,
                                 len(outcomes), len(pairs), result.usage))
    on_progress(Progress(number, len(result.halving.rungs), rung.configs, rung.instances,
                         len(outcomes), len(pairs), result.usage, finished=True))
    return outcomes

