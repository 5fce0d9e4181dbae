"""The tune of one target: candidates through successive halving, evaluations run by an executor.

No pytest here: an evaluation is any `evaluate(config_index, instance_index) -> Evaluation`, and the caller
chooses how they run (a thread pool for concurrency, or `InlineExecutor` for one at a time in the caller's
thread). At most `concurrency` evaluations are in flight; the rest wait in a queue, so a config that is dropped
(for cost, or for an error) simply has its queued evaluations never started.

- Cost: a config whose instances show, at 95% confidence, an average cost over the inference budget is dropped.
- Errors: an evaluation that raises `EvaluationError` drops its config, and the search goes on without it. When
  configs keep failing the same way with nothing succeeding in between (a dead endpoint, a bad key, a bug in the
  test), the search stops at once with that one error (`SearchFailed`).
- The optimization budget: when it is spent, the search stops and keeps what it finished.
"""

from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import itertools
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.search.budget import Budget, BudgetSpent, Spending, over_budget
from pytest_llmtune.search.halving import Outcome, SuccessiveHalving, Trial, significantly_worse
from pytest_llmtune.search.plan import MARGIN, CostModel, Fit, fit, shape
from pytest_llmtune.search.plan import key_of as _key
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.usage import Usage

__all__ = ["Evaluation", "EvaluationError", "Executor", "Failure", "HeldOut", "InlineExecutor", "NothingFits",
           "Progress", "SearchFailed", "SearchResult", "Tuner", "confirm", "merge", "score_held_out",
           "search"]

CHEAPER_DRAWS = 256  # candidates priced (no request) for one a tight budget can finish, before it is refused
PILOTS = 16  # prompt shapes measured (one evaluation each) before the first plan is sized
SAME_FAILURES_TO_STOP = 3  # distinct configs failing the same way in a row, with no success between them


@dataclass(frozen=True)
class Evaluation:
    """One config on one instance: the metric that drives the search, and what it cost."""

    metric: float
    passed: bool
    usage: Usage
    cost: float = 0.0  # dollars, at list price
    others: Mapping[str, float] = field(default_factory=dict)
    answer: str = ""  # the model's first answer line, for reports
    miss: str | None = None  # why the instance missed (its failed assertion)


class EvaluationError(LlmtuneError):
    """An evaluation that produced no result. `signature` is what makes two failures "the same way";
    `detail` is the text to show once (a traceback); `where` names the instance."""

    def __init__(self, signature: str, detail: str = "", where: str = "") -> None:
        super().__init__(signature)
        self.signature, self.detail, self.where = signature, detail, where


@dataclass(frozen=True)
class Failure:
    """The first error of one config."""

    config: int
    instance: int
    error: EvaluationError


class SearchFailed(LlmtuneError):
    """Configs kept failing the same way: the search of this target stopped."""

    def __init__(self, failure: Failure, configs: int) -> None:
        super().__init__(f"{configs} config{'' if configs == 1 else 's'} failed the same way: "
                         f"{failure.error.signature}")
        self.failure, self.configs = failure, configs
        self.config: dict[str, Any] | None = None  # the failing config, set by the caller that knows the configs


class NothingFits(LlmtuneError):
    """The optimization budget cannot pay for one config on every instance: said before the search spends it."""


class Executor(Protocol):
    def submit(self, fn: Callable[..., Evaluation], /, *args: Any) -> cf.Future[Evaluation]: ...


class InlineExecutor:
    """Runs each evaluation at once, in the caller's thread: for evaluations that must not overlap."""

    def submit(self, fn: Callable[..., Evaluation], /, *args: Any) -> cf.Future[Evaluation]:
        future: cf.Future[Evaluation] = cf.Future()
        try:
            future.set_result(fn(*args))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # noqa: BLE001 - handed to the search like a thread's exception
            future.set_exception(error)
        return future


@dataclass
class Progress:
    """Where a bracket's search is: sent on every finished evaluation and about once a second; the caller decides
    what to show."""

    rung: int
    rungs: int
    configs: int  # alive: not dropped
    instances: int
    done: int  # evaluations of this rung
    total: int
    usage: Usage
    finished: bool = False
    planned: int = 0  # evaluations of the bracket's whole plan
    before: int = 0  # of those, in the rungs before this one
    offset: int = 0  # the bracket's first config's number, as the merged result numbers them
    scores: tuple[tuple[int, tuple[float, ...], int], ...] = ()  # with finished: (config, its metrics, tokens)

    @property
    def fraction(self) -> float:
        """How much of the bracket's plan is done, by evaluations."""
        return min((self.before + self.done) / self.planned, 1.0) if self.planned else 0.0


@dataclass
class HeldOut:
    """A finalist on the instances the search never saw; `error` says why some have no result."""

    metrics: dict[int, float] = field(default_factory=dict)  # instance -> metric
    others: dict[int, Mapping[str, float]] = field(default_factory=dict)
    tokens: int = 0
    cost: float = 0.0
    error: str | None = None
    answers: dict[int, tuple[str, str | None]] = field(default_factory=dict)  # instance -> (answer, miss)


@dataclass
class SearchResult:
    configs: list[dict[str, Any]]
    ranked: list[Trial]
    halving: SuccessiveHalving
    usage: Usage = field(default_factory=Usage)
    passed: dict[tuple[int, int], bool] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)  # the first error of each config that raised one
    stopped: str | None = None  # why the search ended early (the optimization budget)
    held_out: dict[int, HeldOut] = field(default_factory=dict)  # finalist trial index -> its held-out results
    finished: str | None = None  # how the leader was finished after the budget stopped the search
    select: str = "best"  # or "cheapest": the cheapest complete config not significantly worse than the best

    @property
    def complete(self) -> list[Trial]:
        """The configs scored on every instance, best first."""
        return [t for t in self.ranked if t.dropped is None and len(t.metrics) == self.halving.n_instances]

    @property
    def winner(self) -> Trial | None:
        """The best config scored on every instance; with select="cheapest", the cheapest of those the paired
        comparison with the best on the same instances cannot call worse."""
        complete = self.complete
        if not complete:
            return None
        best = complete[0]
        if self.select != "cheapest":
            return best
        tied = [t for t in complete if not significantly_worse(t, best, self.halving.mode)]
        return min(tied, key=lambda t: (t.cost_per_instance, t.tokens_per_instance, complete.index(t)))


@dataclass
class _RungRunner:
    """Runs one rung's evaluations, at most `concurrency` at a time, watching costs and errors."""

    executor: Executor
    concurrency: int
    evaluate: Callable[[int, int], Evaluation]
    result: SearchResult
    inference_budget: Budget | None
    on_evaluation: Callable[[int, int, Evaluation], None] = lambda config, instance, evaluation: None
    metric_range: tuple[float, float] | None = None  # bounds of a mean-aggregated metric: lets rungs overlap
    costs: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    streak: list[Failure] = field(default_factory=list)  # failures of one signature since the last success
    in_flight: dict[cf.Future[Evaluation], tuple[int, int]] = field(default_factory=dict)
    ahead: dict[tuple[int, int], Outcome] = field(default_factory=dict)  # next-rung results, finished early

    def run(self, number: int, pairs: list[tuple[int, int]],
            on_progress: Callable[[Progress], None]) -> dict[tuple[int, int], Outcome]:
        """The rung's evaluations. Slots the rung leaves idle (its last, slow evaluations) start the next rung's
        evaluations of configs already sure to be promoted, whatever the rest of the rung gives; their results
        wait for the next rung, so every rung still compares its configs on the same instances."""
        current = set(pairs)
        outcomes = {pair: self.ahead.pop(pair) for pair in pairs if pair in self.ahead}
        started = set(self.in_flight.values())
        queue = collections.deque(pair for pair in pairs if pair not in outcomes and pair not in started)
        try:
            while queue or current & set(self.in_flight.values()):
                while queue and len(self.in_flight) < self.concurrency:
                    config, instance = queue.popleft()
                    if self.result.halving.trials[config].dropped is None:
                        self.submit((config, instance))
                if len(self.in_flight) < self.concurrency and not queue:
                    for pair in self.sure_next(number, outcomes)[: self.concurrency - len(self.in_flight)]:
                        self.submit(pair)
                done, _ = cf.wait(self.in_flight, timeout=1.0, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    pair = self.in_flight.pop(future)
                    self.collect(future, pair, outcomes if pair in current else self.ahead)
                if self.in_flight:
                    on_progress(self.progress(number, len(outcomes), len(pairs)))
        except BaseException as stopped:
            queue.clear()
            cf.wait(self.in_flight)  # requests in flight are paid for: let them finish and be recorded
            if isinstance(stopped, BudgetSpent):  # keep what finished: a cut-short rung still informs the leader
                for future, pair in self.in_flight.items():
                    if future.exception() is None:
                        self.collect(future, pair, outcomes)
                self.in_flight.clear()
                self.result.halving.apply({**outcomes, **self.ahead})
            raise
        on_progress(self.progress(number, len(outcomes), len(pairs), outcomes))
        return outcomes

    def submit(self, pair: tuple[int, int]) -> None:
        self.in_flight[self.executor.submit(self.evaluate, *pair)] = pair

    def drain(self) -> None:
        """Wait for early next-rung evaluations the search did not need (a config dropped meanwhile)."""
        cf.wait(self.in_flight)
        self.in_flight.clear()

    def sure_next(self, number: int, outcomes: Mapping[tuple[int, int], Outcome]) -> list[tuple[int, int]]:
        """Next-rung evaluations of configs that rank among the promoted even if every evaluation of this rung
        still running gives them the worst value and their rivals the best (mean aggregates of bounded metrics
        only); pairs already started or finished are left out."""
        halving = self.result.halving
        if self.metric_range is None or number + 1 >= len(halving.rungs):
            return []
        rung, following = halving.rungs[number], halving.rungs[number + 1]
        low, high = self.metric_range
        alive = [t for t in halving.alive if t.dropped is None]
        bounds: dict[int, tuple[float, float]] = {}
        for trial in alive:
            known = {**{i: m for i, m in trial.metrics.items() if i < rung.instances},
                     **{i: o.metric for (c, i), o in outcomes.items() if c == trial.index}}
            missing = rung.instances - len(known)
            total = sum(known.values())
            bounds[trial.index] = ((total + missing * low) / rung.instances, (total + missing * high) / rung.instances)
        sign = 1 if halving.mode == "max" else -1
        busy = set(self.in_flight.values()) | set(self.ahead)
        pairs = []
        for trial in alive:
            worst = min(sign * b for b in bounds[trial.index])
            rivals = sum(1 for other in alive if other is not trial and max(sign * b for b in bounds[other.index])
                         >= worst)
            if rivals < following.configs:
                pairs += [(trial.index, i) for i in range(rung.instances, following.instances)
                          if i not in trial.metrics and (trial.index, i) not in busy]
        return pairs

    def collect(self, future: cf.Future[Evaluation], pair: tuple[int, int],
                outcomes: dict[tuple[int, int], Outcome]) -> None:
        config, instance = pair
        error = future.exception()
        if isinstance(error, EvaluationError):
            return self.failed(Failure(config, instance, error))
        if error is not None:
            raise error
        evaluation = future.result()
        self.streak.clear()
        outcomes[pair] = Outcome(evaluation.metric, evaluation.usage.tokens, evaluation.cost, evaluation.others,
                                 evaluation.answer, evaluation.miss)
        self.result.passed[pair] = evaluation.passed
        self.result.usage.merge(evaluation.usage)
        self.on_evaluation(config, instance, evaluation)
        self.watch_cost(config, evaluation)
        return None

    def failed(self, failure: Failure) -> None:
        trial = self.result.halving.trials[failure.config]
        if trial.dropped is not None:
            return  # one error per config is shown; later ones were already in flight
        trial.dropped = f"error on {failure.error.where or f'instance #{failure.instance}'}: {failure.error.signature}"
        self.result.failures.append(failure)
        if self.streak and self.streak[0].error.signature != failure.error.signature:
            self.streak.clear()
        self.streak.append(failure)
        alive = sum(t.dropped is None for t in self.result.halving.trials)
        if len(self.streak) >= SAME_FAILURES_TO_STOP or alive == 0:
            raise SearchFailed(self.streak[0], len(self.streak))

    def watch_cost(self, config: int, evaluation: Evaluation) -> None:
        budget, trial = self.inference_budget, self.result.halving.trials[config]
        if budget is None:
            return
        self.costs[config].append(budget.measure(evaluation.usage.tokens, evaluation.cost))
        if trial.dropped is not None or not over_budget(self.costs[config], budget.amount):
            return
        seen = self.costs[config]
        trial.dropped = (f"dropped for cost after {len(seen)} instances: mean {budget.words(sum(seen) / len(seen))} "
                         f"per instance, over the inference budget of {budget.words(budget.amount)} at 95% confidence")

    def progress(self, number: int, done: int, total: int,
                 outcomes: Mapping[tuple[int, int], Outcome] | None = None) -> Progress:
        """`outcomes`: the rung finished with these; each of its configs' scores so far goes with it."""
        halving = self.result.halving
        rung = halving.rungs[number]
        sizes = [r.configs * (r.instances - (halving.rungs[k - 1].instances if k else 0))
                 for k, r in enumerate(halving.rungs)]
        scores = []
        for trial in ([t for t in halving.alive if t.dropped is None] if outcomes is not None else []):
            mine = {i: o for (c, i), o in outcomes.items() if c == trial.index} if outcomes else {}
            metrics = {**trial.metrics, **{i: o.metric for i, o in mine.items()}}
            tokens = trial.tokens + sum(o.tokens for o in mine.values())
            scores.append((trial.index, tuple(metrics[i] for i in sorted(metrics)), tokens))
        alive = sum(trial.dropped is None for trial in halving.alive)
        return Progress(number, len(halving.rungs), alive, rung.instances, done, total, self.result.usage,
                        outcomes is not None, sum(sizes[:number]) + total + sum(sizes[number + 1:]),
                        sum(sizes[:number]), scores=tuple(scores))


def search(
    configs: list[dict[str, Any]],
    evaluate: Callable[[int, int], Evaluation],
    *,
    halving: SuccessiveHalving,
    executor: Executor,
    concurrency: int,
    inference_budget: Budget | None = None,
    on_progress: Callable[[Progress], None] = lambda progress: None,
    on_evaluation: Callable[[int, int, Evaluation], None] = lambda config, instance, evaluation: None,
    select: str = "best",
    metric_range: tuple[float, float] | None = None,
) -> SearchResult:
    """Every config through the rungs of `halving`. Raises `SearchFailed` when configs keep failing alike."""
    result = SearchResult(configs, [], halving, select=select)
    rung = _RungRunner(executor, concurrency, evaluate, result, inference_budget, on_evaluation, metric_range)
    try:
        result.ranked = halving.run(lambda number, pairs: rung.run(number, pairs, on_progress))
    except BudgetSpent as spent:
        result.stopped = str(spent)
        result.ranked = halving.rank(halving.trials)
    finally:
        rung.drain()
    return result


FINALISTS = 3  # the best complete configs scored on the held-out instances


def score_held_out(result: SearchResult, evaluate: Callable[[int, int], Evaluation], instances: range, *,
                   executor: Executor, finalists: int = FINALISTS) -> None:
    """Score the best complete configs on `instances`, which the search never saw, into `result.held_out`.

    For information only: the winner stays the best on the tuning instances, so its held-out score is an
    honest estimate of what it does on new data (choosing by it would make that estimate optimistic too).
    """
    winner = result.winner
    chosen = ([winner] if winner else []) + [t for t in result.complete if t is not winner]  # the winner first
    new = {trial.index: HeldOut() for trial in chosen[:finalists] if trial.index not in result.held_out}
    result.held_out.update(new)  # a finalist already scored (the winner, before its confirmation) is not again
    score_on(result, evaluate, {index: (held, instances) for index, held in new.items()}, executor=executor)


def confirm(result: SearchResult, evaluate: Callable[[int, int], Evaluation], instances: range, *,
            executor: Executor) -> HeldOut:
    """The winner again on every instance, with samples of its own (`evaluate` draws them): what the search
    measured of the config it picked is the luckiest of the configs it tried, and fresh samples are not. These
    results are what the lock keeps, so that a live check compares like with like."""
    assert result.winner is not None
    confirmed = HeldOut()
    score_on(result, evaluate, {result.winner.index: (confirmed, instances)}, executor=executor)
    return confirmed


def score_on(result: SearchResult, evaluate: Callable[[int, int], Evaluation],
             into: Mapping[int, tuple[HeldOut, range]], *, executor: Executor) -> None:
    """Evaluate each config of `into` on its instances, concurrently, into its `HeldOut`."""
    pending: dict[cf.Future[Evaluation], tuple[int, int]] = {}
    for config, (_, instances) in into.items():
        for instance in instances:
            pending[executor.submit(evaluate, config, instance)] = (config, instance)
    for future in cf.as_completed(pending):
        config, instance = pending[future]
        held, error = into[config][0], future.exception()
        if isinstance(error, (EvaluationError, BudgetSpent)):
            held.error = held.error or f"{error.where + ': ' if isinstance(error, EvaluationError) else ''}{error}"
            continue
        if error is not None:
            raise error
        evaluation = future.result()
        held.metrics[instance] = evaluation.metric
        held.answers[instance] = (evaluation.answer, evaluation.miss)
        if evaluation.others:
            held.others[instance] = evaluation.others
        held.tokens += evaluation.usage.tokens
        held.cost += evaluation.cost
        result.usage.merge(evaluation.usage)


def numbered(on_progress: Callable[[Progress], None], offset: int) -> Callable[[Progress], None]:
    """`on_progress` with the bracket's configs numbered as the merged result numbers them."""
    return lambda progress: on_progress(dataclasses.replace(progress, offset=offset))


def merge(results: list[SearchResult]) -> SearchResult:
    """Brackets as one result: configs and trials renumbered, ranked together (all brackets share one plan)."""
    if len(results) == 1:
        return results[0]
    merged = SearchResult([], [], results[0].halving, stopped=results[-1].stopped, select=results[0].select)
    for result in results:
        offset = len(merged.configs)
        merged.configs += result.configs
        for trial in result.halving.trials:
            trial.index += offset
            merged.ranked.append(trial)
        merged.usage.merge(result.usage)
        merged.failures += [Failure(f.config + offset, f.instance, f.error) for f in result.failures]
    merged.ranked = merged.halving.rank(merged.ranked)
    return merged


@dataclass
class Tuner:
    """A target's whole search: brackets of drawn configs through successive halving.

    One bracket of `num_samples` configs; with `spec.num_samples == -1`, new brackets (new seeds, configs not
    drawn before) until the optimization budget is spent. `result` holds what finished, also after an interrupt.
    """

    spec: EvalSpec
    n_instances: int
    num_samples: int  # when the spec gives none
    eta: int
    min_instances: int
    default_model: str | None  # put in every config, so a lock names the model its config ran on
    price: Callable[[str, float, float], float]  # dollars of (model, prompt tokens, completion tokens)
    strategy: str = "halving"  # when the spec gives none
    split_n: bool = False  # n samples go out as n requests: the prompt is paid for each
    spending: Spending | None = None  # the optimization budget: exploration keeps in reserve what the leader needs
    held_out: int = 0  # instances kept from the search: the leader's evaluation on them is reserved too
    confirm: int = 0  # instances of a confirmation run of the winner, reserved too while the budget allows it
    skipped: list[str] = field(default_factory=list)  # configs ruled out before any request, in words
    results: list[SearchResult] = field(default_factory=list)
    live: dict[tuple[int, int], tuple[dict[int, float], list[float]]] = field(default_factory=dict)
    # (bracket, config) -> its metrics by instance and per-instance costs so far, as evaluations finish
    protected: tuple[int, int] | None = None  # the (bracket, config) whose finishing the reserve kept room for
    points: dict[str, tuple[float, ...]] = field(default_factory=dict)  # config -> its point in the unit cube
    costs: CostModel | None = None  # estimates of each candidate's cost per instance, from what was measured
    fits: list[tuple[int, Fit]] = field(default_factory=list)  # per bracket: candidates drawn, what the budget paid
    known: dict[tuple[str, int], Evaluation] = field(default_factory=dict)  # the pilot evaluation, used once

    def __post_init__(self) -> None:
        budget = self.spending.budget if self.spending is not None else None
        if budget is not None:
            self.costs = CostModel(lambda model, prompt, completion: budget.measure(
                round(prompt + completion), self.price(model, prompt, completion)), self.split_n,
                self.default_model or "")

    @property
    def result(self) -> SearchResult | None:
        """The brackets as one result (merged once: merging renumbers the trials in place)."""
        if len(self.results) > 1:
            self.results = [merge(self.results)]
        return self.results[0] if self.results else None

    def run(self, evaluate_with: Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]], *,
            executor: Executor, concurrency: int, on_plan: Callable[[int, SuccessiveHalving], None],
            on_progress: Callable[[Progress], None]) -> None:
        """Raises `SearchFailed` (its `config` set) when configs keep failing alike."""
        spec, seen = self.spec, set[str]()
        count = spec.num_samples if spec.num_samples not in (None, -1) else self.num_samples
        if self.spending is not None and self.spending.budget is not None:
            self.spending.reserve = self.reserve
        try:
            self._brackets(evaluate_with, count, seen, executor=executor, concurrency=concurrency, on_plan=on_plan,
                           on_progress=on_progress)
        finally:
            if self.spending is not None:
                self.spending.reserve = lambda: 0.0
        self.finish(evaluate_with, executor)

    def _brackets(self, evaluate_with: Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]],
                  count: int, seen: set[str], *, executor: Executor, concurrency: int,
                  on_plan: Callable[[int, SuccessiveHalving], None], on_progress: Callable[[Progress], None]) -> None:
        spec = self.spec
        for bracket in itertools.count():
            configs = [c for c in self.draw(count, spec.seed + bracket, bracket) if _key(c) not in seen]
            seen |= {_key(c) for c in configs}
            configs = self.screen(configs)
            if configs and self.costs is not None:
                configs = self.afford(configs, evaluate_with, executor, spec.seed + bracket)
            if not configs:
                return
            halving = SuccessiveHalving(len(configs), self.n_instances, eta=self.eta,
                                        min_instances=self.min_instances, mode=spec.mode, agg=spec.agg,
                                        one_rung=self.chosen_strategy != "halving")
            on_plan(len(configs), halving)
            offset = sum(len(result.configs) for result in self.results)  # merge numbers the configs this way

            def observe(config: int, instance: int, evaluation: Evaluation, bracket: int = bracket,
                        configs: list[dict[str, Any]] = configs) -> None:
                metrics, costs = self.live.setdefault((bracket, config), ({}, []))
                metrics[instance] = evaluation.metric
                costs.append(self.measure(evaluation))
                if (_key(configs[config]), instance) not in self.known:  # the pilot was observed when it ran
                    self.observe(configs[config], evaluation)

            try:
                self.results.append(search(configs, self.with_known(configs, evaluate_with(configs)),
                                           halving=halving, executor=executor,
                                           concurrency=concurrency, inference_budget=spec.inference_budget,
                                           on_progress=numbered(on_progress, offset),
                                           on_evaluation=observe, select=spec.select,
                                           metric_range=(0.0, 1.0) if spec.metric is None and spec.agg == "mean"
                                           else None))
            except SearchFailed as failed:
                failed.config = configs[failed.failure.config]
                raise
            self.known.clear()
            if spec.num_samples != -1 or self.results[-1].stopped:
                return

    def afford(self, configs: list[dict[str, Any]],
               evaluate_with: Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]],
               executor: Executor, seed: int) -> list[dict[str, Any]]:
        """The candidates whose plan the budget left pays for (see `plan.fit`). Before anything was measured, one
        pilot evaluation (the first candidate on the first instance, kept for the search) prices the rest. When
        not one candidate can be finished: before the search has spent anything, `NothingFits` says what
        budget would do; later, no new bracket starts."""
        assert self.costs is not None and self.spending is not None and self.spending.budget is not None
        self.pilot(configs, evaluate_with, executor)
        if not self.costs.ready:  # every pilot failed: the search meets (and reports) the error
            return configs
        budget = self.spending.budget
        estimates = [self.costs.estimate(config) for config in configs]
        left = budget.amount - self.spending.spent
        fitted = fit(estimates, self.n_instances, self.held_out + self.confirm, left, eta=self.eta,
                     min_instances=self.min_instances, one_rung=self.chosen_strategy != "halving")
        if not fitted.chosen and not self.results and self.confirm:
            self.confirm = 0  # the budget cannot also confirm the winner: the lock keeps the search's results
            fitted = fit(estimates, self.n_instances, self.held_out, left, eta=self.eta,
                         min_instances=self.min_instances, one_rung=self.chosen_strategy != "halving")
        if not fitted.chosen and not self.results:  # look further for one config the budget can finish
            found = self.cheaper(left, seed)
            if found is not None:
                self.fits.append((len(configs), Fit([0], found[1], found[1])))
                return [found[0]]
        self.fits.append((len(configs), fitted))
        if not fitted.chosen and not self.results:
            cheapest = min(estimates)
            enough = _round_up(self.spending.spent + MARGIN * fitted.needed)
            raise NothingFits(
                f"the optimization budget of {budget.words(budget.amount)} cannot pay for one config on all "
                f"{self.n_instances + self.held_out} instances: the cheapest of {len(configs)} candidates costs about "
                f"{budget.words(cheapest)} an instance (priced from {self.costs.evaluations} measured "
                f"evaluation{'s' if self.costs.evaluations != 1 else ''}), so a lock needs about "
                f"{budget.words(fitted.needed)} more; give optimization_budget={budget.argument(enough)} or more, "
                "or a cheaper space (smaller n or max_tokens)")
        if not fitted.chosen:
            self.results[-1].stopped = (f"the {budget.words(left)} left of the optimization budget cannot finish "
                                        f"another config (about {budget.words(fitted.needed)} needed)")
        return [configs[i] for i in fitted.chosen]

    def cheaper(self, left: float, seed: int) -> tuple[dict[str, Any], float] | None:
        """The cheapest of CHEAPER_DRAWS more candidates when it can be finished on every instance (held-out ones
        included) within `left`, with the cost estimated for it; no request is sent."""
        assert self.costs is not None
        if self.chosen_strategy == "grid":
            return None
        from pytest_llmtune.search.sampler import draw

        drawn = self.screen(self.with_model([c for c, _ in draw(self.spec.space, CHEAPER_DRAWS, seed + 20_000)]))
        if not drawn:
            return None
        priced = min(((self.costs.estimate(c) * (self.n_instances + self.held_out), n, c)
                      for n, c in enumerate(drawn)), key=lambda entry: entry[:2])
        return (priced[2], priced[0]) if priced[0] <= left else None

    def pilot(self, configs: list[dict[str, Any]],
              evaluate_with: Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]],
              executor: Executor) -> None:
        """Measure each prompt shape not measured yet (at most PILOTS): its cheapest candidate (smallest
        n x max_tokens) on the first instance. The evaluations are kept: the search uses them when it gets there."""
        assert self.costs is not None
        cheapest: dict[str, dict[str, Any]] = {}
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
                self.known[(_key(config), 0)] = evaluation
                self.observe(config, evaluation)
            elif not isinstance(future.exception(), (EvaluationError, BudgetSpent)):
                raise future.exception()  # type: ignore[misc]

    def with_known(self, configs: list[dict[str, Any]],
                   evaluate: Callable[[int, int], Evaluation]) -> Callable[[int, int], Evaluation]:
        """`evaluate`, answering from the pilot where it already ran."""
        def known_or_evaluate(config: int, instance: int) -> Evaluation:
            known = self.known.get((_key(configs[config]), instance))
            return known if known is not None else evaluate(config, instance)

        return known_or_evaluate

    def observe(self, config: dict[str, Any], evaluation: Evaluation) -> None:
        if self.costs is not None:
            usage = evaluation.usage
            self.costs.observe(config, usage.live.requests + usage.replay.requests, usage.prompt_tokens,
                               usage.completion_tokens, self.measure(evaluation))

    def measure(self, evaluation: Evaluation) -> float:
        budget = self.spending.budget if self.spending is not None else None
        return budget.measure(evaluation.usage.tokens, evaluation.cost) if budget else evaluation.cost

    def can_confirm(self, winner: Trial) -> bool:
        """Whether what is left of the optimization budget pays for the winner's confirmation run on every
        instance, priced at what the winner cost per instance in the search: the plan reserved it while it could,
        but estimates can run low, and a search that cost less than planned may leave room after all."""
        budget = self.spending.budget if self.spending is not None else None
        if budget is None or self.spending is None:
            return True
        per_instance = budget.measure(winner.tokens, winner.cost) / max(1, len(winner.metrics))
        return per_instance * (self.n_instances + self.held_out) <= budget.amount - self.spending.spent

    def reserve(self) -> float:
        """What finishing the leader on every instance would cost: its mean cost per instance so far, times the
        instances it has not been scored on (the held-out ones included), with a fifth more for noise. The leader
        is the config furthest on, then best, among those the budget can still finish; when none can be, nothing
        is kept back."""
        assert self.spending is not None and self.spending.budget is not None
        left = self.spending.budget.amount - self.spending.spent
        sign = 1 if self.spec.mode == "max" else -1
        scored = sorted(((len(metrics), sign * statistics.fmean(metrics.values()), key, costs)
                         for key, (metrics, costs) in list(self.live.items()) if metrics and costs),
                        key=lambda entry: entry[:2], reverse=True)
        for seen, _, key, costs in scored:
            need = 1.2 * statistics.fmean(costs) * (self.n_instances - seen + self.held_out + self.confirm)
            if need < left:
                self.protected = key
                return need
            if key == self.protected:  # its room is reached: exploration stops here, and finish() uses the rest
                return need
        return 0.0

    def finish(self, evaluate_with: Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]],
               executor: Executor) -> None:
        """When the budget stopped the search before any config was scored on every instance, finish the leader
        on the rest with the budget kept for it: a tune that finished nothing ends with the best it could buy."""
        offsets = list(itertools.accumulate([0] + [len(r.configs) for r in self.results]))  # before the merge
        result = self.result
        if result is None or result.winner is not None or result.stopped is None or self.spending is None:
            return
        protected = offsets[self.protected[0]] + self.protected[1] if self.protected else None
        leader = next((t for t in result.ranked if t.metrics and t.dropped is None
                       and (protected is None or t.index == protected)), None)
        if leader is None:
            return
        self.spending.finishing = True
        evaluate = evaluate_with(result.configs)
        missing = [i for i in range(self.n_instances) if i not in leader.metrics]
        pending = {executor.submit(evaluate, leader.index, instance): instance for instance in missing}
        failed: BaseException | None = None
        for future in cf.as_completed(pending):
            error = future.exception()
            if isinstance(error, (BudgetSpent, EvaluationError)):
                failed = failed or error
                continue
            if error is not None:
                raise error
            evaluation = future.result()
            leader.metrics[pending[future]] = evaluation.metric
            leader.answers[pending[future]] = (evaluation.answer, evaluation.miss)
            if evaluation.others:
                leader.others[pending[future]] = evaluation.others
            leader.tokens += evaluation.usage.tokens
            leader.cost += evaluation.cost
            result.usage.merge(evaluation.usage)
        if failed is None:
            leader.rung = len(result.halving.rungs) - 1
            result.ranked = result.halving.rank(result.ranked)
            result.finished = (f"config #{leader.index}, the leader when the budget stopped the search, was finished "
                               f"on its {len(missing)} remaining instances with the budget kept for it")
        else:
            result.finished = f"finishing the leader, config #{leader.index}, failed: {failed}"

    @property
    def chosen_strategy(self) -> str:
        return self.spec.strategy or self.strategy

    def draw(self, count: int, seed: int, bracket: int = 0) -> list[dict[str, Any]]:
        """`count` Sobol candidates, or the whole grid in a seeded order (drawn again, it adds nothing).

        With halving, brackets after the first draw half of their candidates in a box around the two best
        configs so far (side 0.5 in the unit cube, halved each bracket) and half in the whole space: later
        brackets look closer where the search found good configs, and keep exploring. Same seed, same draws.
        """
        from pytest_llmtune.search.sampler import draw  # scipy's qmc: imported only when a search draws

        space = self.spec.space
        drawn: list[tuple[dict[str, Any], tuple[float, ...]]]
        if self.chosen_strategy == "grid":  # shuffled: a part of the grid the budget pays for is a random part
            drawn = [(config, ()) for config in space.grid()]
            random.Random(seed).shuffle(drawn)
        else:
            leaders = self.leaders(2) if self.chosen_strategy == "halving" and bracket else []
            local = count // 2 if leaders else 0
            drawn = draw(space, count - local, seed)
            if local:
                drawn += draw(space, local, seed + 10_000, around=leaders, width=0.5 ** bracket)
        configs = self.with_model([config for config, _ in drawn])
        for config, (_, point) in zip(configs, drawn, strict=True):
            self.points.setdefault(_key(config), point)
        return list({_key(c): c for c in configs}.values())

    def with_model(self, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Each config naming the endpoint's model when the space names none, so a lock says what it ran on."""
        if not self.default_model:
            return configs
        return [config if "model" in config else {"model": self.default_model, **config} for config in configs]

    def leaders(self, count: int) -> list[tuple[float, ...]]:
        """The points of the best configs so far: furthest on, then best."""
        sign = -1 if self.spec.mode == "max" else 1
        trials = [(-len(trial.metrics), sign * result.halving.score(trial), _key(result.configs[trial.index]))
                  for result in self.results for trial in result.ranked if trial.metrics and trial.dropped is None]
        return [self.points[key] for *_, key in sorted(trials)[:count] if self.points.get(key)]

    def screen(self, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Configs whose n x max_tokens alone is over the inference budget are skipped before any request."""
        budget = self.spec.inference_budget
        if budget is None:
            return configs
        kept = []
        for config in configs:
            most = config.get("n", 1) * config["max_tokens"] if "max_tokens" in config else 0
            worst = budget.measure(most, self.price(str(config.get("model", "")), 0, most))
            if worst > budget.amount:
                self.skipped.append(f"n={config.get('n', 1)} x max_tokens={config['max_tokens']} can cost "
                                    f"{budget.words(worst)} per instance, over the inference budget")
            else:
                kept.append(config)
        return kept




def _worst(config: dict[str, Any]) -> float:
    most = config.get("max_tokens")
    return config.get("n", 1) * most if isinstance(most, int) and isinstance(config.get("n", 1), int) else math.inf


def _round_up(amount: float) -> float:
    """Up to two significant figures: 3,712 -> 3,800."""
    if amount <= 0:
        return amount
    step = 10 ** (math.floor(math.log10(amount)) - 1)
    return float(math.ceil(amount / step) * step)
