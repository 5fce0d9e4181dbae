"""Which demonstrations help: credit from paired per-instance results, and swaps in the leaders' subsets.

"Which k of the pool" is a large categorical: a density over its coordinates learns little. Results compared on
the same instances do tell something about each demonstration: a config's effect is its mean, over the instances
it was scored on, of its metric minus the mean of every config scored on that instance (paired, so an easy
instance flatters nobody); a demonstration's credit is the mean effect of the configs that showed it, shrunk
towards 0 by PRIOR configs' worth of nothing. A later bracket then proposes the leaders again with one
demonstration swapped: the one with the least credit out, one of the others in, drawn with weights that favour
credit and leave room for the untried; and where the density model proposes the other settings, it draws whole
subsets with those weights. Pure and seeded.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pytest_llmtune.search.demos import Demo, Demonstrations, Demos

__all__ = ["Credit", "by_credit", "credit_of", "swapped"]

PRIOR = 2.0  # configs' worth of no effect that each credit is shrunk towards
SPREAD = 0.1  # the scale of credit in the swap's weights: a credit this much higher is e times as likely


def _key(demo: Demo) -> str:
    return json.dumps(demo, sort_keys=True)


@dataclass(frozen=True)
class Credit:
    """Each demonstration's credit (by its fields), for the demonstrations that were shown."""

    scores: Mapping[str, float]

    def of(self, demo: Demo) -> float:
        return self.scores.get(_key(demo), 0.0)


def credit_of(results: Sequence[tuple[Demonstrations, Mapping[int, float]]], sign: float) -> Credit:
    """The credit of every demonstration shown in `results` (each config's demonstrations and its metric per
    instance); `sign` 1 when higher is better, -1 when lower."""
    by_instance: dict[int, list[float]] = defaultdict(list)
    for _, metrics in results:
        for instance, value in metrics.items():
            by_instance[instance].append(value)
    means = {instance: sum(values) / len(values) for instance, values in by_instance.items()}
    every = [value for values in by_instance.values() for value in values]
    scale = statistics.pstdev(every) if len(every) > 1 else 0.0
    scale = scale if scale > 0 else 1.0  # a metric in points or in [0, 1]: effects in standard deviations
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, float] = defaultdict(float)
    for shown, metrics in results:
        if not metrics:
            continue
        effect = sign * sum(value - means[i] for i, value in metrics.items()) / len(metrics) / scale
        weight = math.sqrt(len(metrics))  # a config on more instances says more (its mean's error falls as this)
        for demo in shown.items:
            totals[_key(demo)] += weight * effect
            counts[_key(demo)] += weight
    return Credit({key: totals[key] / (counts[key] + PRIOR) for key in totals})


def swapped(point: Sequence[float], offset: int, domain: Demos, shown: Demonstrations, credit: Credit,
            rng: random.Random) -> tuple[float, ...]:
    """`point` with the demonstrations' coordinates (from `offset`, the domain's first) set to `shown` with one
    swapped: its least credited out, another of the pool in. `shown` as it is when the pool has no other."""
    pool = list(domain.pool or ())
    if not shown.items or len(pool) <= shown.k:
        return tuple(point)
    indices = [pool.index(demo) for demo in shown.items if demo in pool]
    if len(indices) != shown.k:
        return tuple(point)
    weakest = min(range(shown.k), key=lambda slot: (credit.of(pool[indices[slot]]), rng.random()))
    others = [i for i in range(len(pool)) if i not in indices]
    indices[weakest] = rng.choices(others, _weights(pool, others, credit))[0]
    coords = list(point)
    slots = domain.slot_coordinates()
    for slot, index in enumerate(indices):
        coords[offset + slots[slot]] = (index + 0.5) / len(pool)
    return tuple(coords)


def _weights(pool: Sequence[Demo], indices: Sequence[int], credit: Credit) -> list[float]:
    """exp(credit / SPREAD), relative to the best (no overflow, and the best of many well-credited stays ahead)."""
    credits = [credit.of(pool[i]) for i in indices]
    best = max(credits, default=0.0)
    weights = [math.exp((c - best) / SPREAD) for c in credits]
    return weights if sum(weights) > 0 else [1.0] * len(indices)


def by_credit(point: Sequence[float], offset: int, domain: Demos, credit: Credit,
              rng: random.Random) -> tuple[float, ...]:
    """`point` with every slot of the domain (and the spare) drawn anew, without replacement, with weights that
    favour credit."""
    pool = list(domain.pool or ())
    if not pool:
        return tuple(point)
    coords, left = list(point), list(range(len(pool)))
    for slot in domain.slot_coordinates():
        if not left:
            break
        index = rng.choices(left, _weights(pool, left, credit))[0]
        left.remove(index)
        coords[offset + slot] = (index + 0.5) / len(pool)
    return tuple(coords)
