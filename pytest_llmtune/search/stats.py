"""Scores and how sure they are: aggregates of per-instance metrics and their confidence intervals."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence

__all__ = ["Aggregate", "aggregate", "interval", "mean_by_key", "paired_difference", "resolve_agg"]

Aggregate = Callable[[Sequence[float]], float]
AGGREGATES: dict[str, Aggregate] = {"mean": statistics.fmean, "median": statistics.median}
CONFIDENCE = 0.95


def resolve_agg(agg: str | Aggregate) -> Aggregate:
    """`agg` as a function; raises ValueError naming the allowed names."""
    if callable(agg):
        return agg
    if agg not in AGGREGATES:
        raise ValueError(f"agg={agg!r}: use 'mean', 'median' or a callable taking the list of per-instance metrics")
    return AGGREGATES[agg]


def aggregate(values: Sequence[float], agg: str | Aggregate = "mean") -> float:
    if not values:
        return math.nan
    return float(resolve_agg(agg)(values))


def interval(values: Sequence[float], confidence: float = CONFIDENCE, *, exact: bool = False,
             binary: bool | None = None) -> tuple[float, float] | None:
    """A confidence interval for the mean: Wilson's for pass/fail data (Clopper-Pearson's with `exact`: at least
    `confidence` coverage whatever the rate, where Wilson's dips a little below it at some rates on small samples);
    otherwise a seeded BCa bootstrap (scipy.stats.bootstrap), which stays within the values' range, where Student's t
    leaves it on small or skewed samples (0.667 [0.30, 1.03] for metrics in [0, 1]).

    `binary`: whether the values are pass/fail results (a target without a metric); None infers it from the values.
    A metric's values that happen to be all 0 or 1 are not pass/fail: they get the bootstrap, never an interval
    beyond every value seen. None when the data cannot bound the mean (fewer than two values of a metric).
    """
    n = len(values)
    if n == 0:
        return None
    if binary is not False and all(v in (0.0, 1.0) for v in values):
        return _clopper_pearson(int(sum(values)), n, confidence) if exact else _wilson(sum(values), n, confidence)
    if n < 2:
        return None
    if min(values) == max(values):
        return (values[0], values[0])
    return _bootstrap(tuple(values), confidence)


BOOTSTRAP_RESAMPLES = 2000


@functools.lru_cache(maxsize=4096)  # the leaderboard and the reports ask for the same configs' intervals
def _bootstrap(values: tuple[float, ...], confidence: float) -> tuple[float, float]:
    import warnings

    import numpy as np
    from scipy.stats import bootstrap

    data = (np.asarray(values, dtype=float),)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a degenerate jackknife (few distinct values): the percentile method
        for method in ("BCa", "percentile"):
            found = bootstrap(data, np.mean, confidence_level=confidence, n_resamples=BOOTSTRAP_RESAMPLES,
                              method=method, rng=np.random.default_rng(0)).confidence_interval
            if math.isfinite(found.low) and math.isfinite(found.high):
                break
    low, high = min(values), max(values)  # a resampled mean never leaves the range; rounding may
    return (min(max(float(found.low), low), high), max(min(float(found.high), high), low))


def _clopper_pearson(successes: int, n: int, confidence: float) -> tuple[float, float]:
    from scipy.stats import beta

    tail = (1 - confidence) / 2
    low = float(beta.ppf(tail, successes, n - successes + 1)) if successes > 0 else 0.0
    high = float(beta.ppf(1 - tail, successes + 1, n - successes)) if successes < n else 1.0
    return (low, high)


def _wilson(successes: float, n: int, confidence: float) -> tuple[float, float]:
    z = statistics.NormalDist().inv_cdf((1 + confidence) / 2)
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(
    a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, tuple[float, float] | None]:
    """Mean of a - b over the same instances and its t-interval (None with fewer than two instances)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = statistics.fmean(diffs) if diffs else math.nan
    if len(diffs) < 2:
        return mean, None
    spread = statistics.stdev(diffs)
    half = _t_quantile(confidence, len(diffs) - 1) * spread / math.sqrt(len(diffs))
    return mean, (mean - half, mean + half)


def _t_quantile(confidence: float, dof: int) -> float:
    from scipy.stats import t  # scipy.stats takes ~0.5 s to import: only when a score is shown

    return float(t.ppf((1 + confidence) / 2, dof))


def mean_by_key(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """The mean of each key over the rows that have it (the other numbers of metric dicts, per instance)."""
    values: dict[str, list[float]] = {}
    for row in rows:
        for key, value in row.items():
            values.setdefault(key, []).append(value)
    return {key: statistics.fmean(found) for key, found in sorted(values.items())}
