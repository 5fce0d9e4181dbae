"""Model-based proposals (BOHB's densities): candidates come from where the good configs lie, the same seed gives
the same proposals, and no model is fitted before enough configs share instances."""

from __future__ import annotations

import random

from pytest_llmtune.search.proposals import MIN_POINTS, Observation, fit_model


def observations(count: int, instances: int = 10, seed: int = 0) -> list[Observation]:
    """Configs in the unit square whose pass rate is high near (0.8, 0.2) and low elsewhere."""
    rng = random.Random(seed)
    found = []
    for _ in range(count):
        point = (rng.random(), rng.random())
        good = abs(point[0] - 0.8) < 0.15 and abs(point[1] - 0.2) < 0.15
        found.append(Observation(point, {i: float(good or rng.random() < 0.1) for i in range(instances)}))
    found += [Observation((0.8, 0.2), dict.fromkeys(range(instances), 1.0)),
              Observation((0.78, 0.25), dict.fromkeys(range(instances), 1.0))]
    return found


def test_proposals_lie_where_the_good_configs_are_not_where_the_others_are() -> None:
    model = fit_model(observations(30), sign=1.0)

    assert model is not None
    proposed = model.propose(8, seed=3)
    assert len(proposed) == 8
    near = [p for p in proposed if abs(p[0] - 0.8) < 0.3 and abs(p[1] - 0.2) < 0.3]
    assert len(near) >= 6  # a uniform draw would put about 1 of 8 there
    assert all(0.0 <= u < 1.0 for p in proposed for u in p)


def test_lower_is_better_turns_the_model_around() -> None:
    model = fit_model(observations(30), sign=-1.0)

    assert model is not None
    assert sum(abs(p[0] - 0.8) < 0.15 and abs(p[1] - 0.2) < 0.15 for p in model.propose(8, seed=3)) <= 2


def test_the_same_results_and_seed_give_the_same_proposals() -> None:
    first, again = fit_model(observations(30), 1.0), fit_model(observations(30), 1.0)

    assert first is not None and again is not None
    assert first.propose(5, seed=11) == again.propose(5, seed=11)
    assert first.propose(5, seed=11) != first.propose(5, seed=12)


def test_no_model_until_enough_configs_were_scored_on_the_same_instances() -> None:
    few = observations(MIN_POINTS - 3)  # with the two good ones: MIN_POINTS - 1
    assert fit_model(few, 1.0) is None
    assert fit_model([], 1.0) is None

    # configs on different numbers of instances are compared on the most instances enough of them share
    mixed = [Observation(o.point, {i: v for i, v in o.metrics.items() if i < (10 if k < MIN_POINTS else 3)})
             for k, o in enumerate(observations(12))]
    assert fit_model(mixed, 1.0) is not None
