"""The gate's judgement (search/judge.py) and the sign of a metric's direction (search/direction.py), without a
session: the same evaluations give the same verdict, the threshold and the lock decide in that order, and a
re-score never lowers a lock unless asked."""

from __future__ import annotations

import pytest

from pytest_llmtune.search.direction import Direction
from pytest_llmtune.search.evaluation import Evaluation
from pytest_llmtune.search.judge import LOWER, OK, THRESHOLD, WORSE, judge
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.usage import Tally, Usage

SPACE = SearchSpace({"prompt": "p"})


def passes(*outcomes: bool) -> dict[str, list[Evaluation]]:
    """Instance i passed or missed: a pass rate's evaluations, one sample each."""
    return {f"i{n}": [Evaluation(float(ok), ok, Usage(replay=Tally(1, 10, 2, 0.001)), 0.001,
                                 miss=None if ok else "wrong")]
            for n, ok in enumerate(outcomes)}


def locked_from(evaluations: dict[str, list[Evaluation]]) -> dict[str, float]:
    return {key: found[0].metric for key, found in evaluations.items()}


def test_direction_orders_and_compares_both_ways() -> None:
    up, down = Direction("max"), Direction("min")

    assert sorted([0.2, 0.9, 0.5], key=up.ahead) == [0.9, 0.5, 0.2]
    assert sorted([0.2, 0.9, 0.5], key=down.ahead) == [0.2, 0.5, 0.9]
    assert up.beats(0.8, 0.8) and up.beats(0.79, 0.8, tolerance=0.01) and not up.beats(0.7, 0.8)
    assert down.beats(0.7, 0.8) and not down.beats(0.9, 0.8)
    assert up.gain(0.9, 0.8) == pytest.approx(0.1) and down.gain(0.9, 0.8) == pytest.approx(-0.1)
    with pytest.raises(ValueError, match="'max' or 'min'"):
        Direction("avg")


def test_an_unchanged_replay_is_ok_and_counts_what_it_judged() -> None:
    found = passes(*[True] * 15, *[False] * 5)

    judgement = judge(found, EvalSpec(space=SPACE, threshold=0.6), locked_results=locked_from(found),
                      locked_score=0.75, alpha=0.05, margin=0.0, replayed=set(found))

    assert judgement.decided == OK and judgement.passed
    assert judgement.score == 0.75 and judgement.misses == 5 and judgement.instances == 20
    assert judgement.tokens == 20 * 12 and judgement.cost == pytest.approx(0.02)
    assert judgement.interval is not None and judgement.interval[0] < 0.75 < judgement.interval[1]


def test_a_changed_replay_is_worse_exactly_and_the_threshold_decides_first() -> None:
    locked = passes(*[True] * 20)
    now = passes(*[True] * 18, False, False)  # two replayed instances changed: a change of code, no noise

    worse = judge(now, EvalSpec(space=SPACE, threshold=0.5), locked_results=locked_from(locked), locked_score=1.0,
                  alpha=0.05, margin=0.0, replayed=set(now))
    below = judge(now, EvalSpec(space=SPACE, threshold=0.95), locked_results=locked_from(locked), locked_score=1.0,
                  alpha=0.05, margin=0.0, replayed=set(now))

    assert worse.decided == WORSE and worse.drift.worse
    assert below.decided == THRESHOLD  # both fail; the threshold is what the message names


def test_the_lower_bound_judges_the_threshold_when_asked() -> None:
    found = passes(*[True] * 8, *[False] * 2)
    spec = EvalSpec(space=SPACE, threshold=0.7)

    by_score = judge(found, spec, locked_results=locked_from(found), locked_score=0.8, alpha=0.05, margin=0.0,
                     replayed=set(found))
    by_bound = judge(found, spec, locked_results=locked_from(found), locked_score=0.8, alpha=0.05, margin=0.0,
                     replayed=set(found), threshold_on="lower")

    assert by_score.decided == OK and not by_score.by_bound
    assert by_bound.decided == THRESHOLD and by_bound.by_bound  # 0.8 on 10 instances: its lower bound is < 0.7


def test_a_re_score_below_the_lock_is_refused_unless_accepted() -> None:
    locked = passes(*[True] * 10)
    now = passes(*[True] * 9, False)  # sampled anew: within noise, but lower

    refused = judge(now, EvalSpec(space=SPACE), locked_results=locked_from(locked), locked_score=1.0, alpha=0.05,
                    margin=0.0, rescoring=True)
    accepted = judge(now, EvalSpec(space=SPACE), locked_results=locked_from(locked), locked_score=1.0, alpha=0.05,
                     margin=0.0, rescoring=True, accept_lower=True)

    assert refused.decided == LOWER and refused.lower
    assert accepted.decided == OK and accepted.lower


def test_a_metric_to_minimise_is_judged_the_other_way() -> None:
    def latency(*values: float) -> dict[str, list[Evaluation]]:
        return {f"i{n}": [Evaluation(v, True, Usage())] for n, v in enumerate(values)}

    locked = latency(*[1.0] * 12)
    spec = EvalSpec(space=SPACE, metric="seconds", mode="min", threshold=2.0)

    faster = judge(latency(*[0.5] * 12), spec, locked_results=locked_from(locked), locked_score=1.0, alpha=0.05,
                   margin=0.0, replayed={f"i{n}" for n in range(12)})
    slower = judge(latency(*[1.5] * 12), spec, locked_results=locked_from(locked), locked_score=1.0, alpha=0.05,
                   margin=0.0, replayed={f"i{n}" for n in range(12)})

    assert faster.decided == OK and not faster.lower
    assert slower.decided == WORSE and slower.lower
