"""Tight optimization budgets on random landscapes: every tune refuses before the search (`NothingFits`, with the
budget that would do) or locks a config scored on every instance, held-out ones included, and ends within one
request of its budget. The landscapes come from a reviewer's fuzzing of the budget fit (2,300 of them; the
cases named below each lost a lock once)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.domains import choice, lograndint, uniform
from pytest_llmtune.search.evaluation import Evaluation, InlineExecutor, NothingFits
from pytest_llmtune.search.problem import TuneProblem
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.search.tune import Tune
from pytest_llmtune.usage import Usage

LOST = [161, 268, 328, 374, 434, 679, 904, 1144, 1307, 1415, 2018, 2242]  # each lost a lock before
Landscape = tuple[dict[str, Any], dict[str, int], dict[str, int], float, int, int, bool]
SHAPES = [f"p{shape}" for shape in range(5)]
BUILT = {  # the reviewer's own: a probe's instance paid twice (NothingFits); after three probes, a config priced
    # from other shapes taken blind (no winner)
    "the-probes-own-instance-is-paid-once": (
        {"prompt": choice(SHAPES), "temperature": uniform(0, 1), "max_tokens": lograndint(2, 64),
         "n": choice([1, 2, 4])}, dict(zip(SHAPES, [5, 40, 40, 40, 40], strict=True)),
        dict(zip(SHAPES, [20, 50, 30, 8, 20], strict=True)), 800.0, 2, 666, True),
    "after-the-probes-no-config-is-taken-blind": (
        {"prompt": choice(SHAPES), "temperature": uniform(0, 1), "max_tokens": lograndint(2, 32)},
        dict(zip(SHAPES, [20, 40, 5, 40, 5], strict=True)), dict(zip(SHAPES, [30, 30, 30, 20, 20], strict=True)),
        400.0, 2, 262, True),
}


def landscape(number: int) -> Landscape:
    """Up to 5 prompt shapes, each with its prompt's and its whole answer's length in tokens; max_tokens from 2 up
    (small ones cut answers short), sometimes n; a budget of 400-2,000 tokens for 12 instances and 4 held out."""
    rng = random.Random(number)
    prompts = [f"p{shape}" for shape in range(rng.choice([1, 1, 2, 3, 5]))]
    prompt_tokens = {prompt: rng.choice([5, 10, 20, 40]) for prompt in prompts}
    answer_tokens = {prompt: rng.choice([8, 20, 30, 50, 90]) for prompt in prompts}
    space: dict[str, Any] = {"prompt": choice(prompts) if len(prompts) > 1 else prompts[0],
                             "temperature": uniform(0, 1), "max_tokens": lograndint(2, rng.choice([32, 64, 128]))}
    if rng.random() < 0.3:
        space["n"] = choice([1, 2, 4])
    budget = float(rng.choice([400, 600, 800, 1000, 1500, 2000]))
    return (space, prompt_tokens, answer_tokens, budget, rng.choice([2, 3, 4, 6]), rng.randrange(1000),
            rng.random() < 0.5)


def tune(drawn: Landscape) -> tuple[Tune | None, Spending]:
    """The landscape's tune; None when it refused before the search. An answer cut short scores 0, or the share
    of it that fits."""
    space, prompt_tokens, answer_tokens, budget, count, seed, partial = drawn
    spending = Spending(Budget(budget, "tokens"))
    run = Tune(TuneProblem(spec=EvalSpec(space=SearchSpace(space), optimization_budget=spending.budget,
                                         num_samples=-1, seed=seed),
                           instances=12, num_samples=count, eta=3, min_instances=3, held_out_count=4), spending)

    def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
        def evaluate(config: int, instance: int) -> Evaluation:
            prompt, most = configs[config]["prompt"], configs[config]["max_tokens"]
            n, answer = configs[config].get("n", 1), min(most, answer_tokens[prompt])
            spending.admit()
            spending.settle(prompt_tokens[prompt] + n * answer, 0.0)
            usage = Usage()
            usage.record(prompt_tokens[prompt], n * answer, 0.0, replayed=False)
            metric = answer / answer_tokens[prompt] if partial else float(most >= answer_tokens[prompt])
            return Evaluation(metric, metric > 0, usage)
        return evaluate

    try:
        run.run(evaluate_with, executor=InlineExecutor(), concurrency=1)
    except NothingFits:
        return None, spending
    return run, spending


def assert_locks(number: int | str) -> bool:
    """Whether the landscape's tune locked (else it refused before the search); fails when it did neither."""
    drawn = BUILT[number] if isinstance(number, str) else landscape(number)
    run, spending = tune(drawn)
    space, prompt_tokens, answer_tokens, budget, *_ = drawn
    most = max(prompt_tokens.values()) + 4 * max(answer_tokens.values())
    assert spending.spent <= budget + most  # within one request of the budget
    if run is None:
        return False
    result = run.search
    assert result is not None and result.winner is not None, f"landscape {number}: no winner"
    assert len(result.winner.metrics) == 12
    held = result.held_out.get(result.winner.index)
    assert held is not None and len(held.metrics) == 4, f"landscape {number}: held-out {held}"
    return True


@pytest.mark.parametrize("number", [*LOST, *BUILT])
def test_a_landscape_that_once_lost_its_lock_locks(number: int | str) -> None:
    assert assert_locks(number)


def test_every_tight_budget_refuses_before_the_search_or_locks_a_config_scored_on_every_instance() -> None:
    locked = [assert_locks(number) for number in range(150)]
    assert sum(locked) >= 130  # most of them can lock: the test is not of refusals
