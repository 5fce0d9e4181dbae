"""One target's tune from start to finish, as Optuna's `study.optimize` runs a study: the caller supplies
evaluations, this owns the sequence.

1. Brackets of candidates through successive halving (brackets.py), within the optimization budget.
2. When the budget stopped the search before any candidate was scored on every instance, the leader is finished
   with the room kept for it.
   With `cascade=accept`, cascades are composed from the candidates' results and ranked with them.
3. The winner is scored on the held-out instances (what a lock needs first: the budget kept room for it).
4. A winner whose answers are samples is confirmed with fresh samples on every instance, when the budget pays.
5. The other finalists are scored on the held-out instances, while the budget lasts, for information.

`Tune.search` holds what finished, also when a step raised (Ctrl-C, the budget, a search that failed).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from pytest_llmtune.search.brackets import Brackets
from pytest_llmtune.search.budget import Spending, over_budget
from pytest_llmtune.search.cascade import CASCADE, Cascades, CascadeTrial
from pytest_llmtune.search.costs import BudgetFit
from pytest_llmtune.search.evaluation import Config, Evaluate, EvaluateWith, Executor
from pytest_llmtune.search.finalists import confirm, finish_leader, score_held_out, score_on
from pytest_llmtune.search.halving import SuccessiveHalving, Trial
from pytest_llmtune.search.problem import TuneProblem, sampled
from pytest_llmtune.search.result import Confirmation, HeldOut, SearchResult
from pytest_llmtune.search.rungs import Progress

__all__ = ["Tune", "TuneObserver"]


class TuneObserver(Protocol):
    """What a tune tells its caller as it runs (the session shows it)."""

    def bracket(self, candidates: int, halving: SuccessiveHalving, fitted: tuple[int, BudgetFit] | None) -> None:
        """A bracket is about to run: its candidates, its rungs, and what the budget fitted (drawn, fit)."""

    def progress(self, progress: Progress) -> None: ...

    def searched(self) -> None:
        """The brackets are done; the finalists' steps follow."""

    def phase(self, what: str) -> None:
        """A step after the search: "scoring the winner on the 10 held-out instances"."""


class _Silent:
    def bracket(self, candidates: int, halving: SuccessiveHalving, fitted: tuple[int, BudgetFit] | None) -> None:
        pass

    def progress(self, progress: Progress) -> None:
        pass

    def searched(self) -> None:
        pass

    def phase(self, what: str) -> None:
        pass


@dataclass
class Tune:
    problem: TuneProblem
    spending: Spending | None = None  # the optimization budget, paid by the evaluations' live requests
    brackets: Brackets = field(init=False)
    confirmed: Confirmation | None = None  # a sampled winner's confirmation run, or why there is none

    def __post_init__(self) -> None:
        self.brackets = Brackets(self.problem, self.spending)

    @property
    def search(self) -> SearchResult | None:
        return self.brackets.result

    @property
    def skipped(self) -> list[str]:
        return self.brackets.skipped

    def can_confirm(self, winner: Trial) -> bool:
        """Whether what is left of the optimization budget pays for the winner's confirmation run."""
        return self.brackets.afford is None or self.brackets.afford.can_confirm(winner)

    @property
    def fits(self) -> list[tuple[int, BudgetFit]]:
        return self.brackets.afford.fits if self.brackets.afford is not None else []

    def run(self, evaluate_with: EvaluateWith, *, executor: Executor, concurrency: int,
            fresh_with: Callable[[list[Config]], Evaluate] | None = None, observer: TuneObserver | None = None,
            finalists: bool = True) -> None:
        """The whole tune. `fresh_with(configs)` evaluates with samples of their own, for the confirmation run
        (default: `evaluate_with`). `finalists=False` stops after the search (and finishing its leader).
        Raises `SearchFailed` (its `config` set), `NothingFits`, or what an evaluation raised beyond its own
        errors; `search` keeps what finished."""
        watch = observer or _Silent()
        try:
            self._search(evaluate_with, executor=executor, concurrency=concurrency, watch=watch)
        finally:
            watch.searched()
        self._finish(evaluate_with, executor)
        self._cascades(evaluate_with, executor, watch)
        if finalists:
            self._finalists(evaluate_with, fresh_with or evaluate_with, executor, watch)

    def _search(self, evaluate_with: EvaluateWith, *, executor: Executor, concurrency: int,
                watch: TuneObserver) -> None:
        brackets, afford = self.brackets, self.brackets.afford

        def on_bracket(candidates: int, halving: SuccessiveHalving) -> None:
            watch.bracket(candidates, halving, afford.fits[-1] if afford is not None and afford.fits else None)

        def run() -> None:
            brackets.run(evaluate_with, executor=executor, concurrency=concurrency, on_bracket=on_bracket,
                         on_progress=watch.progress)

        if afford is None or self.spending is None:
            return run()
        with self.spending.keeping(afford.reserve, lambda: afford.floor):
            return run()

    def _finish(self, evaluate_with: EvaluateWith, executor: Executor) -> None:
        """The leader, when the budget stopped the search before any candidate was scored on every instance."""
        brackets = self.brackets
        offsets = list(itertools.accumulate([0] + [len(r.configs) for r in brackets.results]))  # before the merge
        result = self.search
        if result is None or result.winner is not None or result.stopped is None or self.spending is None:
            return
        protected = brackets.afford.protected if brackets.afford is not None else None
        index = offsets[protected[0]] + protected[1] if protected else None
        leader = next((t for t in result.ranked if t.metrics and t.dropped is None
                       and (index is None or t.index == index)), None)
        if leader is None:
            return
        self.spending.finishing = True
        finish_leader(result, leader, evaluate_with(result.configs), self.problem.instances, executor=executor)

    def _cascades(self, evaluate_with: EvaluateWith, executor: Executor, watch: TuneObserver) -> None:
        """With `cascade=accept`: cascades composed from the candidates' results, what the promising ones lack
        evaluated within the budget (the room for the winner's held-out run kept), ranked with the candidates."""
        result, problem = self.search, self.problem
        if problem.spec.cascade is None or result is None or not result.complete:
            return
        watch.phase(f"composing cascades of up to {problem.spec.max_stages} stages from the candidates' results")
        cascades = Cascades(result.ranked, problem.instances, result.halving.direction, result.halving.score,
                            max_stages=problem.spec.max_stages, select=result.select,
                            min_instances=problem.min_instances)
        spending = self.spending
        if spending is None or spending.budget is None:
            cascades.finish(evaluate_with(result.configs), executor)
        else:  # what the held-out run of the costliest candidate a cascade may beat needs is kept back
            budget, best = spending.budget, result.complete[0]
            room = 1.2 * budget.measure(best.spent_tokens, best.spent_cost) / len(best.metrics) * problem.held_out_count

            def affordable(pairs: Sequence[tuple[Trial, int]]) -> bool:
                need = 1.2 * sum(budget.measure(t.spent_tokens, t.spent_cost) / max(1, len(t.metrics))
                                 for t, _ in pairs)
                return spending.spent + need + room < budget.amount

            finishing, spending.finishing = spending.finishing, False
            try:
                with spending.keeping(lambda: room, lambda: room / 1.2,  # the held-out run, without the fifth
                                      "for the best config's held-out instances"):
                    cascades.finish(evaluate_with(result.configs), executor, affordable)
            finally:
                spending.finishing = finishing
        result.usage.merge(cascades.usage)
        result.judge.merge(cascades.judge)
        result.ungraded += cascades.ungraded
        composed = [trial for trial in cascades.build(len(result.configs)) if self._admissible(trial, cascades)]
        last = len(result.halving.rungs) - 1
        for trial in composed:
            trial.index, trial.rung = len(result.configs), last
            result.configs.append({CASCADE: [result.configs[stage] for stage in trial.stages]})
        result.ranked = result.halving.rank([*result.ranked, *composed])
        result.cascades = cascades.finished

    def _admissible(self, trial: CascadeTrial, cascades: Cascades) -> bool:
        """A composed cascade may win only within the inference budget (the test that drops a config for cost:
        its instances' mean over the budget at 95% confidence) and when what is left of the optimization budget
        pays for its held-out run, so that a cascade never wins a lock it
        cannot then be scored for."""
        problem, spending = self.problem, self.spending
        limit = problem.spec.inference_budget
        if limit is not None:
            costs = [limit.measure(*trial.spent[i]) for i in sorted(trial.spent)]
            if over_budget(costs, limit.amount):
                cascades.finished.append(f"cascade of configs {_numbers(trial.stages)} left out: over the inference "
                                         f"budget of {limit.words(limit.amount)} per instance")
                return False
        if spending is None or spending.budget is None:
            return True
        budget = spending.budget
        per_instance = budget.measure(trial.spent_tokens, trial.spent_cost) / max(1, len(trial.metrics))
        need = 1.2 * per_instance * problem.held_out_count  # a confirmation gives way first, as for a config
        if need > budget.amount - spending.spent:
            cascades.finished.append(f"cascade of configs {_numbers(trial.stages)} left out: what is left of the "
                                     f"optimization budget cannot pay for its {problem.held_out_count} held-out "
                                     "instances")
            return False
        return True

    def _finalists(self, evaluate_with: EvaluateWith, fresh_with: Callable[[list[Config]], Evaluate],
                   executor: Executor, watch: TuneObserver) -> None:
        result, problem = self.search, self.problem
        if result is None or result.winner is None:
            return
        n, held = problem.instances + problem.held_out_count, problem.held_out_count
        if held:
            watch.phase(f"scoring the winner on the {held} held-out instances")
            score_held_out(result, evaluate_with(result.configs), range(n - held, n), executor=executor, finalists=1)
        winner = result.winner
        winner_held = result.held_out.get(winner.index)
        lockable = not held or (winner_held is not None and not winner_held.error and len(winner_held.metrics) == held)
        if lockable and problem.confirms and sampled(result.configs[winner.index]):
            if self.can_confirm(winner):
                watch.phase(f"confirming the winner with fresh samples on all {n} instances")
                self.confirmed = confirm(result, fresh_with(result.configs), range(n), executor=executor)
            else:
                self.confirmed = Confirmation(error="the optimization budget could not pay for it")
        if held and len(result.complete) > 1:
            watch.phase(f"scoring the other finalists on the {held} held-out instances")
            score_held_out(result, evaluate_with(result.configs), range(n - held, n), executor=executor)
        single = next((t for t in result.complete if not isinstance(t, CascadeTrial)), None)
        if held and problem.spec.cascade is not None and single is not None and single.index not in result.held_out:
            watch.phase(f"scoring the best single config on the {held} held-out instances, beside the cascades")
            result.held_out[single.index] = HeldOut()
            score_on(result, evaluate_with(result.configs), {single.index: (result.held_out[single.index],
                                                                             range(n - held, n))}, executor=executor)


def _numbers(stages: tuple[int, ...]) -> str:
    return " -> ".join(f"#{stage}" for stage in stages)
