"""What the optimization budget pays for, as a tune runs: which of a bracket's candidates it can finish, the room
kept to finish the leader, and whether the winner's confirmation run still fits.

Before anything was measured, one pilot evaluation per prompt shape prices the rest (`CostModel`); the pilots'
evaluations are kept, and the search uses them when it gets there. `fit_plan` is the one fit the tune and the
`--co` preview both use.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_llmtune.search.budget import Budget, BudgetSpent, Spending
from pytest_llmtune.search.costs import MARGIN, UNKNOWN, BudgetFit, CostModel, fit_budget, key_of, shape
from pytest_llmtune.search.evaluation import (
    Config,
    Evaluate,
    EvaluateWith,
    Evaluation,
    EvaluationError,
    Executor,
    NothingFits,
)
from pytest_llmtune.search.halving import TIES, Rung, Trial
from pytest_llmtune.search.problem import TuneProblem, sampled

__all__ = ["CONFIRM_SHARE", "PILOTS", "PROBES", "Affordability", "PlanFit", "alone", "cannot_pay", "fit_plan"]

PILOTS = 16  # prompt shapes measured (one evaluation each) before the first plan is sized
PILOT_WAVE = 4  # pilots sent at once
PILOT_SHARE = 0.05  # once the pilots have spent this share of the budget, no new wave starts
PROBES = 3  # candidates a tight budget measures to learn their answers' length before it chooses among them
CONFIRM_SHARE = 0.25  # the most of the budget a planned confirmation run may be expected to take
LiveKey = tuple[int, int]  # (bracket, candidate)


@dataclass(frozen=True)
class PlanFit:
    """A bracket's budget fit, and whether it still keeps room for the winner's confirmation run."""

    fit: BudgetFit
    confirm: int  # instances of the confirmation run it keeps room for (0: the budget cannot also pay for it)


def fit_plan(problem: TuneProblem, estimates: Sequence[float], left: float, confirm: int,
             cut: Sequence[bool] = ()) -> PlanFit:
    """The candidates `left` pays for, with room for the winner's held-out evaluation and its confirmation run
    when that earns its keep: while something still fits with it, and it is expected to cost at most
    CONFIRM_SHARE of `left` (a second evaluation of the winner on every instance would otherwise take the budget
    the search needs to find a good config). When the confirmation gives way, the lock keeps the search's results,
    and the confirmation still runs if the search leaves enough. `cut`: per candidate, whether its answers are
    expected to be cut short (`CostModel.cut_short`)."""
    found = _fit(problem, estimates, left, problem.held_out_count + confirm, cut=cut)
    if confirm and (not found.chosen or _mean(estimates, found.chosen) * confirm > CONFIRM_SHARE * left):
        return PlanFit(_fit(problem, estimates, left, problem.held_out_count, cut=cut), 0)
    return PlanFit(found, confirm)


def alone(problem: TuneProblem, cost: float) -> BudgetFit:
    """The fit of one candidate alone, on every tuning instance, at `cost` an evaluation."""
    return BudgetFit([0], cost * problem.instances, cost * (problem.instances + problem.held_out_count),
                     [Rung(1, problem.instances)], cost * problem.held_out_count)


def _fit(problem: TuneProblem, estimates: Sequence[float], left: float, reserved: int,
         kept: float = 0.0, cut: Sequence[bool] = ()) -> BudgetFit:
    return fit_budget(estimates, problem.instances, reserved, left, eta=problem.eta,
                      min_instances=problem.min_instances, one_rung=problem.one_rung, kept=kept, cut=cut)


def _mean(estimates: Sequence[float], chosen: Sequence[int]) -> float:
    return statistics.fmean(estimates[i] for i in chosen)


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
    kept_confirm: bool = False  # whether that room holds its confirmation run too
    samples: dict[LiveKey, bool] = field(default_factory=dict)  # whether a candidate's answers are samples
    leader_room: float = 0.0  # what the leader the reserve last chose needs, its confirmation run included
    floor: float = 0.0  # of the reserve last kept, what the lock needs: the leader's instances at its mean cost
    fits: list[tuple[int, BudgetFit]] = field(default_factory=list)  # per bracket: candidates drawn, the fit
    known: dict[tuple[str, int], Evaluation] = field(default_factory=dict)  # the pilot evaluation, used once
    planned: list[Rung] = field(default_factory=list)  # the rungs of the last fit, for the bracket it chose
    ties: float = TIES  # and the share of ties it pays for

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
               cheaper: Callable[[float], tuple[list[Config], BudgetFit] | None],
               stopped: Callable[[str], None]) -> list[Config]:
        """The candidates whose plan the budget left pays for (see `costs.fit_budget`). When not one candidate can
        be finished: before the search has spent anything (`first`), `cheaper` candidates it can finish, else
        `NothingFits` says what budget would do; later, no new bracket starts (`stopped` says why). In the first
        bracket `cheaper` is also asked when every candidate the fit keeps has its answers cut short; a candidate
        it finds whose answers' length is not known is measured first (`cheaper` below), and the bracket's
        candidates are fitted again with what that measured and spent. Its candidates are taken when the fit's
        are still all cut short, unless they are one cut short too that holds no more of its answer (their plan
        keeps no confirmation run)."""
        self.planned, self.ties = [], TIES
        self.pilot(configs, evaluate_with, executor,  # later, what finishing the leader needs is not spent on pilots
                   room=math.inf if first else self.budget.amount - self.spending.spent - self.reserve())
        if not self.costs.ready:  # every pilot failed: the search meets (and reports) the error
            return configs
        budget = self.budget
        estimates, cut, left, planned = self.refit(configs)
        if first:  # the first bracket gives up the confirmation rather than lock nothing
            priced = [configs[i] for i in planned.fit.chosen if self.costs.known(configs[i]) == "priced"]
            if (not planned.fit.chosen or priced) and self.pilot(priced or configs, evaluate_with, executor,
                                                                  every_shape=True):
                estimates, cut, left, planned = self.refit(configs)  # the shapes left were priced from the
                # others: measured before giving up, or before a plan that counts on them
            fitted, self.confirm = planned.fit, planned.confirm
        else:  # the leader so far has measured costs: what its finishing needs is kept once, for any winner,
            self.reserve()  # its confirmation included: a bracket that cannot leave room for it does not start
            fitted = _fit(self.problem, estimates, left, self.problem.held_out_count + self.confirm,
                          kept=self.leader_room, cut=cut)
        if first and all(cut[i] for i in fitted.chosen):  # none fits, or all that do are cut short: look
            spent = self.spending.spent  # further for configs the budget can finish
            found = self.cheaper(cheaper, evaluate_with, executor, fallback=bool(fitted.chosen))
            if self.spending.spent > spent:  # what the probes measured and spent: the candidates fitted again
                estimates, cut, left, planned = self.refit(configs)
                fitted, self.confirm = planned.fit, planned.confirm
            if found is not None and all(cut[i] for i in fitted.chosen) and (
                    not fitted.chosen or not self.costs.cut_short(found[0][0])  # one cut short too is taken when
                    or self.costs.holds(found[0][0]) > max(self.costs.holds(configs[i]) for i in fitted.chosen)):
                self.fits.append((len(configs), found[1]))  # it holds more of its answer
                self.planned, self.ties, self.confirm = found[1].rungs, found[1].ties, 0
                return found[0]
        self.fits.append((len(configs), fitted))
        if not fitted.chosen and first:
            measured = self.costs.evaluations
            raise NothingFits(cannot_pay(self.problem, budget, min(estimates), len(configs), fitted.needed,
                                         self.spending.spent, f"priced from {measured} measured "
                                                              f"evaluation{'s' if measured != 1 else ''}"))
        if not fitted.chosen:
            stopped(f"the {budget.words(left)} left of the optimization budget cannot finish another config "
                    f"(about {budget.words(fitted.needed)} needed)")
        self.planned, self.ties = fitted.rungs, fitted.ties
        return [configs[i] for i in fitted.chosen]

    def refit(self, configs: list[Config]) -> tuple[list[float], list[bool], float, PlanFit]:
        """The candidates' estimates and whether each is cut short, what is left, and the first bracket's fit
        (`fit_plan`), from what the cost model knows now."""
        estimates = [self.costs.estimate(config) for config in configs]
        cut = [self.costs.cut_short(config) for config in configs]
        left = self.budget.amount - self.spending.spent
        return estimates, cut, left, fit_plan(self.problem, estimates, left, self.confirm, cut)

    def cheaper(self, cheaper: Callable[[float], tuple[list[Config], BudgetFit] | None], evaluate_with: EvaluateWith,
                executor: Executor, *, fallback: bool) -> tuple[list[Config], BudgetFit] | None:
        """What `cheaper` finds with what is left. While it is one candidate whose answers' length is not known
        (every answer of its shape was cut off, or its shape was never measured), that candidate is measured on the
        first instance (a pilot, kept for the search) and `cheaper` asked again, at most PROBES times: one
        evaluation tells whether the configs the budget can finish hold their answers. When the probes leave the
        length unknown still, the measured probe that holds the most of its answer and can be finished, if any.
        A probe that fails gives nothing when there is a `fallback` (the fit's own candidates); without one, the
        search meets (and reports) its error."""
        probed: list[Config] = []

        def known(found: tuple[list[Config], BudgetFit] | None) -> bool:  # nothing to measure before choosing
            return found is None or len(found[0]) > 1 or self.costs.known(found[0][0]) not in UNKNOWN

        for _ in range(PROBES):
            found = cheaper(self.budget.amount - self.spending.spent)
            if known(found):
                return found
            assert found is not None
            before = self.costs.evaluations
            self._pilot_wave(found[0], evaluate_with, executor)
            if self.costs.evaluations == before:
                return None if fallback else found
            probed.append(found[0][0])
        found = cheaper(self.budget.amount - self.spending.spent)
        if known(found):
            return found
        left, total = self.budget.amount - self.spending.spent, self.problem.instances + self.problem.held_out_count
        finished = [config for config in probed
                    if self.costs.estimate(config) * (total - self.paid(config)) <= left]
        if not finished:
            return None
        best = max(finished, key=lambda config: (not self.costs.cut_short(config), self.costs.holds(config)))
        return [best], alone(self.problem, self.costs.estimate(best))

    def paid(self, config: Config) -> int:
        """The config's instances already measured (by a pilot), which the search will not pay for again."""
        key = key_of(config)
        return sum(1 for measured, _ in self.known if measured == key)

    def pilot(self, configs: list[Config], evaluate_with: EvaluateWith, executor: Executor, *,
              every_shape: bool = False, room: float = math.inf) -> int:
        """Measure each prompt shape not measured yet (at most PILOTS): its candidate with the fewest samples and,
        of those, the largest max_tokens (one answer, at the length it takes when nothing cuts it: a pilot cut
        short would price every longer config at its max_tokens) on the first instance, in waves of PILOT_WAVE,
        until the pilots have spent PILOT_SHARE of the budget (a shape left unmeasured is priced from the others).
        `every_shape`: no share limit. `room`: what the pilots may spend at most, their costs estimated (with
        MARGIN) from what was measured: a wave is cut to what fits. The evaluations are kept: the search uses them
        when it gets there. Returns how many pilots ran."""
        telling: dict[str, Config] = {}
        for config in configs:
            group = shape(config)
            if group not in self.costs.seen and (group not in telling or _pilot_order(config) < _pilot_order(
                    telling[group])):
                telling[group] = config
        waiting, started, ran = list(telling.values())[:PILOTS], self.spending.spent, 0
        while waiting and (every_shape or not self.costs.ready
                           or self.spending.spent - started < PILOT_SHARE * self.budget.amount):
            wave, waiting = waiting[:PILOT_WAVE], waiting[PILOT_WAVE:]
            if room < math.inf and self.costs.ready:
                free = room - (self.spending.spent - started)
                costs = itertools.accumulate(MARGIN * self.costs.estimate(config) for config in wave)
                wave = [config for config, cost in zip(wave, costs, strict=True) if cost <= free]
                if not wave:
                    break
            self._pilot_wave(wave, evaluate_with, executor)
            ran += len(wave)
        return ran

    def _pilot_wave(self, chosen: list[Config], evaluate_with: EvaluateWith, executor: Executor) -> None:
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
        self.samples.setdefault(key, sampled(config))
        metrics[instance] = evaluation.metric
        costs.append(self.measure(evaluation))
        if (key_of(config), instance) not in self.known:  # the pilot was observed when it ran
            self.observe(config, evaluation)

    def observe(self, config: Config, evaluation: Evaluation) -> None:
        usage, judge = evaluation.usage, evaluation.judge
        self.costs.observe(config, usage.live.requests + usage.replay.requests, usage.prompt_tokens,
                           usage.completion_tokens, self.measure(evaluation),
                           overhead=self.budget.measure(judge.tokens, judge.cost))

    def measure(self, evaluation: Evaluation) -> float:
        """What the evaluation costs in the budget's unit: the config's requests and its judge's."""
        spent = evaluation.spent
        return self.budget.measure(spent.tokens, spent.cost)

    def can_confirm(self, winner: Trial) -> bool:
        """Whether what is left of the optimization budget pays for the winner's confirmation run on every
        instance, priced at what the winner cost per instance in the search: the plan reserved it while it could,
        but estimates can run low, and a search that cost less than planned may leave room after all."""
        per_instance = self.budget.measure(winner.spent_tokens, winner.spent_cost) / max(1, len(winner.metrics))
        total = self.problem.instances + self.problem.held_out_count
        return per_instance * total <= self.budget.amount - self.spending.spent

    def reserve(self) -> float:
        """What finishing the leader on every instance would cost: its mean cost per instance so far, times the
        instances it has not been scored on (the held-out ones included) and its confirmation run while that still
        fits, with a fifth more for noise (none, when no leader could be finished with it: the room is then kept
        once without it, and on later calls, the leader being the one it was kept for, with it again, which
        stops exploration at the next admission). The leader is the candidate furthest on, then best, among those
        the budget can still finish; when none can be, nothing is kept back. `floor` is then what the lock needs
        of it (the leader's instances at its mean cost, no confirmation): no request of the search may take that."""
        problem = self.problem
        left = self.budget.amount - self.spending.spent
        sign = problem.spec.direction.sign
        scored = sorted(((len(metrics), sign * statistics.fmean(metrics.values()), key, costs)
                         for key, (metrics, costs) in list(self.live.items()) if metrics and costs),
                        key=lambda entry: entry[:2], reverse=True)
        for noise, (seen, _, key, costs) in itertools.product((1.2, 1.0), scored):  # without the fifth more when
            per_instance = noise * statistics.fmean(costs)  # nothing can be finished with it: a lock is at stake
            need = per_instance * (problem.instances - seen + problem.held_out_count)  # what a lock needs
            confirm = self.confirm if self.samples.get(key, True) else 0  # temperature 0 needs no confirmation
            with_confirm = need + per_instance * confirm  # the confirmation gives way first
            self.leader_room = with_confirm
            self.floor = need / noise
            if key == self.protected and self.kept_confirm:  # its room is reached: exploration stops here
                return with_confirm
            if need <= left or key == self.protected:
                self.protected, self.kept_confirm = key, with_confirm < left
                return with_confirm if self.kept_confirm else need
        self.leader_room = self.floor = 0.0
        return 0.0


def _pilot_order(config: Config) -> tuple[float, float]:
    """Fewer samples first, then the larger max_tokens (none: unbounded, first)."""
    n, most = config.get("n", 1), config.get("max_tokens")
    return (n if isinstance(n, int) else math.inf, -most if isinstance(most, int) else -math.inf)


def cannot_pay(problem: TuneProblem, budget: Budget, cheapest: float, candidates: int, needed: float, spent: float,
               priced: str) -> str:
    """Why the budget cannot pay for one config on every instance, and what budget would (with MARGIN)."""
    enough = _round_up(spent + MARGIN * needed)
    return (f"the optimization budget of {budget.words(budget.amount)} cannot pay for one config on all "
            f"{problem.instances + problem.held_out_count} instances: the cheapest of {candidates} candidates costs "
            f"about {budget.words(cheapest)} an instance ({priced}), so a lock needs about {budget.words(needed)}"
            f"{' more' if spent else ''}; give optimization_budget={budget.argument(enough)} or more, or a cheaper "
            "space (smaller n or max_tokens)")


def _round_up(amount: float) -> float:
    """Up to two significant figures: 3,712 -> 3,800."""
    if amount <= 0:
        return amount
    step = 10 ** (math.floor(math.log10(amount)) - 1)
    return float(math.ceil(amount / step) * step)
