"""What the optimization budget pays for, as a tune runs: which of a bracket's candidates it can finish, the room
kept to finish the leader, and whether the winner's confirmation run still fits.

Before anything was measured, one pilot evaluation per prompt shape prices the rest (`CostModel`); the pilots'
evaluations are kept, and the search uses them when it gets there. `fit_plan` is the one fit the tune and the
`--co` preview both use.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_llmtune.search.budget import Budget, BudgetSpent, Spending
from pytest_llmtune.search.costs import MARGIN, BudgetFit, CostModel, fit_budget, key_of, shape
from pytest_llmtune.search.evaluation import (
    Config,
    Evaluate,
    EvaluateWith,
    Evaluation,
    EvaluationError,
    Executor,
    NothingFits,
)
from pytest_llmtune.search.halving import Trial
from pytest_llmtune.search.problem import TuneProblem

__all__ = ["PILOTS", "Affordability", "PlanFit", "fit_plan"]

PILOTS = 16  # prompt shapes measured (one evaluation each) before the first plan is sized
LiveKey = tuple[int, int]  # (bracket, candidate)


@dataclass(frozen=True)
class PlanFit:
    """A bracket's budget fit, and whether it still keeps room for the winner's confirmation run."""

    fit: BudgetFit
    confirm: int  # instances of the confirmation run it keeps room for (0: the budget cannot also pay for it)


def fit_plan(problem: TuneProblem, estimates: Sequence[float], left: float, confirm: int) -> PlanFit:
    """The candidates `left` pays for, with room for the winner's held-out evaluation and, while something still
    fits with it, its confirmation run; when nothing does, the confirmation gives way (the lock then keeps the
    search's results)."""
    found = _fit(problem, estimates, left, problem.held_out_count + confirm)
    if not found.chosen and confirm:
        return PlanFit(_fit(problem, estimates, left, problem.held_out_count), 0)
    return PlanFit(found, confirm)


def _fit(problem: TuneProblem, estimates: Sequence[float], left: float, reserved: int) -> BudgetFit:
    return fit_budget(estimates, problem.instances, reserved, left, eta=problem.eta,
                      min_instances=problem.min_instances, one_rung=problem.one_rung)


@dataclass
class Affordability:
    """The budget's side of one tune (a budget must be set)."""

    problem: TuneProblem
    spending: Spending
    confirm: int = field(init=False)  # instances of the confirmation run the plan keeps room for, while the budget
    # allows it (the problem's, until the budget gives it up)
    costs: CostModel = field(init=False)
    live: dict[LiveKey, tuple[dict[int, float], list[float]]] = field(default_factory=dict)
    # (bracket, candidate) -> its metrics by instance and per-instance costs so far, as evaluations finish
    protected: LiveKey | None = None  # the (bracket, candidate) whose finishing the reserve kept room for
    fits: list[tuple[int, BudgetFit]] = field(default_factory=list)  # per bracket: candidates drawn, the fit
    known: dict[tuple[str, int], Evaluation] = field(default_factory=dict)  # the pilot evaluation, used once

    def __post_init__(self) -> None:
        budget, price, default = self.budget, self.problem.price, self.problem.default_model or ""
        self.costs = CostModel(lambda model, prompt, completion: budget.measure(
            round(prompt + completion), price(model, prompt, completion)), self.problem.split_n, default)
        self.confirm = self.problem.confirm

    @property
    def budget(self) -> Budget:
        assert self.spending.budget is not None
        return self.spending.budget

    def afford(self, configs: list[Config], evaluate_with: EvaluateWith, executor: Executor, *, first: bool,
               cheaper: Callable[[float], tuple[Config, float] | None], stopped: Callable[[str], None]) -> list[Config]:
        """The candidates whose plan the budget left pays for (see `costs.fit_budget`). When not one candidate can
        be finished: before the search has spent anything (`first`), one `cheaper` candidate it can finish, else
        `NothingFits` says what budget would do; later, no new bracket starts (`stopped` says why)."""
        self.pilot(configs, evaluate_with, executor)
        if not self.costs.ready:  # every pilot failed: the search meets (and reports) the error
            return configs
        budget = self.budget
        estimates = [self.costs.estimate(config) for config in configs]
        left = budget.amount - self.spending.spent
        if first:  # the first bracket gives up the confirmation rather than lock nothing
            planned = fit_plan(self.problem, estimates, left, self.confirm)
            fitted, self.confirm = planned.fit, planned.confirm
        else:
            fitted = _fit(self.problem, estimates, left, self.problem.held_out_count + self.confirm)
        if not fitted.chosen and first:  # look further for one config the budget can finish
            found = cheaper(left)
            if found is not None:
                self.fits.append((len(configs), BudgetFit([0], found[1], found[1])))
                return [found[0]]
        self.fits.append((len(configs), fitted))
        if not fitted.chosen and first:
            cheapest = min(estimates)
            enough = _round_up(self.spending.spent + MARGIN * fitted.needed)
            raise NothingFits(
                f"the optimization budget of {budget.words(budget.amount)} cannot pay for one config on all "
                f"{self.problem.instances + self.problem.held_out_count} instances: the cheapest of {len(configs)} "
                f"candidates costs about {budget.words(cheapest)} an instance (priced from {self.costs.evaluations} "
                f"measured evaluation{'s' if self.costs.evaluations != 1 else ''}), so a lock needs about "
                f"{budget.words(fitted.needed)} more; give optimization_budget={budget.argument(enough)} or more, "
                "or a cheaper space (smaller n or max_tokens)")
        if not fitted.chosen:
            stopped(f"the {budget.words(left)} left of the optimization budget cannot finish another config "
                    f"(about {budget.words(fitted.needed)} needed)")
        return [configs[i] for i in fitted.chosen]

    def pilot(self, configs: list[Config], evaluate_with: EvaluateWith, executor: Executor) -> None:
        """Measure each prompt shape not measured yet (at most PILOTS): its cheapest candidate (smallest
        n x max_tokens) on the first instance. The evaluations are kept: the search uses them when it gets there."""
        cheapest: dict[str, Config] = {}
        for config in configs:
            group = shape(config)
            if group not in self.costs.seen and (group not in cheapest or _worst(config) < _worst(cheapest[group])):
                cheapest[group] = config
        chosen = list(cheapest.values())[:PILOTS]
        if not chosen:
            return
        evaluate = evaluate_with(chosen)
        futures = [executor.submit(evaluate, index, 0) for index in range(len(chosen))]
        for config, future in zip(chosen, futures, strict=True):
            if future.exception() is None:
                evaluation = future.result()
                self.known[(key_of(config), 0)] = evaluation
                self.observe(config, evaluation)
            elif not isinstance(future.exception(), (EvaluationError, BudgetSpent)):
                raise future.exception()  # type: ignore[misc]

    def with_known(self, configs: list[Config], evaluate: Evaluate) -> Evaluate:
        """`evaluate`, answering from the pilot where it already ran."""
        def known_or_evaluate(candidate: int, instance: int) -> Evaluation:
            known = self.known.get((key_of(configs[candidate]), instance))
            return known if known is not None else evaluate(candidate, instance)

        return known_or_evaluate

    def watch(self, key: LiveKey, config: Config, instance: int, evaluation: Evaluation) -> None:
        """A finished evaluation of the search: what the reserve and the cost model learn from it."""
        metrics, costs = self.live.setdefault(key, ({}, []))
        metrics[instance] = evaluation.metric
        costs.append(self.measure(evaluation))
        if (key_of(config), instance) not in self.known:  # the pilot was observed when it ran
            self.observe(config, evaluation)

    def observe(self, config: Config, evaluation: Evaluation) -> None:
        usage = evaluation.usage
        self.costs.observe(config, usage.live.requests + usage.replay.requests, usage.prompt_tokens,
                           usage.completion_tokens, self.measure(evaluation))

    def measure(self, evaluation: Evaluation) -> float:
        return self.budget.measure(evaluation.usage.tokens, evaluation.cost)

    def can_confirm(self, winner: Trial) -> bool:
        """Whether what is left of the optimization budget pays for the winner's confirmation run on every
        instance, priced at what the winner cost per instance in the search: the plan reserved it while it could,
        but estimates can run low, and a search that cost less than planned may leave room after all."""
        per_instance = self.budget.measure(winner.tokens, winner.cost) / max(1, len(winner.metrics))
        total = self.problem.instances + self.problem.held_out_count
        return per_instance * total <= self.budget.amount - self.spending.spent

    def reserve(self) -> float:
        """What finishing the leader on every instance would cost: its mean cost per instance so far, times the
        instances it has not been scored on (the held-out ones included), with a fifth more for noise. The leader
        is the candidate furthest on, then best, among those the budget can still finish; when none can be,
        nothing is kept back."""
        problem = self.problem
        left = self.budget.amount - self.spending.spent
        sign = problem.spec.direction.sign
        scored = sorted(((len(metrics), sign * statistics.fmean(metrics.values()), key, costs)
                         for key, (metrics, costs) in list(self.live.items()) if metrics and costs),
                        key=lambda entry: entry[:2], reverse=True)
        for seen, _, key, costs in scored:
            need = 1.2 * statistics.fmean(costs) * (problem.instances - seen + problem.held_out_count + self.confirm)
            if need < left:
                self.protected = key
                return need
            if key == self.protected:  # its room is reached: exploration stops here, and finishing uses the rest
                return need
        return 0.0


def _worst(config: Config) -> float:
    most = config.get("max_tokens")
    return config.get("n", 1) * most if isinstance(most, int) and isinstance(config.get("n", 1), int) else math.inf


def _round_up(amount: float) -> float:
    """Up to two significant figures: 3,712 -> 3,800."""
    if amount <= 0:
        return amount
    step = 10 ** (math.floor(math.log10(amount)) - 1)
    return float(math.ceil(amount / step) * step)
