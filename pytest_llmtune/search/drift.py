"""How a gate's new results compare with the lock's: the gate's judgement, instance by instance.

Two kinds of instance, judged apart:
- replayed: every response came from the recordings, byte for byte what the lock was scored on. A replayed
  response has no sampling noise, so a result that changed is a change of the code (the test, a helper, an
  installed package), and it is counted exactly: a net drop of the score beyond the margin on these instances is
  worse, whatever its size, with the instances named.
- sampled: new responses (`--llm-live`, or `--llm-record` when the code asks for requests that were not
  recorded): draws of the same config on the same instance, judged by a paired permutation test; the bound printed
  beside its p-value is the inversion of the same test, so the two always agree.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_llmtune.search.direction import Direction

__all__ = ["PERMUTATIONS", "Drift", "drift"]

PERMUTATIONS = 4000  # of the permutation test: its p-value is within ~0.004 of the exact one at 0.05
NAMED = 5  # instances named in words


@dataclass(frozen=True)
class Drift:
    """`difference`: the mean per-instance difference, new minus locked, in the direction where positive is better,
    over the instances both have. `changed` (replayed instances that score worse) and `code_difference` (what the
    replayed instances' changes did to the score) are exact; `p_value` and `bound` (the one-sided upper confidence
    bound at 1 - alpha on the sampled instances' mean difference, None when they cannot bound it) are the
    permutation test's."""

    difference: float
    p_value: float
    alpha: float
    margin: float
    paired: int  # instances compared pairwise; 0 when the lock kept no per-instance results
    instances: int
    unmatched: bool = False  # the lock kept results, but of none of these instances (renamed ids)
    replayed: int = 0  # of the paired: compared exactly
    changed: tuple[str, ...] = ()  # replayed instances whose result is worse than locked
    code_difference: float = 0.0  # the change of the score from the replayed instances
    sampled_difference: float = 0.0  # the mean difference on the instances with new samples
    bound: float | None = field(default=None)

    @property
    def sampled(self) -> int:
        return self.paired - self.replayed

    @property
    def code_worse(self) -> bool:
        return self.code_difference < -self.margin - 1e-12

    @property
    def worse(self) -> bool:
        return self.code_worse or self.p_value < self.alpha

    def words(self) -> str:
        if self.paired == self.instances and not self.changed and self.code_difference == 0 and (
                not self.sampled or self.p_value == 1.0 and self.bound == 0.0):
            return f"all {self.instances} results as locked"
        margin = f", margin {self.margin:g}" if self.margin else ""
        parts = []
        if self.replayed:
            parts.append(self._replayed_words(margin))
        if self.sampled or not self.paired:
            parts.append(self._sampled_words(margin))
        return "; ".join(parts)

    def _replayed_words(self, margin: str) -> str:
        head = f"{self.replayed} replayed instances compared exactly"
        if not self.changed and self.code_difference == 0:
            return f"{head}: as locked"
        names = ", ".join(self.changed[:NAMED]) + (" ..." if len(self.changed) > NAMED else "")
        worse = f"{len(self.changed)} score lower on the same responses ({names}), " if self.changed else ""
        return f"{head}: {worse}{self.code_difference:+.3f} on the score (a change of the code{margin})"

    def _sampled_words(self, margin: str) -> str:
        basis = (f"paired on {self.sampled} instances with new samples" if self.paired else
                 "against the locked score (none of the lock's per-instance results is of these instances)"
                 if self.unmatched else "against the locked score (no per-instance results in the lock)")
        bound = (f", at most {self.bound:+.3f} (one-sided {1 - self.alpha:.0%} bound)" if self.bound is not None
                 and math.isfinite(self.bound) else ", not bounded by so few instances" if self.bound is None else "")
        return (f"difference {self.sampled_difference:+.3f}{bound}, p = {self.p_value:.3g} (one-sided, {basis}, "
                f"alpha {self.alpha:g}{margin})")


def drift(new: Mapping[str, Sequence[float]], locked: Mapping[str, float], locked_score: float, *,
          mode: str = "max", alpha: float = 0.05, margin: float = 0.0, replayed: Collection[str] = (),
          permutations: int = PERMUTATIONS) -> Drift:
    """Whether the `new` per-instance metrics (each instance's samples) are worse than the lock's by more than
    `margin`: exactly on the instances in `replayed` (their responses are the recorded ones), by a paired
    permutation test on the others.

    The permutation test: when nothing changed, an instance's locked result and its new samples are draws of the
    same config on the same instance, so which one is "the lock" is arbitrary; the p-value is the share of random
    reassignments whose mean difference is as low as the one seen ((1 + count) / (1 + permutations): never below
    what it should be, at any size or skew). Seeded: the same results, the same p-value. When the lock kept no
    per-instance results, a one-sample t-test against `locked_score` decides, and its bound is Student's.
    """
    sign = Direction(mode).sign
    new = {key: values for key, values in new.items() if len(values)}
    shared = sorted(set(new) & set(locked))
    means = {key: statistics.fmean(values) for key, values in new.items()}
    if not shared:
        return _against_score([sign * (value - locked_score) for value in means.values()], alpha, margin, len(new),
                              unmatched=bool(locked))
    exact = [key for key in shared if key in replayed]
    sampled = [key for key in shared if key not in replayed]
    diffs = {key: sign * (means[key] - locked[key]) for key in shared}
    changed = tuple(key for key in exact if diffs[key] < -1e-12)
    code = sum(diffs[key] for key in exact) / len(new)
    rows = [[sign * locked[key], *(sign * v for v in new[key])] for key in sampled]
    p_value, bound = _permutation(rows, alpha, margin, permutations) if rows else (1.0, None)
    return Drift(statistics.fmean(diffs.values()), p_value, alpha, margin, len(shared), len(new),
                 replayed=len(exact), changed=changed, code_difference=code,
                 sampled_difference=statistics.fmean(diffs[key] for key in sampled) if sampled else 0.0, bound=bound)


def _permutation(rows: list[list[float]], alpha: float, margin: float,
                 permutations: int) -> tuple[float, float | None]:
    """The permutation test's p-value at `margin`, and its one-sided upper bound on the mean difference: the
    largest shift d of the new values for which "no worse than the lock by d" is not rejected, found by bisection
    (the p-value rises with the shift, the draws being fixed), so that worse at `margin` <=> bound < -margin."""
    import numpy as np

    if all(value == row[0] for row in rows for value in row[1:]):  # every sample as locked
        return 1.0, 0.0
    repeat = max(len(row) for row in rows)
    values = np.array([row + [np.nan] * (repeat - len(row)) for row in rows])
    counts = np.sum(~np.isnan(values), axis=1)
    scale = counts / (counts - 1)
    # who plays the lock in each reassignment: drawn once, so the p-value is a monotone function of the shift
    picks = np.random.default_rng(0).integers(0, counts, size=(permutations, len(rows)))
    index = np.arange(len(rows))

    def p_at(shift: float) -> float:
        # rows: the locked result, then the samples shifted by `shift`; the statistic, mean over instances of (mean
        # of the others - the one playing the lock), falls as the weighted sum of the lock players rises
        shifted = values.copy()
        shifted[:, 1:] += shift
        weighted = np.nan_to_num(shifted) * scale[:, None]
        observed = weighted[:, 0].sum()
        sums = weighted[index, picks].sum(axis=1)
        return float((1 + np.sum(sums >= observed - 1e-9)) / (1 + permutations))

    p_value = p_at(margin)
    spread = float(np.nanmax(values) - np.nanmin(values)) + 1.0
    low, high = -spread, spread  # p_at(-high) is the largest shift's p-value: a bound needs p_at(low) < alpha
    if p_at(low) >= alpha:
        return p_value, None
    if p_at(high) < alpha:
        return p_value, -high
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if p_at(middle) < alpha else (low, middle)
    bound = -high  # the smallest shift not rejected: d = -shift
    if (p_value < alpha) != (bound < -margin):  # at the boundary, the decision's own p-value has the last word
        bound = -margin - 1e-9 if p_value < alpha else -margin
    return p_value, bound


def _against_score(diffs: list[float], alpha: float, margin: float, instances: int, *,
                   unmatched: bool) -> Drift:
    mean = statistics.fmean(diffs) if diffs else 0.0
    if len(diffs) < 2 or statistics.stdev(diffs) == 0:
        return Drift(mean, 0.0 if mean < -margin - 1e-12 else 1.0, alpha, margin, 0, instances, unmatched,
                     sampled_difference=mean, bound=mean if diffs else None)
    from scipy.stats import t

    se = statistics.stdev(diffs) / math.sqrt(len(diffs))
    p_value = float(t.cdf((mean + margin) / se, len(diffs) - 1))
    bound = mean + float(t.ppf(1 - alpha, len(diffs) - 1)) * se
    return Drift(mean, p_value, alpha, margin, 0, instances, unmatched, sampled_difference=mean, bound=bound)
