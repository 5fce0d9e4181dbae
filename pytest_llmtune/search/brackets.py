"""Brackets of drawn candidates, each through successive halving: one bracket of `num_samples` candidates, or with
`num_samples=-1` new brackets (new seeds, candidates not drawn before) until the optimization budget is spent.

A later bracket draws a third of its candidates in the whole space and the rest from a model of where good
configs lie (proposals.py: BOHB's densities of the good and the other configs), once enough configs were scored
on the same instances; before that, half in a box around the two best configs so far (side 0.5 in the unit cube,
halved each bracket). It looks closer where the search found good configs, and keeps exploring. Demonstrations
are not boxed: a draw around a leader shows the leader's own demonstrations with one swapped by credit, and the
density model's proposals draw theirs by credit (demo_credit.py). Same seed, same draws. `results` holds what
finished, also after an interrupt.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pytest_llmtune.search.afford import Affordability, alone, cannot_pay, fit_plan
from pytest_llmtune.search.budget import Spending
from pytest_llmtune.search.costs import MARGIN, BudgetFit, key_of
from pytest_llmtune.search.demo_credit import Credit, by_credit, credit_of, swapped
from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.evaluation import Config, EvaluateWith, Evaluation, Executor, SearchFailed
from pytest_llmtune.search.halving import TIES, Rung, SuccessiveHalving
from pytest_llmtune.search.problem import TuneProblem
from pytest_llmtune.search.proposals import DensityModel, Observation, fit_model
from pytest_llmtune.search.result import SearchResult, merge
from pytest_llmtune.search.rungs import OnProgress, numbered, run_bracket

__all__ = ["CHEAPER_DRAWS", "Brackets", "FirstBracket", "OnBracket"]

EXPLORE = 1 / 3  # of a later bracket's candidates, the share drawn in the whole space when a model proposes the rest
CHEAPER_DRAWS = 256  # candidates priced (no request) for one a tight budget can finish, before it is refused
OnBracket = Callable[[int, SuccessiveHalving], None]  # a bracket's candidates and its rungs, before it runs


@dataclass(frozen=True)
class FirstBracket:
    """What the tune's first bracket would run, before any request (the `--co` preview): the candidates left by
    the inference budget's screen and the optimization budget's fit, their rungs, and the room kept after them."""

    candidates: list[Config]
    rungs: list[Rung]
    drawn: int
    skipped: int  # drawn candidates the inference budget rules out before any request
    confirm: int  # instances of the winner's confirmation run the plan keeps room for
    fit: BudgetFit | None = None  # what the optimization budget pays for, when there is one
    priced: int = 0  # the candidates the fit priced
    cheaper: bool = False  # none of them fits: these were drawn further, for what the budget can finish
    refused: str | None = None  # not one can be finished: why, and what budget would do (the tune's own words)


@dataclass
class Brackets:
    problem: TuneProblem
    spending: Spending | None = None  # the optimization budget: exploration keeps in reserve what the leader needs
    skipped: list[str] = field(default_factory=list)  # candidates ruled out before any request, in words
    results: list[SearchResult] = field(default_factory=list)
    points: dict[str, tuple[float, ...]] = field(default_factory=dict)  # config -> its point in the unit cube
    afford: Affordability | None = None  # with an optimization budget: what it pays for

    def __post_init__(self) -> None:
        if self.spending is not None and self.spending.budget is not None:
            self.afford = Affordability(self.problem, self.spending)

    @property
    def result(self) -> SearchResult | None:
        """The brackets as one result (merged once: merging renumbers the trials in place)."""
        if len(self.results) > 1:
            self.results = [merge(self.results)]
        return self.results[0] if self.results else None

    def run(self, evaluate_with: EvaluateWith, *, executor: Executor, concurrency: int,
            on_bracket: OnBracket, on_progress: OnProgress) -> None:
        """Every bracket. Raises `SearchFailed` (its `config` set) when candidates keep failing alike."""
        spec, seen = self.problem.spec, set[str]()
        for bracket in itertools.count():
            configs = [c for c in self.draw(self.problem.count, spec.seed + bracket, bracket) if key_of(c) not in seen]
            seen |= {key_of(c) for c in configs}
            configs = self.screen(configs)
            if configs and self.afford is not None:
                cheaper = functools.partial(self.cheaper, seed=spec.seed + bracket)
                configs = self.afford.afford(configs, evaluate_with, executor, first=not self.results,
                                             cheaper=cheaper, stopped=self.stop)
            if not configs:
                return
            halving = (self.halving(len(configs), self.afford.planned, self.afford.ties) if self.afford is not None
                       else self.halving(len(configs)))
            on_bracket(len(configs), halving)
            self.results.append(self.one(bracket, configs, halving, evaluate_with, executor=executor,
                                         concurrency=concurrency, on_progress=on_progress))
            if self.afford is not None:
                self.afford.known.clear()
            if spec.num_samples != -1 or self.results[-1].stopped:
                return

    def halving(self, candidates: int, rungs: Sequence[Rung] = (), ties: float = TIES) -> SuccessiveHalving:
        """The bracket's successive halving, on the budget fit's rungs (and ties) when it chose them."""
        problem = self.problem
        return SuccessiveHalving(candidates, problem.instances, eta=problem.eta, min_instances=problem.min_instances,
                                 mode=problem.spec.mode, agg=problem.spec.agg, one_rung=problem.one_rung,
                                 rungs=rungs, ties=ties)

    def first(self, estimate: Callable[[Config], float]) -> FirstBracket:
        """The first bracket as the tune would draw, screen and fit it, with `estimate` (a candidate's cost of one
        evaluation, in the budget's unit) standing for the measured costs; no request is sent. Which candidates'
        answers are cut short is known only once the pilots measured them, so at a budget that tight the tune may
        keep others (the preview says its plan is an estimate the pilots re-fit). Raises
        `InvalidSpaceError` for a space nothing can be drawn from."""
        problem, budget = self.problem, self.problem.spec.optimization_budget
        drawn = self.draw(problem.count, problem.spec.seed)
        candidates = self.screen(drawn)
        if not candidates or budget is None:
            return FirstBracket(candidates, self.halving(len(candidates)).rungs if candidates else [], len(drawn),
                                len(self.skipped), problem.confirm)
        planned = fit_plan(problem, [estimate(c) for c in candidates], budget.amount, problem.confirm)
        if not planned.fit.chosen and (found := self.cheaper(budget.amount, problem.spec.seed, estimate)):
            return FirstBracket(found[0], self.halving(len(found[0]), found[1].rungs, found[1].ties).rungs,
                                len(drawn), len(self.skipped), 0, found[1], len(candidates), cheaper=True)
        refused = None
        if not planned.fit.chosen:  # the cheapest, to show what a lock would cost
            costs = [estimate(c) for c in candidates]
            cheapest = min(range(len(candidates)), key=costs.__getitem__)
            chosen = [candidates[cheapest]]
            refused = cannot_pay(problem, budget, costs[cheapest], len(candidates), planned.fit.needed, 0.0,
                                 "estimated before any request")
        else:
            chosen = [candidates[i] for i in planned.fit.chosen]
        rungs = planned.fit.rungs if planned.fit.chosen else ()
        return FirstBracket(chosen, self.halving(len(chosen), rungs).rungs, len(drawn), len(self.skipped),
                            planned.confirm, planned.fit, len(candidates), refused=refused)

    def one(self, bracket: int, configs: list[Config], halving: SuccessiveHalving, evaluate_with: EvaluateWith, *,
            executor: Executor, concurrency: int, on_progress: OnProgress) -> SearchResult:
        spec, afford = self.problem.spec, self.afford
        offset = sum(len(result.configs) for result in self.results)  # merge numbers the candidates this way

        def watch(candidate: int, instance: int, evaluation: Evaluation) -> None:
            if afford is not None:
                afford.watch((bracket, candidate), configs[candidate], instance, evaluation)

        evaluate = evaluate_with(configs)
        try:
            return run_bracket(configs, afford.with_known(configs, evaluate) if afford else evaluate,
                               halving=halving, executor=executor, concurrency=concurrency,
                               inference_budget=spec.inference_budget, on_progress=numbered(on_progress, offset),
                               on_evaluation=watch, select=spec.select,
                               metric_range=(0.0, 1.0) if spec.metric is None and spec.agg == "mean" else None)
        except SearchFailed as failed:
            failed.config = configs[failed.failure.candidate]
            raise

    def stop(self, why: str) -> None:
        """The budget cannot pay for another bracket."""
        self.results[-1].stopped = why

    def cheaper(self, left: float, seed: int,
                estimate: Callable[[Config], float] | None = None) -> tuple[list[Config], BudgetFit] | None:
        """Of CHEAPER_DRAWS more candidates, those that can each be finished on every instance (held-out ones
        included, less those already measured) within `left`, of the best known kind there is. The kinds, by what
        is known of their answers (`CostModel.known`), best first: those whose prompt shape's answers were seen to
        end within their max_tokens ("whole"); those whose shape's answers were all cut off at less than their
        max_tokens ("longer", priced at it); those priced from other shapes ("priced", with MARGIN: such an
        estimate can run low, and the lock is at stake); those whose max_tokens cuts short their shape's measured
        answers ("cut": cheap because cut, and often the worst). Of "whole" ones, the first `count` in their order
        and as many of them as the budget fit pays for (a few compared on a few instances beat one drawn blind),
        else the first alone. Of the others, one alone: the one likeliest to hold its answer ("longer", "cut": the
        largest share of its shape's answer length, `CostModel.holds`; "priced": the first). Measured first, one of
        unknown length tells what the others' answers take (`Affordability.cheaper` measures it and asks again);
        a few cut short are cut more. `estimate`: a config's cost of one evaluation (the measured costs' when not
        given; then every candidate is "whole"). No request is sent."""
        if self.problem.chosen_strategy == "grid":
            return None
        known: Callable[[Config], str] = lambda config: "whole"  # noqa: E731
        holds: Callable[[Config], float] = lambda config: math.inf  # noqa: E731
        paid: Callable[[Config], int] = lambda config: 0  # noqa: E731
        if estimate is None:
            assert self.afford is not None
            estimate, known, holds, paid = (self.afford.costs.estimate, self.afford.costs.known,
                                            self.afford.costs.holds, self.afford.paid)
        from pytest_llmtune.search.sampler import draw

        drawn = self.screen(self.with_model([c for c, _ in draw(self.problem.spec.space, CHEAPER_DRAWS,
                                                                seed + 20_000)]))
        total = self.problem.instances + self.problem.held_out_count
        order = {"whole": 0, "longer": 1, "priced": 2, "cut": 3}
        ranked = sorted(((known(config), config, estimate(config)) for config in drawn),
                        key=lambda found: (order[found[0]], -holds(found[1]) if found[0] in ("longer", "cut") else 0))
        kinds = [(kind, config, cost) for kind, config, cost in ranked  # priced from other shapes: with a margin
                 if cost * (total - paid(config)) * (MARGIN if kind == "priced" else 1.0) <= left]
        if not kinds:
            return None
        affordable = [(config, cost) for kind, config, cost in kinds if kind == kinds[0][0]][: self.problem.count]
        fitted = fit_plan(self.problem, [cost for _, cost in affordable], left, 0).fit
        if len(fitted.chosen) < 2 or kinds[0][0] != "whole":
            config, cost = affordable[0]
            return [config], alone(self.problem, cost)
        return ([affordable[i][0] for i in fitted.chosen],
                dataclasses.replace(fitted, chosen=list(range(len(fitted.chosen)))))

    def draw(self, count: int, seed: int, bracket: int = 0) -> list[Config]:
        """`count` Sobol candidates, or the whole grid in a seeded order (drawn again, it adds nothing)."""
        from pytest_llmtune.search.sampler import draw  # scipy's qmc: imported only when a search draws

        space, strategy = self.problem.spec.space, self.problem.chosen_strategy
        drawn: list[tuple[Config, tuple[float, ...]]]
        if strategy == "grid":  # shuffled: a part of the grid the budget pays for is a random part
            drawn = [(config, ()) for config in space.grid()]
            random.Random(seed).shuffle(drawn)
        elif strategy == "halving" and bracket:
            drawn = self.focused(count, seed, bracket)
        else:
            drawn = draw(space, count, seed)
        configs = self.with_model([config for config, _ in drawn])
        for config, (_, point) in zip(configs, drawn, strict=True):
            self.points.setdefault(key_of(config), point)
        return list({key_of(c): c for c in configs}.values())

    def focused(self, count: int, seed: int, bracket: int) -> list[tuple[Config, tuple[float, ...]]]:
        """A later bracket's candidates: EXPLORE of them in the whole space, the rest where good configs lie: half
        proposed by the density model (once there is one), half in a box around the two leaders."""
        from pytest_llmtune.search.sampler import distinct, draw, points

        space, model, leaders = self.problem.spec.space, self.model(), self.leaders(2)
        near = count - math.ceil(EXPLORE * count) if model is not None or leaders else 0
        proposed = (near // 2 if leaders else near) if model is not None else 0
        drawn = draw(space, count - near, seed)
        if model is not None and proposed:
            proposals = model.propose(proposed, seed + 10_000)
            proposals = self.demos_by_credit(proposals, seed) if space.demos else proposals
            drawn += [(space.config_at(point), point) for point in proposals]
        if near - proposed and space.demos:
            drawn += distinct(space, self.demos_swapped(points(space, near - proposed, seed + 10_000, leaders,
                                                               0.5 ** bracket), leaders, seed))
        elif near - proposed:
            drawn += draw(space, near - proposed, seed + 10_000, around=leaders, width=0.5 ** bracket)
        return drawn

    def credits(self) -> dict[str, Credit]:
        sign = self.problem.spec.direction.sign
        return {key: credit_of(shown, sign) for key, shown in self.demo_results().items()}

    def demos_by_credit(self, points: list[tuple[float, ...]], seed: int) -> list[tuple[float, ...]]:
        """The density model's proposals with their demonstrations drawn by credit: a density over a subset's
        coordinates says little about which demonstrations help."""
        space, rng, credit = self.problem.spec.space, random.Random(seed + 1), self.credits()
        found = []
        for point in points:
            for offset, key, domain in space.demo_coordinates():
                if key in credit:
                    point = by_credit(point, offset, domain, credit[key], rng)
            found.append(point)
        return found

    def demos_swapped(self, around: list[tuple[int, tuple[float, ...]]], leaders: Sequence[tuple[float, ...]],
                      seed: int) -> list[tuple[float, ...]]:
        """The points drawn around the leaders (each with its leader's index), each one's demonstrations (k, which
        and the spare) its leader's with one swapped by credit (demo_credit.py): a box around a subset's coordinates
        would change every demonstration at once."""
        space, rng, credit = self.problem.spec.space, random.Random(seed), self.credits()
        found = []
        for centre, point in around:
            leader, config = leaders[centre], space.config_at(leaders[centre])
            moved = list(point)
            for offset, key, domain in space.demo_coordinates():
                value = config.get(key)
                if isinstance(value, Demonstrations) and key in credit:
                    moved[offset:offset + domain.dims()] = leader[offset:offset + domain.dims()]
                    moved = list(swapped(moved, offset, domain, value, credit[key], rng))
            found.append(tuple(moved))
        return found

    def demo_results(self) -> dict[str, list[tuple[Demonstrations, dict[int, float]]]]:
        """Per demonstrations key, each evaluated config's demonstrations and its metric per instance."""
        found: dict[str, list[tuple[Demonstrations, dict[int, float]]]] = {}
        for result in self.results:
            for trial in result.ranked:
                for key, value in result.configs[trial.index].items():
                    if isinstance(value, Demonstrations) and trial.metrics:
                        found.setdefault(key, []).append((value, dict(trial.metrics)))
        return found

    def with_model(self, configs: list[Config]) -> list[Config]:
        """Each config naming the endpoint's model when the space names none, so a lock says what it ran on."""
        model = self.problem.default_model
        if not model:
            return configs
        return [config if "model" in config else {"model": model, **config} for config in configs]

    def model(self) -> DensityModel | None:
        """Where good configs lie, from every config scored so far that has a point in the unit cube."""
        observations = [Observation(self.points[key], dict(trial.metrics))
                        for result in self.results for trial in result.ranked
                        if trial.metrics and (key := key_of(result.configs[trial.index])) in self.points
                        and self.points[key]]
        return fit_model(observations, self.problem.spec.direction.sign)

    def leaders(self, count: int) -> list[tuple[float, ...]]:
        """The points of the best configs so far: furthest on, then best."""
        direction = self.problem.spec.direction
        trials = [(-len(trial.metrics), direction.ahead(result.halving.score(trial)),
                   key_of(result.configs[trial.index]))
                  for result in self.results for trial in result.ranked if trial.metrics and trial.dropped is None]
        return [self.points[key] for *_, key in sorted(trials)[:count] if self.points.get(key)]

    def screen(self, configs: list[Config]) -> list[Config]:
        """Configs whose n x max_tokens alone is over the inference budget are skipped before any request."""
        budget = self.problem.spec.inference_budget
        if budget is None:
            return configs
        kept = []
        for config in configs:
            most = config.get("n", 1) * config["max_tokens"] if "max_tokens" in config else 0
            worst = budget.measure(most, self.problem.price(str(config.get("model", "")), 0, most))
            if worst > budget.amount:
                self.skipped.append(f"n={config.get('n', 1)} x max_tokens={config['max_tokens']} can cost "
                                    f"{budget.words(worst)} per instance, over the inference budget")
            else:
                kept.append(config)
        return kept

