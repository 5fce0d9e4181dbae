"""The budget plan: what a candidate is estimated to cost per instance, and how many candidates a budget buys."""

from __future__ import annotations

import pytest

from pytest_llmtune.search.costs import MARGIN, CostModel, plan_cost, shapes
from pytest_llmtune.search.costs import fit_budget as fit
from pytest_llmtune.search.halving import Rung


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


@pytest.mark.parametrize("left", [300.0, 700.0, 1500.0, 5000.0])
def test_fit_keeps_the_most_candidates_whose_plan_fits_on_the_least_aggressive_rungs_that_do(left: float) -> None:
    estimates = [10.0] * 16

    fitted = fit(estimates, 12, 0, left, eta=3, min_instances=3, one_rung=False)

    count = len(fitted.chosen)
    assert fitted.chosen == list(range(count))
    assert fitted.expected == plan_cost(fitted.rungs, estimates[:count]) and MARGIN * fitted.expected <= left
    fitting = [r for r in shapes(count, 12, 3, 3, False) if MARGIN * plan_cost(r, estimates[:count]) <= left]
    assert fitted.rungs == fitting[0]
    if count < 16:
        assert all(MARGIN * plan_cost(r, estimates[: count + 1]) > left for r in shapes(count + 1, 12, 3, 3, False))


def test_more_aggressive_rungs_start_smaller_so_more_candidates_fit() -> None:
    assert shapes(16, 60, 3, 5, False) == [
        [Rung(16, 7), Rung(6, 20), Rung(2, 60)],  # successive halving's own
        [Rung(16, 5), Rung(6, 7), Rung(2, 20), Rung(1, 60)],  # a first rung as small as min_instances allows
    ]
    assert shapes(4, 60, 3, 5, False)[1] == [Rung(4, 7), Rung(2, 20), Rung(1, 60)]
    assert shapes(5, 60, 3, 5, True) == [[Rung(5, 60)]] and shapes(1, 60, 3, 5, False) == [[Rung(1, 60)]]

    # 16 candidates fit on the aggressive rungs where successive halving's own would keep fewer
    wide = fit([10.0] * 16, 60, 0, 1.2 * plan_cost(shapes(16, 60, 3, 5, False)[1], [10.0] * 16), eta=3,
               min_instances=5, one_rung=False)
    assert len(wide.chosen) == 16 and wide.rungs == shapes(16, 60, 3, 5, False)[1]


def test_an_expensive_candidate_early_is_left_out_not_a_reason_to_keep_only_the_cheapest() -> None:
    estimates = [200.0, *[10.0] * 15]

    fitted = fit(estimates, 12, 0, 1500.0, eta=3, min_instances=3, one_rung=False)

    assert 0 not in fitted.chosen and len(fitted.chosen) > 8
    assert fitted.chosen == list(range(1, 1 + len(fitted.chosen)))


def test_never_more_than_the_dearer_half_is_left_out_to_fit_more_candidates() -> None:
    estimates = [40.0, 10.0] * 8  # median 25: a cap under it would keep only the cheap half

    fitted = fit(estimates, 12, 0, 1500.0, eta=3, min_instances=3, one_rung=False)

    assert fitted.chosen == list(range(len(fitted.chosen)))  # in order, dear and cheap alike
    assert len(fitted.chosen) >= 2


def test_what_the_winner_needs_after_the_search_is_kept_once_apart_from_the_brackets_plan() -> None:
    estimates = [10.0] * 4

    fitted = fit(estimates, 12, 8, 2000.0, eta=3, min_instances=3, one_rung=False)
    kept = fit(estimates, 12, 8, 2000.0, eta=3, min_instances=3, one_rung=False, kept=500.0)

    assert fitted.reserved == 10.0 * 8 and fitted.expected == plan_cost(fitted.rungs, estimates)
    assert kept.reserved == 500.0  # the leader so far needs more than the candidates' mean would


def test_fit_falls_back_to_the_cheapest_candidate_without_the_margin_then_to_nothing() -> None:
    estimates = [50.0, 8.0, 30.0, 7.0]

    alone = fit(estimates, 10, 2, 97.0, eta=3, min_instances=3, one_rung=False)  # 7 with the margin: 98
    nothing = fit(estimates, 10, 2, 80.0, eta=3, min_instances=3, one_rung=False)

    assert alone.chosen == [3] and alone.needed == 7.0 * 12  # the most room for estimates that ran low
    assert nothing.chosen == [] and nothing.needed == 84.0


def test_a_budget_too_tight_for_ties_still_compares_a_cheap_few_before_it_keeps_one_config_alone() -> None:
    """Two configs at 10 on (2 x 3, then 1 x 12): without ties 10 x (2 x 3 + 9) = 150, 180 with the margin, and
    20 kept for the winner's 2 held-out instances; were the tie promoted, 2 x 12 x 10 = 240, 288 with the margin."""
    estimates = [10.0, 10.0, 40.0, 40.0]

    fitted = fit(estimates, 12, 2, 200.0, eta=3, min_instances=3, one_rung=False)

    assert fitted.chosen == [0, 1] and fitted.ties == 0.0
    assert fitted.rungs == [Rung(2, 3), Rung(1, 12)]
    assert fitted.expected == plan_cost(fitted.rungs, [10.0, 10.0], ties=0.0) == 10.0 * (2 * 3 + 9)
    assert MARGIN * fitted.expected + fitted.reserved <= 200.0 < MARGIN * plan_cost(fitted.rungs, [10.0, 10.0])


def test_a_max_tokens_under_its_shapes_measured_answers_is_cut_short() -> None:
    costs = tokens_model()
    costs.observe({"prompt": "ended", "max_tokens": 20, "n": 1}, 1, 10, 9, 19.0)  # the answer ended at 9
    costs.observe({"prompt": "cut", "max_tokens": 6, "n": 1}, 1, 10, 6, 16.0)  # every answer hit max_tokens

    assert costs.cut_short({"prompt": "ended", "max_tokens": 8, "n": 1})
    assert not costs.cut_short({"prompt": "ended", "max_tokens": 9, "n": 3})
    assert costs.cut_short({"prompt": "cut", "max_tokens": 6, "n": 1})  # the answers are longer than 6
    assert not costs.cut_short({"prompt": "cut", "max_tokens": 7, "n": 1})  # not known
    assert not costs.cut_short({"prompt": "unmeasured", "max_tokens": 2, "n": 1})
    assert not costs.cut_short({"prompt": "ended", "n": 1})  # no max_tokens: nothing cuts it
    assert [costs.known({"prompt": prompt, "max_tokens": most, "n": 1}) for prompt, most in [
        ("ended", 12), ("ended", 8), ("cut", 30), ("cut", 4), ("unmeasured", 30)]] == [
        "whole", "cut", "longer", "cut", "priced"]
    assert costs.known({"prompt": "cut", "max_tokens": 6, "n": 1}) == "cut"  # measured itself: cut all the same


def test_a_tight_budget_compares_and_keeps_configs_whose_answers_are_not_cut_short_before_cut_ones() -> None:
    """The cheapest candidates are cut short (cheap because cut): the first that is not is kept alone (a plan with
    the margin); only when nothing else fits with the margin, a cut one; without it, an uncut one first."""
    estimates = [7.0, 9.0, 50.0, 9.0, 6.0]
    cut = [True, False, False, False, True]

    def fitted(left: float, cut: list[bool] = cut) -> list[int]:
        return fit(estimates, 10, 2, left, eta=3, min_instances=3, one_rung=False, cut=cut).chosen

    assert fitted(160.0) == [1, 3]  # 9 x (2 x 3 + 7) x 1.2 + 18 = 158.4: the uncut two compared
    assert fitted(130.0) == [1]  # the uncut one alone: 9 x 10 x 1.2 + 18 = 126
    assert fitted(130.0, []) == [0, 4]  # blind to the cut, the two cheapest: (7 + 6) x 3 + 6.5 x 7 = 84.5
    assert fitted(120.0) == [0, 4]  # the uncut alone 126 > 120; the cut two 84.5 x 1.2 + 13 = 114.4
    assert fitted(100.0) == [0]  # with the margin only a cut one fits: 7 x 10 x 1.2 + 14 = 98
    assert fitted(85.0) == [4]  # without the margin the cheapest: 6 x 12 = 72, and so is 9 x 12 = 108 > 85
