"""What a candidate costs per instance, and how many candidates a budget pays for (the budget fit).

Costs are estimated from what was measured (a config measured on some instances costs its own mean; another is
priced from the evaluations of configs like it: same prompt shape, then its own n and max_tokens), in the
optimization budget's unit. A bracket keeps the longest prefix of its candidates (Sobol order: any prefix is
spread over the space) whose successive-halving plan fits what is left of the budget, after keeping room for the
winner's held-out evaluation: fewer configs, each still compared on the same instances and the best finished on
all of them. This is Hyperband's trade of configs against instances, with the budget choosing the point.
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_llmtune.search.halving import TIES, Rung, rungs_for

__all__ = ["MARGIN", "BudgetFit", "CostModel", "fit_budget", "key_of", "plan_cost", "shape"]

MARGIN = 1.2  # estimates are noisy: a plan is sized for a fifth more than its estimate
TRUNCATED = 0.9  # a sample this close to its max_tokens probably hit it: it says nothing about the natural length


def shape(config: Mapping[str, Any]) -> str:
    """What a config's prompt depends on: every field but the numbers (temperature 0.3 and 0.7 share a shape)."""
    return json.dumps({key: (None if isinstance(value, (int, float)) and not isinstance(value, bool) else value)
                       for key, value in config.items()}, sort_keys=True, default=repr)


def key_of(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=repr)


@dataclass(frozen=True)
class _Seen:
    """One finished evaluation, per request and per generated sample."""

    prompt: float  # prompt tokens per request
    sample: float  # completion tokens per generated sample
    truncated: bool
    calls: float  # calls to the model per evaluation (requests over the requests one call makes)


@dataclass
class CostModel:
    """Estimates a config's cost per instance. `price(model, prompt_tokens, completion_tokens)` is in the budget's
    unit; `split_n`: n samples are sent as n requests (the prompt is paid n times) unless temperature is 0."""

    price: Callable[[str, float, float], float]
    split_n: bool = False
    default_model: str = ""
    measured: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))  # config -> its costs
    seen: dict[str, list[_Seen]] = field(default_factory=lambda: defaultdict(list))  # shape -> evaluations

    def observe(self, config: Mapping[str, Any], requests: int, prompt_tokens: int, completion_tokens: int,
                cost: float) -> None:
        """One finished evaluation of `config` and what it cost in the budget's unit."""
        self.measured[key_of(config)].append(cost)
        if requests <= 0:
            return
        draws, per_request = self._samples(config)
        sample = completion_tokens / (requests * per_request)
        most = config.get("max_tokens")
        truncated = isinstance(most, int) and sample >= TRUNCATED * most
        self.seen[shape(config)].append(_Seen(prompt_tokens / requests, sample, truncated, requests / draws))

    def _samples(self, config: Mapping[str, Any]) -> tuple[int, int]:
        """Requests per call, and samples each request generates."""
        n = int(config.get("n", 1)) if isinstance(config.get("n", 1), int) else 1
        if not self.split_n:
            return 1, n
        return (1, 1) if config.get("temperature") == 0 else (n, 1)

    @property
    def ready(self) -> bool:
        return any(self.seen.values())

    @property
    def evaluations(self) -> int:
        return sum(len(group) for group in self.seen.values())

    def estimate(self, config: Mapping[str, Any]) -> float:
        """The config's cost per instance: measured when it was, else priced from configs like it (every
        measured config when none shares its prompt shape). Needs `ready`."""
        own = self.measured.get(key_of(config))
        if own:
            return statistics.fmean(own)
        seen = self.seen.get(shape(config)) or [s for group in self.seen.values() for s in group]
        calls = statistics.fmean(s.calls for s in seen)
        prompt = statistics.fmean(s.prompt for s in seen)
        natural = [s.sample for s in seen if not s.truncated]
        most = config.get("max_tokens")
        most = most if isinstance(most, int) else None
        if natural:
            sample = statistics.fmean(natural) if most is None else min(most, statistics.fmean(natural))
        else:  # every answer so far hit its max_tokens: assume this one will too
            sample = float(most) if most is not None else max(s.sample for s in seen)
        draws, per_request = self._samples(config)
        requests = calls * draws
        model = str(config.get("model", self.default_model))
        return self.price(model, requests * prompt, requests * per_request * sample)


def plan_cost(rungs: Sequence[Rung], estimates: Sequence[float]) -> float:
    """The expected spend of a plan: every candidate on the first rung's instances, then the promoted ones
    (priced at the candidates' mean: who is promoted is not known yet; as many as ties can make them) on each
    later rung's new instances."""
    if not rungs:
        return 0.0
    mean = statistics.fmean(estimates)
    cost = sum(estimates[: rungs[0].configs]) * rungs[0].instances
    alive = rungs[0].configs
    for before, rung in itertools.pairwise(rungs):
        alive = min(alive, rung.configs + math.ceil(TIES * rung.configs))
        cost += alive * (rung.instances - before.instances) * mean
    return cost


@dataclass(frozen=True)
class BudgetFit:
    """The candidates a budget pays for (indices into the drawn ones) and the plan's expected spend."""

    chosen: list[int]
    expected: float
    needed: float  # what the cheapest candidate would cost on every instance and the evaluations after the search


def fit_budget(estimates: Sequence[float], instances: int, after: int, left: float, *, eta: int,
               min_instances: int, one_rung: bool) -> BudgetFit:
    """The longest prefix of the candidates whose plan, with room for `after` evaluations of the winner once the
    search is done (the held-out instances, and the confirmation run when there is one) and MARGIN for noise,
    fits in `left`; else the cheapest candidate alone when its estimate fits (no margin: the alternative is no
    lock at all); else nothing."""
    needed = min(estimates) * (instances + after) if estimates else math.inf
    for count in range(len(estimates), 0, -1):
        prefix = list(estimates[:count])
        rungs = [Rung(count, instances)] if one_rung else rungs_for(count, instances, eta, min_instances)
        expected = plan_cost(rungs, prefix) + statistics.fmean(prefix) * after
        if MARGIN * expected <= left:
            return BudgetFit(list(range(count)), expected, needed)
    if needed <= left:
        cheapest = min(range(len(estimates)), key=lambda i: (estimates[i], i))
        return BudgetFit([cheapest], needed, needed)
    return BudgetFit([], 0.0, needed)
