"""Successive halving: the plan of rungs, and a run driven by a deterministic evaluate function."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import pytest

from pytest_llmtune.search.halving import Outcome, Rung, SuccessiveHalving, Trial
from pytest_llmtune.search.halving import rungs_for as plan

Pairs = list[tuple[int, int]]


class Recorder:
    """A deterministic `evaluate(rung, pairs)`: outcomes are functions of the pair; every ask is kept."""

    def __init__(
        self, metric: Callable[[int, int], float], tokens: Callable[[int], int] = lambda config: 10
    ) -> None:
        self.metric, self.tokens = metric, tokens
        self.asked: list[tuple[int, Pairs]] = []

    def __call__(self, rung: int, pairs: Pairs) -> dict[tuple[int, int], Outcome]:
        self.asked.append((rung, list(pairs)))
        return {(c, i): Outcome(self.metric(c, i), self.tokens(c)) for c, i in pairs}

    def instances_of(self, rung: int) -> dict[int, list[int]]:
        by_config: dict[int, list[int]] = {}
        for number, pairs in self.asked:
            if number == rung:
                for config, instance in pairs:
                    by_config.setdefault(config, []).append(instance)
        return by_config


def by_index(config: int, instance: int) -> float:
    """Higher configs score higher; the instance adds noise that does not change the order."""
    return config + (instance % 3) / 10


def winner(trials: list[Trial]) -> Trial:
    return trials[0]


# plan


@pytest.mark.parametrize(
    ("args", "rungs"),
    [
        ((16, 40), [Rung(16, 14), Rung(6, 40)]),
        ((27, 100), [Rung(27, 12), Rung(9, 34), Rung(3, 100)]),
        ((2, 40), [Rung(2, 40)]),
        ((16, 8), [Rung(16, 8)]),
        ((9, 45), [Rung(9, 5), Rung(3, 15), Rung(1, 45)]),
        ((16, 40, 2), [Rung(16, 5), Rung(8, 10), Rung(4, 20), Rung(2, 40)]),
    ],
)
def test_plan_keeps_a_third_of_the_configs_on_three_times_the_instances(
    args: tuple[int, ...], rungs: list[Rung]
) -> None:
    assert plan(*args) == rungs


def test_plan_always_ends_on_every_instance() -> None:
    for n_configs in range(1, 60):
        for n_instances in (1, 7, 40, 333):
            assert plan(n_configs, n_instances)[-1].instances == n_instances


def test_plan_never_starts_a_rung_below_min_instances_unless_there_are_fewer_instances() -> None:
    assert all(rung.instances >= 10 for rung in plan(100, 200, min_instances=10))
    assert plan(100, 4, min_instances=10) == [Rung(100, 4)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eta": 1}, "The value of `eta` is 1, but must be `eta >= 2`"),
        ({"n_configs": 0}, "The value of `n_configs` is 0, but must be `n_configs >= 1`"),
        ({"n_instances": 0}, "The value of `n_instances` is 0, but must be `n_instances >= 1`"),
        ({"min_instances": 0}, "The value of `min_instances` is 0, but must be `min_instances >= 1`"),
        ({"n_configs": 2.0}, "The value of `n_configs` is 2.0, but must be `n_configs >= 1`"),
        ({"eta": True}, "The value of `eta` is True, but must be `eta >= 2`"),
    ],
)
def test_plan_names_the_bad_argument_and_its_constraint(kwargs: dict[str, object], message: str) -> None:
    arguments = {"n_configs": 16, "n_instances": 40, **kwargs}

    with pytest.raises(ValueError, match=re.escape(message)):
        plan(**arguments)  # type: ignore[arg-type]


def test_halving_refuses_an_unknown_mode() -> None:
    message = "The value of `mode` is 'avg', but must be 'max' or 'min'"

    with pytest.raises(ValueError, match=re.escape(message)):
        SuccessiveHalving(16, 40, mode="avg")


# run


def test_every_config_alive_at_a_rung_is_evaluated_on_the_same_instances() -> None:
    halving = SuccessiveHalving(27, 100)
    evaluate = Recorder(by_index)
    seen: list[dict[int, set[int]]] = []

    halving.run(evaluate, on_rung=lambda number, rung: seen.append(
        {t.index: set(t.metrics) for t in halving.trials if t.rung == number and t.metrics}
    ))

    for rung, alive in zip(halving.rungs, seen, strict=True):
        assert len(alive) == rung.configs
        assert all(instances == set(range(rung.instances)) for instances in alive.values())


def test_a_promoted_config_is_only_asked_for_the_instances_it_has_not_seen() -> None:
    halving = SuccessiveHalving(16, 40)  # rungs: 16 configs on 14 instances, then 6 on 40
    evaluate = Recorder(by_index)

    halving.run(evaluate)

    assert [rung for rung, _ in evaluate.asked] == [0, 1]
    assert evaluate.instances_of(0) == {c: list(range(14)) for c in range(16)}
    assert evaluate.instances_of(1) == {c: list(range(14, 40)) for c in range(10, 16)}


def test_no_pair_is_ever_evaluated_twice() -> None:
    evaluate = Recorder(by_index)

    SuccessiveHalving(27, 100).run(evaluate)

    counts = Counter(pair for _, pairs in evaluate.asked for pair in pairs)
    assert set(counts.values()) == {1}


def test_the_winner_was_evaluated_on_every_instance() -> None:
    trials = SuccessiveHalving(27, 100).run(Recorder(by_index))

    assert winner(trials).index == 26
    assert set(winner(trials).metrics) == set(range(100))


def test_a_tie_goes_to_the_config_with_fewer_tokens_per_instance() -> None:
    costs = {0: 30, 1: 20, 2: 10, 3: 20}
    evaluate = Recorder(lambda config, instance: 1.0, tokens=costs.__getitem__)

    trials = SuccessiveHalving(4, 15).run(evaluate)

    assert winner(trials).index == 2
    assert winner(trials).tokens_per_instance == 10


def test_a_tie_in_score_and_cost_goes_to_the_earlier_config() -> None:
    trials = SuccessiveHalving(4, 15).run(Recorder(lambda config, instance: 1.0))

    assert [t.index for t in trials] == [0, 1, 2, 3]


def test_mode_min_picks_the_lowest_score() -> None:
    trials = SuccessiveHalving(27, 100, mode="min").run(Recorder(by_index))

    assert winner(trials).index == 0


def test_results_are_ranked_by_rung_reached_then_score() -> None:
    trials = SuccessiveHalving(9, 45).run(Recorder(by_index))  # rungs: 9 on 5, 3 on 15, 1 on 45

    assert [t.index for t in trials] == [8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert [t.rung for t in trials] == [2, 1, 1, 0, 0, 0, 0, 0, 0]


def test_median_aggregate_ignores_an_outlier_instance() -> None:
    def metric(config: int, instance: int) -> float:
        return 100.0 if (config, instance) == (0, 0) else float(config)

    trials = SuccessiveHalving(3, 5, agg="median").run(Recorder(metric))

    assert winner(trials).index == 2


def test_complete_configs_rank_by_score_whatever_the_rung_number_of_their_bracket() -> None:
    """Brackets of different sizes number their rungs differently: a config complete in a one-rung bracket
    (rung 0) must not rank below a worse one complete at rung 1 of a bigger bracket."""
    halving = SuccessiveHalving(2, 4)
    better = Trial(0, metrics=dict.fromkeys(range(4), 1.0), rung=0)
    worse = Trial(1, metrics=dict.fromkeys(range(4), 0.5), rung=1)
    partial = Trial(2, metrics={0: 1.0, 1: 1.0}, rung=1)

    assert [t.index for t in halving.rank([worse, partial, better])] == [0, 1, 2]


def test_a_config_tied_with_the_cut_off_on_the_shared_instances_is_promoted_too() -> None:
    """9 configs on 3 instances keep 3; on pass/fail results that close, the paired test calls no config worse
    than the cut-off, so up to TIES x 3 = 2 more go on (the best of them): elimination is not decided by noise."""
    right = {0: [1, 1, 1], 1: [1, 1, 1], 2: [1, 1, 0], 3: [1, 0, 1], 4: [0, 1, 1], 5: [0, 0, 1], 6: [0, 0, 0],
             7: [0, 0, 0], 8: [0, 0, 0]}
    halving = SuccessiveHalving(9, 9, eta=3, min_instances=3)
    recorder = Recorder(lambda config, instance: float(right[config][instance]) if instance < 3 else 1.0)

    halving.run(recorder)

    promoted = sorted(recorder.instances_of(1))
    assert promoted == [0, 1, 2, 3, 4]  # the top 3, and 2 more tied with config 2 (same score)
    assert 5 not in promoted  # 1 of 3 vs 2 of 3: tied too, but the room for ties is full


def test_a_plan_that_cannot_pay_for_ties_promotes_the_rungs_own_count_only() -> None:
    right = {0: [1, 1, 1], 1: [1, 1, 1], 2: [1, 1, 0], 3: [1, 0, 1], 4: [0, 1, 1], 5: [0, 0, 1], 6: [0, 0, 0],
             7: [0, 0, 0], 8: [0, 0, 0]}
    halving = SuccessiveHalving(9, 9, eta=3, min_instances=3, ties=0.0)
    recorder = Recorder(lambda config, instance: float(right[config][instance]) if instance < 3 else 1.0)

    halving.run(recorder)

    assert sorted(recorder.instances_of(1)) == [0, 1, 2]  # the same results as above, no room for the ties


def test_a_config_significantly_worse_than_the_cut_off_is_eliminated() -> None:
    halving = SuccessiveHalving(4, 24, eta=2, min_instances=12)
    recorder = Recorder(lambda config, instance: 0.0 if config >= 2 else 1.0)

    halving.run(recorder)

    assert sorted(recorder.instances_of(1)) == [0, 1]  # 12 instances: 1.0 vs 0.0 everywhere is no tie
