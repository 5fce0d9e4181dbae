"""The budget plan: what a candidate is estimated to cost per instance, and how many candidates a budget buys."""

from __future__ import annotations

import pytest

from pytest_llmtune.search.costs import MARGIN, CostModel, plan_cost
from pytest_llmtune.search.costs import fit_budget as fit
from pytest_llmtune.search.halving import Rung
from pytest_llmtune.search.halving import rungs_for as plan


def tokens_model(split_n: bool = False) -> CostModel:
    return CostModel(lambda model, prompt, completion: prompt + completion, split_n)


def test_a_measured_config_costs_its_own_mean() -> None:
    costs = tokens_model()
    config = {"prompt": "a", "max_tokens": 10, "n": 1}
    costs.observe(config, 1, 20, 4, 24.0)
    costs.observe(config, 1, 30, 4, 34.0)

    assert costs.estimate(config) == 29.0


def test_an_unmeasured_config_is_priced_from_its_prompt_shape_and_its_own_n_and_max_tokens() -> None:
    costs = tokens_model()
    costs.observe({"prompt": "short", "max_tokens": 10, "n": 1, "temperature": 0.5}, 1, 20, 4, 24.0)
    costs.observe({"prompt": "long", "max_tokens": 10, "n": 1, "temperature": 0.5}, 1, 200, 4, 204.0)

    # one request asks for 3 samples of the answer's natural length (4 tokens, under max_tokens)
    assert costs.estimate({"prompt": "short", "max_tokens": 32, "n": 3, "temperature": 0.9}) == 20 + 3 * 4
    # max_tokens under the natural length cuts every sample there
    assert costs.estimate({"prompt": "long", "max_tokens": 2, "n": 1, "temperature": 0.1}) == 200 + 2


def test_answers_that_hit_max_tokens_say_nothing_of_their_length_so_a_larger_max_tokens_is_paid_in_full() -> None:
    costs = tokens_model()
    costs.observe({"prompt": "a", "max_tokens": 4, "n": 1}, 1, 10, 4, 14.0)

    assert costs.estimate({"prompt": "a", "max_tokens": 30, "n": 1}) == 10 + 30


def test_split_n_pays_the_prompt_per_sample_unless_temperature_is_zero() -> None:
    costs = tokens_model(split_n=True)
    costs.observe({"prompt": "a", "max_tokens": 10, "n": 1, "temperature": 0.7}, 1, 20, 5, 25.0)

    assert costs.estimate({"prompt": "a", "max_tokens": 10, "n": 4, "temperature": 0.3}) == 4 * (20 + 5)
    assert costs.estimate({"prompt": "a", "max_tokens": 10, "n": 4, "temperature": 0}) == 20 + 5


def test_the_plan_cost_counts_every_rung_and_the_ties_it_may_promote() -> None:
    rungs = [Rung(9, 4), Rung(3, 12)]

    # 9 configs x 4 instances, then up to 3 + 2 tied configs x 8 more instances, at the mean cost
    assert plan_cost(rungs, [10.0] * 9) == 9 * 4 * 10 + 5 * 8 * 10


@pytest.mark.parametrize("left", [700.0, 1500.0, 5000.0])
def test_fit_keeps_the_longest_prefix_whose_plan_fits(left: float) -> None:
    estimates = [10.0] * 16

    fitted = fit(estimates, 12, 0, left, eta=3, min_instances=3, one_rung=False)

    count = len(fitted.chosen)
    assert fitted.chosen == list(range(count))
    assert MARGIN * plan_cost(plan(count, 12, 3, 3), estimates[:count]) <= left
    if count < 16:
        assert MARGIN * plan_cost(plan(count + 1, 12, 3, 3), estimates[: count + 1]) > left


def test_fit_falls_back_to_the_cheapest_candidate_then_to_nothing() -> None:
    estimates = [50.0, 8.0, 30.0]

    alone = fit(estimates, 10, 2, 100.0, eta=3, min_instances=3, one_rung=False)
    nothing = fit(estimates, 10, 2, 90.0, eta=3, min_instances=3, one_rung=False)

    assert alone.chosen == [1] and alone.needed == 8.0 * 12
    assert nothing.chosen == [] and nothing.needed == 96.0
