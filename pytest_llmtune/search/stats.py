"""Scores and how sure they are: aggregates of per-instance metrics and their confidence intervals."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

__all__ = ["Aggregate", "Drift", "aggregate", "drift", "interval", "mean_by_key", "paired_difference", "resolve_agg"]

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


def interval(values: Sequence[float], confidence: float = CONFIDENCE, *,
             exact: bool = False) -> tuple[float, float] | None:
    """A confidence interval for the mean: Wilson's for pass/fail data (Clopper-Pearson's with `exact`: at least
    `confidence` coverage whatever the rate, where Wilson's dips a little below it at some rates on small samples),
    Student's t otherwise.

    None when the data cannot bound the mean (fewer than two values of a non-binary metric).
    """
    n = len(values)
    if n == 0:
        return None
    if all(v in (0.0, 1.0) for v in values):
        return _clopper_pearson(int(sum(values)), n, confidence) if exact else _wilson(sum(values), n, confidence)
    if n < 2:
        return None
    mean = statistics.fmean(values)
    half = _t_quantile(confidence, n - 1) * statistics.stdev(values) / math.sqrt(n)
    return (mean - half, mean + half)


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


@dataclass(frozen=True)
class Drift:
    """How a new score compares with a locked one: the mean per-instance difference (new minus locked, in the
    direction where positive is better), its two-sided Student interval at 1 - 2 alpha (to read; the p-value
    decides), and the one-sided p-value of "no worse than the lock by more than the margin"."""

    difference: float
    interval: tuple[float, float] | None
    p_value: float
    alpha: float
    margin: float
    paired: int  # instances compared pairwise; 0 when the lock kept no per-instance results
    instances: int
    unmatched: bool = False  # the lock kept results, but of none of these instances (renamed ids)

    @property
    def worse(self) -> bool:
        return self.p_value < self.alpha

    def words(self) -> str:
        if self.paired == self.instances and self.interval == (0.0, 0.0):
            return f"all {self.instances} results as locked"
        bounds = (f" [{self.interval[0]:+.3f}, {self.interval[1]:+.3f}] ({1 - 2 * self.alpha:.0%})"
                  if self.interval else "")
        basis = (f"paired on {self.paired} instances" if self.paired else
                 "against the locked score (none of the lock's per-instance results is of these instances)"
                 if self.unmatched else "against the locked score (no per-instance results in the lock)")
        margin = f", margin {self.margin:g}" if self.margin else ""
        return (f"difference {self.difference:+.3f}{bounds}, p = {self.p_value:.3g} (one-sided, {basis}, "
                f"alpha {self.alpha:g}{margin})")


PERMUTATIONS = 4000  # of the live check's permutation test: its p-value is within ~0.004 of the exact one at 0.05


def drift(new: Mapping[str, Sequence[float]], locked: Mapping[str, float], locked_score: float, *,
          mode: str = "max", alpha: float = 0.05, margin: float = 0.0, permutations: int = PERMUTATIONS) -> Drift:
    """Whether the `new` per-instance metrics (each instance's samples) are significantly worse than the lock's,
    by more than `margin`.

    Paired on the instances both have, by a permutation test: when nothing changed, an instance's locked result
    and its new samples are draws of the same config on the same instance, so which one is "the lock" is
    arbitrary; the p-value is the share of random reassignments whose mean difference is as low as the one seen
    ((1 + count) / (1 + permutations): never below what it should be, at any size or skew, where a t-test's
    false alarms exceed alpha on small or lopsided pass/fail data). Seeded: the same results, the same p-value.
    When the lock kept no per-instance results, a one-sample t-test against `locked_score` decides. The
    difference's interval is Student's, for the eye.
    """
    sign = 1.0 if mode == "max" else -1.0
    new = {key: values for key, values in new.items() if len(values)}
    shared = sorted(set(new) & set(locked))
    means = {key: statistics.fmean(values) for key, values in new.items()}
    if not shared:
        return replace(_against_score([sign * (value - locked_score) for value in means.values()], alpha, margin,
                                      len(new)), unmatched=bool(locked))
    diffs = [sign * (means[key] - locked[key]) for key in shared]
    mean = statistics.fmean(diffs)
    bounds = _t_bounds(diffs, alpha)
    if all(value == locked[key] for key in shared for value in new[key]):  # a replay of an unchanged lock
        return Drift(mean, bounds, 1.0, alpha, margin, len(shared), len(new))
    import numpy as np

    # rows: the locked result, then the samples, in the direction where higher is better; the margin shifts the new.
    # The statistic, mean over instances of (mean of the others - the one playing the lock), falls as the weighted
    # sum of the lock players, sum(x * c / (c - 1)) for c values a row, rises; rows whose values are all equal add
    # the same to every reassignment and are left out.
    repeat = max(len(new[key]) for key in shared)
    rows = np.array([[sign * locked[key]] + [sign * v + margin for v in new[key]] + [np.nan] * (repeat - len(new[key]))
                     for key in shared])
    varying = rows[np.nanmax(rows, axis=1) - np.nanmin(rows, axis=1) > 1e-12]
    if not len(varying):
        return Drift(mean, bounds, 1.0, alpha, margin, len(shared), len(new))
    counts = np.sum(~np.isnan(varying), axis=1)
    weighted = np.nan_to_num(varying) * (counts / (counts - 1))[:, None]
    observed = weighted[:, 0].sum()
    picks = np.random.default_rng(0).integers(0, counts, size=(permutations, len(varying)))  # who plays the lock
    sums = weighted[np.arange(len(varying)), picks].sum(axis=1)
    p_value = float((1 + np.sum(sums >= observed - 1e-9)) / (1 + permutations))
    return Drift(mean, bounds, p_value, alpha, margin, len(shared), len(new))


def _against_score(diffs: list[float], alpha: float, margin: float, instances: int) -> Drift:
    mean = statistics.fmean(diffs) if diffs else 0.0
    if len(diffs) < 2 or statistics.stdev(diffs) == 0:
        return Drift(mean, (mean, mean) if diffs else None, 0.0 if mean < -margin - 1e-12 else 1.0, alpha, margin,
                     0, instances)
    from scipy.stats import t

    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    return Drift(mean, _t_bounds(diffs, alpha), float(t.cdf((mean + margin) / se, len(diffs) - 1)), alpha, margin,
                 0, instances)


def _t_bounds(diffs: Sequence[float], alpha: float) -> tuple[float, float]:
    mean = statistics.fmean(diffs)
    spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
    if spread == 0:  # every difference alike (a replay of an unchanged lock): no need to import scipy.stats
        return (mean, mean)
    half = _t_quantile(1 - 2 * alpha, len(diffs) - 1) * spread / math.sqrt(len(diffs))
    return (mean - half, mean + half)


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
