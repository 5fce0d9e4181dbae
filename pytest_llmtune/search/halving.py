"""Successive halving over instances: many configs on a few instances, the best on all of them.

Every config alive at a rung is evaluated on the same instances (the first `Rung.instances` of a
fixed order), so scores are compared on equal terms; a promoted config keeps its earlier results
and is only evaluated on the instances it has not seen. The last rung covers every instance, so
the winner has been evaluated on all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pytest_llmtune.search.direction import Direction
from pytest_llmtune.search.scores import Outcome, Scores
from pytest_llmtune.search.stats import Aggregate, aggregate, paired_difference

__all__ = ["TIES", "Outcome", "Rung", "SuccessiveHalving", "Trial", "rungs_for", "significantly_worse"]

TIES = 0.5  # configs tied with the cut-off are promoted too, up to this share of a rung's configs more


@dataclass(frozen=True)
class Rung:
    configs: int  # how many configs are evaluated at this rung
    instances: int  # on the first `instances` instances


@dataclass
class Trial(Scores):
    """One candidate's results so far: `index` numbers it among the bracket's (then the merged result's)."""

    index: int
    rung: int = 0
    dropped: str | None = None  # why the search stopped evaluating it early


Evaluate = Callable[[int, list[tuple[int, int]]], Mapping[tuple[int, int], Outcome]]  # (rung, pairs)


def rungs_for(n_configs: int, n_instances: int, eta: int = 3, min_instances: int = 5) -> list[Rung]:
    """The rungs: each keeps 1/eta of the configs and gives them eta times the instances."""
    _check("n_configs", n_configs, 1)
    _check("n_instances", n_instances, 1)
    _check("eta", eta, 2)
    _check("min_instances", min_instances, 1)
    last = 0
    while n_configs >= eta ** (last + 1) and n_instances / eta ** (last + 1) >= min_instances:
        last += 1
    return [
        Rung(
            configs=math.ceil(n_configs / eta**r),
            instances=n_instances if r == last else math.ceil(n_instances / eta ** (last - r)),
        )
        for r in range(last + 1)
    ]


def _check(name: str, value: int, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"The value of `{name}` is {value!r}, but must be `{name} >= {low}`")


class SuccessiveHalving:
    """Runs the rungs of `rungs_for` with a caller-supplied, possibly concurrent, `evaluate`."""

    def __init__(
        self,
        n_configs: int,
        n_instances: int,
        *,
        eta: int = 3,
        min_instances: int = 5,
        mode: str = "max",
        agg: str | Aggregate = "mean",
        one_rung: bool = False,
        rungs: Sequence[Rung] = (),
        ties: float = TIES,
    ) -> None:
        """`one_rung`: every config on every instance (the random and grid strategies). `rungs`: a plan's own
        (the budget fit's), which must start with every config and end on every instance. `ties`: the share of a
        rung's configs more that ties with the cut-off may promote (0 when the budget cannot pay for them)."""
        self.direction = Direction(mode)
        if rungs:
            if rungs[0].configs != n_configs or rungs[-1].instances != n_instances:
                raise ValueError(f"rungs {list(rungs)} must start with the {n_configs} configs and end on all "
                                 f"{n_instances} instances")
            self.rungs = list(rungs)
        else:
            self.rungs = ([Rung(n_configs, n_instances)] if one_rung
                          else rungs_for(n_configs, n_instances, eta, min_instances))
        self.n_instances = n_instances
        self.ties = ties
        self.agg = agg
        self.trials = [Trial(index) for index in range(n_configs)]
        self.alive: list[Trial] = []  # the configs of the rung being evaluated

    def run(self, evaluate: Evaluate, on_rung: Callable[[int, Rung], None] | None = None) -> list[Trial]:
        """Every trial, best first: the winner, then by the rung reached, score and cost."""
        alive = list(self.trials)
        for number, rung in enumerate(self.rungs):
            alive = self.promote([t for t in self.rank(alive) if t.dropped is None], rung.configs)
            if not alive:
                break
            self.alive = alive
            self._evaluate(alive, rung, number, evaluate)
            if on_rung is not None:
                on_rung(number, rung)
        return self.rank(self.trials)

    def promote(self, ranked: Sequence[Trial], count: int) -> list[Trial]:
        """The best `count`, and those the paired comparison on their shared instances cannot call worse than the
        last of them (at most `ties` x count more, best first): a config is not eliminated on noise."""
        kept = list(ranked[:count])
        if not kept or len(ranked) <= count or not ranked[count].metrics:
            return kept
        cutoff, room = kept[-1], math.ceil(self.ties * count)
        return kept + [t for t in ranked[count:] if not significantly_worse(t, cutoff, self.direction)][:room]

    def _evaluate(self, alive: Sequence[Trial], rung: Rung, number: int, evaluate: Evaluate) -> None:
        pairs = [(t.index, i) for t in alive for i in range(rung.instances) if i not in t.metrics]
        outcomes = evaluate(number, pairs)
        for trial in alive:
            trial.rung = number
        self.apply(outcomes)

    def apply(self, outcomes: Mapping[tuple[int, int], Outcome]) -> None:
        """Add finished evaluations to their trials (also those of a rung that a budget cut short)."""
        for (candidate, instance), outcome in outcomes.items():
            self.trials[candidate].add(instance, outcome)

    def score(self, trial: Scores) -> float:
        return aggregate(trial.values(), self.agg)

    def rank(self, trials: Sequence[Trial]) -> list[Trial]:
        """Dropped last; scored on more instances first (further on: rungs are prefixes of one instance order, and
        brackets of different sizes number their rungs differently); then the better score, the cheaper, the
        earlier."""
        def key(trial: Trial) -> tuple[bool, int, float, float, int]:
            score = self.score(trial) if trial.metrics else math.nan
            ranked_score = math.inf if math.isnan(score) else self.direction.ahead(score)
            return (trial.dropped is not None, -len(trial.metrics), ranked_score, trial.tokens_per_instance,
                    trial.index)

        return sorted(trials, key=key)


def significantly_worse(trial: Trial, best: Trial, direction: Direction) -> bool:
    """Whether `trial` is worse than `best` beyond noise: the 95% interval of their paired difference on the
    instances both were scored on excludes 0."""
    if trial is best:
        return False
    shared = sorted(set(trial.metrics) & set(best.metrics))
    _, bounds = paired_difference([best.metrics[i] for i in shared], [trial.metrics[i] for i in shared])
    if bounds is None or bounds == (0.0, 0.0):
        return False
    return bounds[0] > 0 if direction.sign > 0 else bounds[1] < 0
