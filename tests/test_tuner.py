"""The pure tuner: brackets of drawn configs through successive halving, with errors, queues and budgets."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.domains import InvalidSpaceError, choice, lograndint, qrandint, randint, uniform
from pytest_llmtune.search.evaluation import Evaluation, EvaluationError, InlineExecutor, NothingFits, SearchFailed
from pytest_llmtune.search.finalists import confirm
from pytest_llmtune.search.halving import SuccessiveHalving
from pytest_llmtune.search.problem import TuneProblem
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.search.tune import Tune
from pytest_llmtune.usage import Usage

SPACE = SearchSpace({"prompt": choice(["a", "b"]), "temperature": uniform(0, 1)})


def tuner(spec: EvalSpec, n_instances: int = 12, num_samples: int = 8) -> Tune:
    return Tune(TuneProblem(spec=spec, instances=n_instances, num_samples=num_samples, eta=3, min_instances=3,
                            default_model="m", price=lambda model, prompt, completion: completion * 1e-6,
                            confirms=False))


class Brackets:
    """An observer that keeps each bracket's size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def bracket(self, candidates: int, halving: SuccessiveHalving, fitted: object) -> None:
        self.sizes.append(candidates)

    def progress(self, progress: object) -> None:
        pass

    def searched(self) -> None:
        pass

    def phase(self, what: str) -> None:
        pass


def scored(metric: float, tokens: int = 10) -> Evaluation:
    usage = Usage()
    usage.record(tokens, 0, 0.0, replayed=False)
    return Evaluation(metric, metric > 0, usage)


def paying(spending: Spending, metric: Callable[[dict[str, Any]], float],
           tokens: Callable[[int], int] = lambda instance: 10) -> Callable[
        [list[dict[str, Any]]], Callable[[int, int], Evaluation]]:
    """An `evaluate_with` whose evaluations each pay `tokens(instance)` (10) through `spending`, as a live
    request does."""
    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            spending.admit()  # as the recording transport does before a live request
            spending.settle(tokens(instance), 0.0)
            return scored(metric(configs[config]), tokens(instance))
        return evaluate
    return evaluate_with


def test_a_config_that_raises_is_dropped_and_the_others_go_on() -> None:
    calls: Counter[str] = Counter()

    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            calls[str(config)] += 1
            if config == 0:
                raise EvaluationError("ValueError: boom", "traceback", f"test[{instance}]")
            return scored(float(configs[config]["temperature"] < 0.5))
        return evaluate

    run = tuner(EvalSpec(space=SPACE))
    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, finalists=False)

    result = run.search
    assert result is not None and result.winner is not None
    assert [f.candidate for f in result.failures] == [0]
    assert calls["0"] == 1  # its queued evaluations never started
    assert result.halving.trials[0].dropped == "error on test[0]: ValueError: boom"
    assert all(config["model"] == "m" for config in result.configs)


def test_configs_failing_alike_stop_the_search_with_the_config() -> None:
    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            raise EvaluationError("APIConnectionError: Connection error.", "", f"test[{instance}]")
        return evaluate

    run = tuner(EvalSpec(space=SPACE))
    with pytest.raises(SearchFailed) as failed:
        run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, finalists=False)

    assert failed.value.in_a_row == 3
    assert failed.value.config is not None and failed.value.config["model"] == "m"


def test_configs_over_the_inference_budget_in_the_worst_case_are_screened_out() -> None:
    space = SearchSpace({"prompt": "a", "max_tokens": choice([10, 1000]), "n": 1})
    run = tuner(EvalSpec(space=space, inference_budget=Budget.parse("100 tokens", "inference_budget")))

    kept = run.brackets.screen(run.brackets.draw(8, 0))

    assert {config["max_tokens"] for config in kept} == {10}
    assert run.skipped and "max_tokens=1000 can cost 1,000 tokens per instance" in run.skipped[0]


def test_random_evaluates_every_drawn_config_on_every_instance() -> None:
    asked: list[tuple[int, int]] = []

    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            asked.append((config, instance))
            return scored(float(configs[config]["temperature"] < 0.5))
        return evaluate

    run = tuner(EvalSpec(space=SPACE, strategy="random"), n_instances=12, num_samples=6)
    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, finalists=False)

    assert sorted(asked) == [(c, i) for c in range(6) for i in range(12)]
    result = run.search
    assert result is not None and result.winner is not None
    assert result.configs[result.winner.index]["temperature"] < 0.5


def test_grid_evaluates_every_config_of_a_discrete_space_once() -> None:
    space = SearchSpace({"prompt": choice(["a", "b"]), "max_tokens": qrandint(8, 32, q=8), "n": randint(1, 3)})
    configs: list[dict[str, Any]] = []

    def evaluate_with(drawn: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        configs.extend(drawn)
        return lambda config, instance: scored(1.0)

    run = tuner(EvalSpec(space=space, strategy="grid", num_samples=-1,
                         optimization_budget=Budget.parse("1000000 tokens", "optimization_budget")))
    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, finalists=False)

    assert len(configs) == 2 * 4 * 2  # each config once, also when num_samples=-1 asks for more brackets
    assert {c["max_tokens"] for c in configs} == {8, 16, 24, 32} and {c["n"] for c in configs} == {1, 2}


def test_grid_refuses_a_continuous_space_when_the_test_is_collected() -> None:
    with pytest.raises(InvalidSpaceError, match=r"uniform\(0, 1\) is continuous: strategy='grid' needs choice"):
        EvalSpec(space=SPACE, strategy="grid")
    with pytest.raises(ValueError, match="strategy='best'.*'halving', 'random', 'grid'"):
        EvalSpec(space=SPACE, strategy="best")


def budgeted(budget: str, evaluate_with: Callable[[Spending], Callable[[list[dict[str, Any]]], Callable[
        [int, int], Evaluation]]], *, num_samples: int | None = None, held_out: int = 0,
             confirm: int = 0) -> tuple[Tune, Spending]:
    """A tune of SPACE (8 configs, 12 instances) under an optimization budget of `budget`: the search, with room
    for a confirmation run when `confirm` (its 12 instances)."""
    spending = Spending(Budget.parse(budget, "optimization_budget"))
    run = Tune(TuneProblem(spec=EvalSpec(space=SPACE, optimization_budget=spending.budget, num_samples=num_samples),
                           instances=12, num_samples=8, eta=3, min_instances=3, default_model="m",
                           held_out_count=held_out, confirms=confirm > 0), spending)
    run.run(evaluate_with(spending), executor=InlineExecutor(), concurrency=1, finalists=False)
    return run, spending


def test_the_plan_is_sized_to_the_budget_and_finishes() -> None:
    """8 configs x 4 instances + 3 x 8 more would cost 560 tokens; 200 pays for fewer configs, all finished."""
    run, spending = budgeted("200 tokens", lambda spending: paying(
        spending, lambda config: float(config["temperature"] < 0.5)))

    result = run.search
    assert result is not None and result.stopped is None  # not cut off: the plan fit
    assert result.winner is not None and len(result.winner.metrics) == 12
    drawn, fitted = run.fits[0]
    assert drawn == 8 and 1 <= len(fitted.chosen) < 8
    assert spending.spent <= 200


@pytest.mark.parametrize("budget", ["150 tokens", "300 tokens", "1000 tokens"])
def test_a_budget_that_covers_one_config_on_every_instance_always_locks_one(budget: str) -> None:
    """Even when the estimates run low (the first instance, where costs are measured, is the cheapest one), the
    leader is finished with the room kept for it."""
    run, spending = budgeted(budget, lambda spending: paying(
        spending, lambda config: float(config["temperature"] < 0.5), tokens=lambda instance: 8 if instance else 4),
        num_samples=-1)

    result = run.search
    assert result is not None and result.winner is not None and len(result.winner.metrics) == 12
    assert spending.spent <= float(budget.split()[0]) + 8  # within one request of the budget
    assert all(set(trial.answers) == set(trial.metrics) for trial in result.ranked)  # finishing keeps answers too


@pytest.mark.parametrize("budget", ["1000 tokens", "400 tokens"])
def test_the_budget_keeps_room_to_confirm_the_winner_when_it_can(budget: str) -> None:
    """A confirmation run (the winner again on every instance, fresh samples) is planned and reserved like the
    held-out instances, so the search leaves room for it."""
    pay: list[Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]]] = []

    def evaluate_with(spending: Spending) -> Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]]:
        pay.append(paying(spending, lambda config: float(config["temperature"] < 0.5),
                          tokens=lambda instance: 8 if instance else 4))
        return pay[0]

    run, spending = budgeted(budget, evaluate_with, num_samples=-1, confirm=12)
    result = run.search
    assert result is not None and result.winner is not None and run.can_confirm(result.winner)

    confirmed = confirm(result, pay[0](result.configs), range(12), executor=InlineExecutor())

    assert confirmed.error is None and len(confirmed.metrics) == 12
    assert spending.spent <= float(budget.split()[0]) + 8  # within one request of the budget


def test_a_budget_that_cannot_also_confirm_the_winner_still_locks_one_unconfirmed() -> None:
    """150 tokens pay for one config on all 12 instances (92), not for two runs of it: the confirmation gives way
    (here after the search, whose estimates ran low: the first instance is the cheapest), and the promise holds."""
    run, spending = budgeted("150 tokens", lambda spending: paying(
        spending, lambda config: float(config["temperature"] < 0.5), tokens=lambda instance: 8 if instance else 4),
        num_samples=-1, confirm=12)

    result = run.search
    assert result is not None and result.winner is not None and len(result.winner.metrics) == 12
    assert not run.can_confirm(result.winner)
    assert spending.spent <= 150 + 8


def test_a_budget_that_cannot_finish_one_config_is_refused_before_the_search() -> None:
    calls: list[tuple[int, int]] = []

    def counting(spending: Spending) -> Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]]:
        pay = paying(spending, lambda config: 1.0)

        def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
            evaluate = pay(configs)

            def counted(config: int, instance: int) -> Evaluation:
                calls.append((config, instance))
                return evaluate(config, instance)
            return counted
        return evaluate_with

    with pytest.raises(NothingFits, match=r'optimization budget of 100 tokens cannot pay for one config on all 12 '
                                          r'instances: the cheapest of 8 candidates costs about 10 tokens an instance '
                                          r'\(priced from 2 measured evaluations\), so a lock needs about 120 tokens '
                                          r'more; give optimization_budget="170 tokens" or more'):
        budgeted("100 tokens", counting)
    assert calls == [(0, 0), (1, 0)]  # one pilot per prompt shape ("a", "b"), on the first instance


def test_results_of_a_rung_the_budget_cut_short_are_kept() -> None:
    budget = Budget.parse("50 tokens", "optimization_budget")
    spending = Spending(budget)

    evaluate_with = paying(spending, lambda config: 1.0)
    run = tuner(EvalSpec(space=SPACE, optimization_budget=budget))
    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, finalists=False)

    result = run.search
    assert result is not None
    assert sum(len(trial.metrics) for trial in result.ranked) == 5  # every paid evaluation counts


def test_select_cheapest_locks_the_cheapest_config_the_data_cannot_call_worse() -> None:
    space = SearchSpace({"prompt": choice(["short", "long and costly", "bad"]), "temperature": 0})

    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            prompt = configs[config]["prompt"]
            right = {"short": instance % 10 != 0, "long and costly": True, "bad": instance % 2 == 0}[prompt]
            return scored(float(right), tokens=100 if prompt == "long and costly" else 10)
        return evaluate

    def locked(select: str) -> dict[str, Any]:
        run = Tune(TuneProblem(spec=EvalSpec(space=space, select=select, strategy="grid"), instances=20,
                               num_samples=3, eta=3, min_instances=5))
        run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, finalists=False)
        assert run.search is not None and run.search.winner is not None
        return run.search.configs[run.search.winner.index]

    assert locked("best")["prompt"] == "long and costly"  # 1.00 vs 0.90 on 20 instances
    assert locked("cheapest")["prompt"] == "short"  # 2 misses in 20: within noise of the best, 10x cheaper
    with pytest.raises(ValueError, match="select='fast'"):
        EvalSpec(space=space, select="fast")


def learned_brackets() -> list[list[float]]:
    """The temperatures each bracket drew, on a landscape whose best configs have temperature near 0.3."""
    budget = Budget.parse("3000 tokens", "optimization_budget")
    spending = Spending(budget)

    evaluate_with = paying(spending, lambda config: 1 - abs(float(config["temperature"]) - 0.3))
    run = Tune(TuneProblem(spec=EvalSpec(space=SearchSpace({"prompt": "a", "temperature": uniform(0, 1)}),
                                         num_samples=-1, metric="m", optimization_budget=budget),
                           instances=12, num_samples=8, eta=3, min_instances=3, confirms=False), spending)
    shown = Brackets()
    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1, observer=shown, finalists=False)
    sizes = shown.sizes
    assert run.search is not None
    temperatures = [float(c["temperature"]) for c in run.search.configs]  # the brackets, one after the other
    starts = [sum(sizes[:i]) for i in range(len(sizes) + 1)]
    return [temperatures[a:b] for a, b in zip(starts, starts[1:], strict=False)]


def test_later_brackets_draw_more_densely_near_the_leaders_and_keep_exploring() -> None:
    brackets = learned_brackets()

    assert len(brackets) >= 3
    def near(temperatures: list[float]) -> float:
        return sum(abs(t - 0.3) < 0.1 for t in temperatures) / len(temperatures)
    assert near(brackets[2]) > near(brackets[0])
    assert any(abs(t - 0.3) > 0.3 for t in brackets[2])  # a share still explores the whole range
    assert learned_brackets() == brackets  # same seed, same candidates


def test_early_next_rung_evaluations_change_nothing_but_the_wait() -> None:
    """Starting sure promotions early (metric_range) evaluates the same pairs and ranks the same way."""
    import concurrent.futures as cf
    import random
    import threading

    from pytest_llmtune.search.rungs import run_bracket

    def tune(metric_range: tuple[float, float] | None) -> tuple[list[tuple[int, int]], list[int]]:
        asked: list[tuple[int, int]] = []
        lock = threading.Lock()

        def evaluate(config: int, instance: int) -> Evaluation:
            with lock:
                asked.append((config, instance))
            return scored(float(random.Random(config * 1000 + instance).random() < config / 16))

        halving = SuccessiveHalving(16, 48, eta=3, min_instances=5)
        with cf.ThreadPoolExecutor(8) as pool:
            result = run_bracket([{"c": k} for k in range(16)], evaluate, halving=halving, executor=pool,
                                 concurrency=8, metric_range=metric_range)
        return sorted(asked), [t.index for t in result.ranked]

    assert tune((0.0, 1.0)) == tune(None)


def test_each_bracket_is_expected_to_spend_what_it_spends_and_runs_the_rungs_its_fit_chose() -> None:
    """The plan is priced as it is paid: the winner's held-out instances are kept once, apart from the bracket's
    plan, so a bracket's expected spend is its own (every evaluation here costs 10 tokens, as estimated)."""
    starts: list[float] = []
    spending = Spending(Budget.parse("900 tokens", "optimization_budget"))

    class Watch:
        def bracket(self, candidates: int, halving: Any, fitted: Any) -> None:
            starts.append(spending.spent)
            assert fitted is not None and halving.rungs == fitted[1].rungs

        def progress(self, progress: Any) -> None: ...
        def searched(self) -> None: starts.append(spending.spent)
        def phase(self, what: str) -> None: ...

    run = Tune(TuneProblem(spec=EvalSpec(space=SPACE, optimization_budget=spending.budget), instances=12,
                           num_samples=8, eta=3, min_instances=3, held_out_count=4), spending)
    run.run(paying(spending, lambda config: float(config["temperature"] < 0.5)), executor=InlineExecutor(),
            concurrency=1, observer=Watch(), finalists=False)

    (_, fitted), = run.fits
    assert fitted.reserved == 10 * (4 + 16)  # held-out and confirmation (all 16), once, at the candidates' cost
    assert fitted.expected <= starts[1] - starts[0] + 10 * len(fitted.chosen)  # ties may promote fewer than priced
    assert starts[1] - starts[0] <= fitted.expected


@pytest.mark.parametrize(("budget", "piloted"), [("400 tokens", 4), ("100000 tokens", 6)])
def test_pilots_measure_prompt_shapes_in_waves_until_they_spent_their_share_of_the_budget(
        budget: str, piloted: int) -> None:
    """Six prompt shapes; a wave of 4 pilots at 10 tokens each is 10% of 400 tokens, over the 5% share, so the
    other two shapes are priced from the first four; a large budget measures all six."""
    from pytest_llmtune.search.afford import Affordability

    spending = Spending(Budget.parse(budget, "optimization_budget"))
    space = SearchSpace({"prompt": choice(list("abcdef")), "temperature": uniform(0, 1), "max_tokens": 8})
    problem = TuneProblem(spec=EvalSpec(space=space, optimization_budget=spending.budget), instances=12,
                          num_samples=16, eta=3, min_instances=3)
    afford = Affordability(problem, spending)
    configs = [{"prompt": p, "temperature": 0.5, "max_tokens": 8} for p in "abcdef"]

    ran = afford.pilot(configs, paying(spending, lambda config: 1.0), InlineExecutor())

    assert ran == piloted and afford.costs.evaluations == piloted and spending.spent == 10 * piloted
    assert afford.pilot(configs, paying(spending, lambda config: 1.0), InlineExecutor(), every_shape=True) == (
        6 - piloted)  # before giving up on a budget, the shapes left are measured too


def test_the_reserve_keeps_room_for_a_confirmation_only_for_a_leader_whose_answers_are_samples() -> None:
    from pytest_llmtune.search.afford import Affordability

    def reserve_for(temperature: float) -> float:
        spending = Spending(Budget.parse("10000 tokens", "optimization_budget"))
        problem = TuneProblem(spec=EvalSpec(space=SPACE, optimization_budget=spending.budget), instances=12,
                              held_out_count=4, eta=3, min_instances=3)  # the space samples: a confirmation
        afford = Affordability(problem, spending)
        for instance in range(12):
            afford.watch((0, 0), {"prompt": "a", "temperature": temperature}, instance, scored(1.0, 10))
        return afford.reserve()

    assert reserve_for(0.0) == pytest.approx(1.2 * 10 * 4)  # the held-out instances only
    assert reserve_for(0.7) == pytest.approx(1.2 * 10 * (4 + 16))  # and all 16 again, with fresh samples


@pytest.mark.parametrize("budget", range(220, 300, 5))
def test_a_later_brackets_pilots_never_spend_what_the_winners_held_out_instances_need(budget: int) -> None:
    """Six prompt shapes, four measured by the first wave of pilots (10 tokens an instance); the two others cost 30.
    The budget pays for one config on all 16 instances and little else. A later bracket would measure the other
    shapes, but what finishing the leader needs (its held-out instances) is kept first, even when it cannot also
    be kept with a fifth more for noise: every budget locks a config scored on every instance, held-out included."""
    spending = Spending(Budget(float(budget), "tokens"))
    space = SearchSpace({"prompt": choice(list("abcdef")), "temperature": uniform(0, 1)})
    run = Tune(TuneProblem(spec=EvalSpec(space=space, optimization_budget=spending.budget, num_samples=-1),
                           instances=12, num_samples=8, eta=3, min_instances=3, held_out_count=4), spending)

    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            tokens = 30 if configs[config]["prompt"] in "ef" else 10
            spending.admit()
            spending.settle(tokens, 0.0)
            return scored(float(configs[config]["temperature"] < 0.5), tokens)
        return evaluate

    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1)

    result = run.search
    assert result is not None and result.winner is not None and len(result.winner.metrics) == 12
    assert len(result.held_out[result.winner.index].metrics) == 4
    assert spending.spent <= budget + 30


def test_a_tight_budgets_further_draws_rank_candidates_by_what_is_known_of_their_answers() -> None:
    """Measured: shape "ended" answers in 9 tokens, shape "cut" was cut off at 6 every time, "other" never ran.
    Of 256 further candidates the lone one a tight budget finishes is whole ("ended", max_tokens 9 or more);
    with "ended" out of reach, a "cut" one with the largest max_tokens affordable (the likeliest to hold the
    answer); a max_tokens that cuts the measured answers comes last."""
    from pytest_llmtune.search.brackets import Brackets

    def found(left: float, prompts: tuple[str, ...] = ("ended", "cut", "other")) -> list[dict[str, Any]]:
        spending = Spending(Budget(10_000.0, "tokens"))
        space = SearchSpace({"prompt": choice(list(prompts)), "max_tokens": randint(2, 40)})
        spec = EvalSpec(space=space, optimization_budget=spending.budget, num_samples=16)
        brackets = Brackets(TuneProblem(spec=spec, instances=12, held_out_count=4, num_samples=16, eta=3,
                                        min_instances=3), spending)
        assert brackets.afford is not None
        costs = brackets.afford.costs
        costs.observe({"prompt": "ended", "max_tokens": 30}, 1, 10, 9, 19.0)
        costs.observe({"prompt": "cut", "max_tokens": 6}, 1, 10, 6, 16.0)
        picked = brackets.cheaper(left, spec.seed)
        assert picked is not None
        return picked[0]

    alone = found(16 * 19.5)  # an "ended" config costs 10 + 9 = 19: two compared cannot fit, one can
    assert len(alone) == 1 and alone[0]["prompt"] == "ended" and alone[0]["max_tokens"] >= 9
    cut = found(16 * 22.0, ("cut", "other"))  # a "cut" config costs 10 + max_tokens (its upper bound): two of
    assert len(cut) == 1 and cut[0]["prompt"] == "cut" and cut[0]["max_tokens"] == 12  # 17 cannot be compared


@pytest.mark.parametrize("seed", [2, 3, 5, 7, 8, 9, 11])  # seeds whose first bracket's candidates cut it
def test_a_tight_budget_measures_a_longer_answer_before_it_locks_one_cut_short(seed: int) -> None:
    """Answers take 30 tokens (after a 10-token prompt); a config whose max_tokens is under 30 is cut short and
    fails every instance. The budget pays for one config on all 16 instances and little else. When the first
    bracket's pilot saw only answers cut off (its candidates' max_tokens all under 30), the further draws are of
    unknown length: one with a larger max_tokens is measured first, and the lock holds its answers."""
    spending = Spending(Budget(800.0, "tokens"))
    space = SearchSpace({"prompt": "a", "max_tokens": lograndint(2, 64), "temperature": uniform(0, 1)})
    run = Tune(TuneProblem(spec=EvalSpec(space=space, optimization_budget=spending.budget, num_samples=-1,
                                         seed=seed), instances=12, num_samples=2, eta=3, min_instances=3,
                           held_out_count=4), spending)
    pilots: list[int] = []

    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            most = configs[config]["max_tokens"]
            if not pilots:
                pilots.append(most)
            spending.admit()
            spending.settle(10 + min(most, 30), 0.0)
            usage = Usage()
            usage.record(10, min(most, 30), 0.0, replayed=False)
            return Evaluation(float(most >= 30), most >= 30, usage)
        return evaluate

    run.run(evaluate_with, executor=InlineExecutor(), concurrency=1)

    result = run.search
    assert result is not None and result.winner is not None
    assert pilots[0] < 30  # the case the test is about: the first pilot's answer was cut off
    assert result.configs[result.winner.index]["max_tokens"] >= 30
    assert len(result.held_out[result.winner.index].metrics) == 4
    assert spending.spent <= 800 + 64

