"""The gate's judgement of a target's new results against its lock: pure, on plain data.

In this order: the threshold (on the score, or with `threshold_on="lower"` on the worse bound of its interval);
worse than the lock (drift.py: exactly on replayed instances, by a permutation test on sampled ones); and, for a
re-score, a lower score, which is never written into the lock unasked (`accept_lower`).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from pytest_llmtune.records import SCORE_DIGITS
from pytest_llmtune.search.drift import Drift, drift
from pytest_llmtune.search.evaluation import Evaluation
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.search.stats import aggregate, interval, mean_by_key

__all__ = ["Judgement", "judge"]


# what decided: the threshold missed, worse than the lock, a re-score lower than the lock, or all is well
THRESHOLD, WORSE, LOWER, OK = "threshold", "worse", "lower", "ok"


@dataclass(frozen=True)
class Judgement:
    """The verdict's data: the new score and how sure it is, its comparison with the lock, and what decided."""

    score: float
    interval: tuple[float, float] | None
    locked: float  # the lock's score
    results: dict[str, float]  # instance id -> its mean metric over its samples
    drift: Drift
    misses: int  # instances whose assertion failed
    others: dict[str, float]  # the other numbers of a metric dict, averaged
    tokens: int
    cost: float
    decided: str  # THRESHOLD, WORSE, LOWER or OK
    by_bound: bool = False  # the threshold was judged on the worse bound of the interval, not the score
    lower: bool = False  # the score is lower than the locked one (a re-score writes it only when asked)
    instances: int = 0

    @property
    def passed(self) -> bool:
        return self.decided == OK


def judge(evaluations: Mapping[str, Sequence[Evaluation]], spec: EvalSpec, *, locked_results: Mapping[str, float],
          locked_score: float, alpha: float, margin: float, threshold_on: str = "score", rescoring: bool = False,
          accept_lower: bool = False, replayed: Collection[str] = ()) -> Judgement:
    """Judge each instance's evaluations (its samples) against the lock. `replayed`: the instances whose every
    response is a recording from before this session (no sampling noise: compared exactly)."""
    results = {key: statistics.fmean(e.metric for e in found) for key, found in evaluations.items()}
    every = [e for found in evaluations.values() for e in found]
    values = list(results.values())
    score = round(aggregate(values, spec.agg), SCORE_DIGITS)
    bounds = interval(values, binary=spec.metric is None)
    # as precise as the lock keeps its results: a replay of an unchanged lock compares equal values
    samples = {key: [round(e.metric, SCORE_DIGITS) for e in found] for key, found in evaluations.items()}
    change = drift(samples, locked_results, locked_score, mode=spec.mode, alpha=alpha, margin=margin,
                   replayed=replayed)
    judged = score
    if threshold_on == "lower" and bounds is not None:
        judged = bounds[0] if spec.direction.sign > 0 else bounds[1]
    lower = not spec.beats(score, locked_score)
    if spec.threshold is not None and not spec.beats(judged, spec.threshold):
        decided = THRESHOLD
    elif change.worse and not (rescoring and accept_lower):
        decided = WORSE
    elif rescoring and lower and not accept_lower:
        decided = LOWER
    else:
        decided = OK
    return Judgement(score=score, interval=bounds, locked=locked_score, results=results, drift=change,
                     misses=sum(not e.passed for e in every), others=mean_by_key([e.others for e in every]),
                     tokens=sum(e.usage.tokens for e in every), cost=sum(e.cost for e in every), decided=decided,
                     by_bound=judged != score, lower=lower, instances=len(values))
