"""What a candidate costs per instance, and how many candidates a budget pays for (the budget fit).

Costs are estimated from what was measured (a config measured on some instances costs its own mean; another is
priced from the evaluations of configs like it: same prompt shape, then its own n and max_tokens), in the
optimization budget's unit.

A bracket's plan is priced as it will be paid: its own rungs, with MARGIN for noise, and apart from it what the
tune pays once after the search (the winner's held-out instances and confirmation run), kept once. The fit trades
configs against instances both ways (Hyperband's brackets): for as many candidates as it can, the rungs of
successive halving (`rungs_for`), then more aggressive ones (a smaller first rung, down to `min_instances`), and
candidates taken in Sobol order (any prefix is spread over the space) below a cost cap as high as fits: an
expensive candidate is left out rather than being a reason to keep only the cheapest one.
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

from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.halving import TIES, Rung, rungs_for

__all__ = ["MARGIN", "UNKNOWN", "BudgetFit", "CostModel", "fit_budget", "key_of", "plan_cost", "shape", "shapes"]

MARGIN = 1.2  # estimates are noisy: a plan is sized for a fifth more than its estimate
UNKNOWN = ("longer", "priced")  # what `CostModel.known` says of a config whose answers' length is not known
TRUNCATED = 0.9  # a sample this close to its max_tokens probably hit it: it says nothing about the natural length


def shape(config: Mapping[str, Any]) -> str:
    """What a config's prompt depends on: every field but the numbers (temperature 0.3 and 0.7 share a shape), and
    of demonstrations how many there are (which ones changes a prompt's length less than how many)."""
    return json.dumps({key: (None if isinstance(value, (int, float)) and not isinstance(value, bool) else
                             f"{value.k} demonstrations" if isinstance(value, Demonstrations) else value)
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
    overheads: list[float] = field(default_factory=list)  # per evaluation: what its judge calls cost

    def observe(self, config: Mapping[str, Any], requests: int, prompt_tokens: int, completion_tokens: int,
                cost: float, *, overhead: float = 0.0) -> None:
        """One finished evaluation of `config` and what it cost in the budget's unit (`overhead`: the part of it
        that is not the config's own requests, the test's judge calls; a config not measured yet pays it too)."""
        self.measured[key_of(config)].append(cost)
        self.overheads.append(overhead)
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

    def known(self, config: Mapping[str, Any]) -> str:
        """How well the config's answers are known: "whole" (its prompt shape's answers were seen to end within
        its max_tokens, or it was measured itself), "cut" (`cut_short`), "longer" (every answer of its shape was
        cut off, at less than its max_tokens: its estimate is its max_tokens, an upper bound), or "priced" (no
        evaluation of its shape: priced from other shapes', an estimate that can run low)."""
        if self.cut_short(config):
            return "cut"
        seen = self.seen.get(shape(config))
        if self.measured.get(key_of(config)) or seen and any(not s.truncated for s in seen):
            return "whole"
        return "longer" if seen else "priced"

    def cut_short(self, config: Mapping[str, Any]) -> bool:
        """Whether the config's max_tokens is under the natural length of its prompt shape's answers: the mean of
        the samples that ended on their own or, when every sample of the shape was cut off, the longest of them
        (the answers are longer). False for a shape not measured."""
        most, seen = config.get("max_tokens"), self.seen.get(shape(config), [])
        if not isinstance(most, int) or not seen:
            return False
        natural = [s.sample for s in seen if not s.truncated]
        return most < statistics.fmean(natural) if natural else most <= max(s.sample for s in seen)

    def holds(self, config: Mapping[str, Any]) -> float:
        """The share of its prompt shape's measured answer length that the config's max_tokens holds: of the mean
        of the samples that ended on their own or, when every sample was cut off, of the longest of them (the
        share is then at most this). Comparable across shapes: the larger, the likelier the answer fits. Infinite
        for a config without max_tokens or a shape not measured."""
        most, seen = config.get("max_tokens"), self.seen.get(shape(config), [])
        if not isinstance(most, int) or not seen:
            return math.inf
        natural = [s.sample for s in seen if not s.truncated]
        length = statistics.fmean(natural) if natural else max(s.sample for s in seen)
        return most / length if length > 0 else math.inf

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
        overhead = statistics.fmean(self.overheads) if self.overheads else 0.0
        return self.price(model, requests * prompt, requests * per_request * sample) + overhead


def plan_cost(rungs: Sequence[Rung], estimates: Sequence[float], ties: float = TIES) -> float:
    """The expected spend of a plan: every candidate on the first rung's instances, then the promoted ones
    (priced at the candidates' mean: who is promoted is not known yet; as many as `ties` can make them) on each
    later rung's new instances."""
    if not rungs:
        return 0.0
    mean = statistics.fmean(estimates)
    cost = sum(estimates[: rungs[0].configs]) * rungs[0].instances
    alive = rungs[0].configs
    for before, rung in itertools.pairwise(rungs):
        alive = min(alive, rung.configs + math.ceil(ties * rung.configs))
        cost += alive * (rung.instances - before.instances) * mean
    return cost


@dataclass(frozen=True)
class BudgetFit:
    """The candidates a budget pays for (indices into the drawn ones), their rungs, and what the plan is expected
    to spend: the bracket itself, and what is kept once for the winner's evaluations after the search."""

    chosen: list[int]
    expected: float  # the bracket's own spend (no margin)
    needed: float  # what the cheapest candidate would cost on every instance and the evaluations after the search
    rungs: list[Rung] = field(default_factory=list)  # the plan's rungs (configs x instances)
    reserved: float = 0.0  # kept for the winner's evaluations after the search (held-out, confirmation)
    ties: float = TIES  # the share more that ties may promote (0: the budget pays for the plan's configs only)


def shapes(count: int, instances: int, eta: int, min_instances: int, one_rung: bool) -> list[list[Rung]]:
    """The rungs a bracket of `count` candidates may run, least aggressive first: successive halving's own
    (`rungs_for`), then each with one rung more in front (a first rung eta times smaller, at least
    `min_instances`), so the same candidates cost less and more of them fit."""
    if one_rung or count == 1:
        return [[Rung(count, instances)]]
    found = [rungs_for(count, instances, eta, min_instances)]
    depth = len(found[0])
    while found[-1][0].instances > min_instances and found[-1][0].configs == count:
        sizes = [max(min_instances, math.ceil(instances / eta**depth)),
                 *(math.ceil(instances / eta ** (depth - r)) for r in range(1, depth)), instances]
        rungs = []
        for r, size in enumerate(sizes):
            configs = max(1, math.ceil(count / eta**r))
            last = configs == 1 or r == len(sizes) - 1
            rungs.append(Rung(configs, instances if last else size))
            if last:
                break
        found.append(rungs)
        depth += 1
    return found


def fit_budget(estimates: Sequence[float], instances: int, after: int, left: float, *, eta: int,
               min_instances: int, one_rung: bool, kept: float = 0.0, cut: Sequence[bool] = ()) -> BudgetFit:
    """The most candidates whose plan, with MARGIN for noise, fits in `left` once `after` evaluations of the
    winner (the held-out instances, and the confirmation run when there is one) are kept at the chosen candidates'
    mean cost, or `kept` when that is more (what the leader so far needs: the room is kept once, for whichever
    config wins). Candidates are taken in their order, below the highest cost cap that lets that many fit (for
    more than one, a cap at least the median estimate: the dearer half may be left out, never the cheap bias of
    keeping only the cheapest), on the least aggressive rungs that do; else a cheap few, their ties not promoted
    (a choice on a few instances, noisy as it is, beats one config drawn blind), then the first candidate alone
    that fits, each of those whose answers are not expected to be cut short (`cut`, per candidate: cheap because
    cut, and often the worst) before the others; else the cheapest candidate alone when its estimate fits without
    the margin (the alternative is no lock at all), again an uncut one first; else nothing."""
    needed = min(estimates) * (instances + after) if estimates else math.inf
    caps = sorted(set(estimates), reverse=True)
    median = statistics.median(estimates) if estimates else 0.0
    few = range(len(estimates), 1, -1)
    whole = [not (i < len(cut) and cut[i]) for i in range(len(estimates))]
    passes = [(few, median, TIES, False), *([] if one_rung else [(few, 0.0, 0.0, True)]), ([1], 0.0, TIES, True),
              *([] if one_rung else [(few, 0.0, 0.0, False)]), ([1], 0.0, TIES, False)]
    for counts, lowest, ties, uncut in passes:
        for count in counts:
            for cap in caps if count == 1 else [c for c in caps if c >= lowest]:
                chosen = [i for i, estimate in enumerate(estimates) if estimate <= cap and (whole[i] or not uncut)
                          ][:count]
                if len(chosen) < count:
                    break
                priced = [estimates[i] for i in chosen]
                reserved = max(kept, statistics.fmean(priced) * after)
                for rungs in shapes(count, instances, eta, min_instances, one_rung):
                    expected = plan_cost(rungs, priced, ties)
                    if MARGIN * expected + reserved <= left:
                        return BudgetFit(chosen, expected, needed, rungs, reserved, ties)
    if needed <= left:  # the last resort: the cheapest leaves the most room for estimates that ran low, but a
        # config that cuts every answer short is the cheapest because it is cut: the cheapest of the others first
        fits = [i for i in range(len(estimates)) if whole[i] and estimates[i] * (instances + after) <= left]
        cheapest = min(fits or range(len(estimates)), key=lambda i: (estimates[i], i))
        return BudgetFit([cheapest], estimates[cheapest] * instances, needed, [Rung(1, instances)],
                         max(kept, estimates[cheapest] * after))
    return BudgetFit([], 0.0, needed)
