"""The gate's judgement (search/drift.py): replayed instances compared exactly, sampled ones by a permutation test
whose printed bound is the inversion of the same test."""

from __future__ import annotations

import random
import re
import statistics

import pytest

from pytest_llmtune.search.drift import drift

# the live check's test: new samples per instance against the lock's one result per instance


def _ids(values: list[float]) -> dict[str, float]:
    return {f"i{index}": value for index, value in enumerate(values)}


def _samples(values: list[list[float]]) -> dict[str, list[float]]:
    return {f"i{index}": value for index, value in enumerate(values)}


def test_drift_of_the_very_results_the_lock_holds_is_no_drift() -> None:
    locked = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0]

    result = drift(_samples([[value] for value in locked]), _ids(locked), statistics.fmean(locked))

    assert (result.difference, result.p_value, result.worse) == (0.0, 1.0, False)
    assert result.words() == "all 6 results as locked"


@pytest.mark.parametrize(("worse", "better"), [(10, 0), (9, 1), (8, 2), (7, 3), (5, 5)])
def test_drift_on_pass_fail_with_one_sample_is_the_exact_sign_test_on_the_discordant_instances(
        worse: int, better: int) -> None:
    """With one new sample per instance, only instances whose result flipped carry information, and under no drift
    each flip is a fair coin: the permutation p-value is McNemar's exact one-sided p-value, whatever the number of
    unchanged instances."""
    from scipy.stats import binomtest

    locked = [1.0] * worse + [0.0] * better + [1.0] * 15 + [0.0] * 5
    new = [[0.0]] * worse + [[1.0]] * better + [[1.0]] * 15 + [[0.0]] * 5

    result = drift(_samples(new), _ids(locked), statistics.fmean(locked))

    exact = binomtest(worse, worse + better, 0.5, alternative="greater").pvalue
    assert result.p_value == pytest.approx(exact, abs=0.01)
    assert result.worse == (exact < 0.05)
    assert result.paired == result.instances == 30
    assert result.difference == pytest.approx((better - worse) / 30)


def test_drift_is_seeded_the_same_results_give_the_same_p_value() -> None:
    locked = _ids([1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0] * 3)
    new = _samples([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]] * 3)

    assert drift(new, locked, 0.75).p_value == drift(new, locked, 0.75).p_value


def test_drift_in_mode_min_calls_a_higher_metric_worse() -> None:
    locked = [1.0, 2.0, 1.5, 1.0, 2.0, 1.5, 1.0, 2.0] * 2
    higher = [[value + 1.0] for value in locked]

    assert drift(_samples(higher), _ids(locked), statistics.fmean(locked), mode="min").worse
    assert not drift(_samples(higher), _ids(locked), statistics.fmean(locked), mode="max").worse


def test_drift_smaller_than_the_margin_does_not_fail() -> None:
    locked = [1.0] * 40
    dropped = [[0.0]] * 6 + [[1.0]] * 34  # 0.15 worse, every change a loss

    assert drift(_samples(dropped), _ids(locked), 1.0).worse
    within = drift(_samples(dropped), _ids(locked), 1.0, margin=0.3)
    assert not within.worse
    assert "margin 0.3" in within.words()


def test_drift_uses_every_sample_of_an_instance() -> None:
    """Repeats add power: two losses in three samples per instance read as a drop one sample would not show."""
    locked = [1.0] * 12
    one = _samples([[0.0]] * 4 + [[1.0]] * 8)
    three = _samples([[0.0, 0.0, 1.0]] * 4 + [[1.0, 0.0, 1.0]] * 8)

    assert drift(three, _ids(locked), 1.0).p_value < drift(one, _ids(locked), 1.0).p_value
    assert drift(three, _ids(locked), 1.0).difference == pytest.approx(-(4 * 2 + 8) / 36)


def test_drift_words_give_the_difference_the_bound_of_the_same_test_and_the_p_value() -> None:
    locked = [1.0] * 20
    result = drift(_samples([[0.0]] * 10 + [[1.0]] * 10), _ids(locked), 1.0)

    assert re.fullmatch(r"difference -0\.500, at most -0\.\d{3} \(one-sided 95% bound\), p = \S+ \(one-sided, paired "
                        r"on 20 instances with new samples, alpha 0\.05\)", result.words()), result.words()
    assert result.bound is not None and result.bound < 0


def test_drift_without_per_instance_results_in_the_lock_tests_against_the_locked_score() -> None:
    new = _samples([[0.0]] * 12 + [[1.0]] * 8)

    result = drift(new, {}, 0.9)

    assert result.paired == 0 and result.instances == 20
    assert result.worse and result.p_value < 0.001
    assert "against the locked score (no per-instance results in the lock)" in result.words()
    assert not drift(new, {}, 0.4).worse


def test_drift_pairs_only_the_instances_both_have() -> None:
    locked = {"a": 1.0, "b": 0.0, "gone": 1.0}
    new = {"a": [1.0], "b": [0.0], "added": [0.0]}

    result = drift(new, locked, 2 / 3)

    assert (result.paired, result.instances, result.worse) == (2, 3, False)


def test_drift_says_when_the_lock_kept_results_of_other_instances_only() -> None:
    result = drift({"new": [0.0], "other": [1.0]}, {"renamed": 1.0}, 0.9)

    assert result.paired == 0
    assert "none of the lock's per-instance results is of these instances" in result.words()


def test_replayed_instances_that_score_lower_are_a_change_of_the_code_whatever_the_p_value() -> None:
    """Three of forty replayed, byte-identical responses now fail: no noise can explain it, so it is worse, where a
    permutation test of the same data (p = 0.125) would call it noise."""
    locked = _ids([1.0] * 40)
    new = _samples([[0.0]] * 3 + [[1.0]] * 37)

    exact = drift(new, locked, 1.0, replayed=set(locked))
    sampled = drift(new, locked, 1.0)

    assert exact.worse and exact.code_worse and exact.changed == ("i0", "i1", "i2")
    assert exact.code_difference == pytest.approx(-0.075)
    assert "40 replayed instances compared exactly: 3 score lower on the same responses (i0, i1, i2)" in exact.words()
    assert not sampled.worse and sampled.p_value > 0.05


def test_a_code_change_within_the_margin_passes() -> None:
    locked = _ids([1.0] * 40)
    new = _samples([[0.0]] * 3 + [[1.0]] * 37)

    assert not drift(new, locked, 1.0, replayed=set(locked), margin=0.1).worse
    assert drift(new, locked, 1.0, replayed=set(locked), margin=0.07).worse


def test_replayed_and_sampled_instances_are_judged_apart() -> None:
    locked = _ids([1.0] * 20)
    new = _samples([[1.0]] * 10 + [[0.0]] * 3 + [[1.0]] * 7)  # the first ten replayed, as locked

    result = drift(new, locked, 1.0, replayed={f"i{k}" for k in range(10)})

    assert (result.replayed, result.sampled, result.changed) == (10, 10, ())
    assert result.sampled_difference == pytest.approx(-0.3)
    assert result.words().startswith("10 replayed instances compared exactly: as locked; difference -0.300")


@pytest.mark.parametrize("seed", range(12))
def test_the_printed_bound_agrees_with_the_decision_at_every_margin(seed: int) -> None:
    """worse at margin m <=> the one-sided bound < -m: the interval shown is the one the decision used."""
    rng = random.Random(seed)
    size = rng.choice([8, 20, 40])
    locked = _ids([float(rng.random() < 0.8) for _ in range(size)])
    new = _samples([[float(rng.random() < rng.choice([0.5, 0.7, 0.8])) for _ in range(rng.choice([1, 3]))]
                    for _ in range(size)])
    for margin in (0.0, 0.05, 0.1, 0.2):
        result = drift(new, locked, statistics.fmean(locked.values()), margin=margin)
        if result.bound is not None:
            assert result.worse == (result.bound < -margin), (margin, result)
        else:
            assert not result.worse


def test_without_per_instance_results_the_bound_is_students_and_agrees_too() -> None:
    new = _samples([[0.0]] * 12 + [[1.0]] * 8)

    result = drift(new, {}, 0.6)

    assert result.bound is not None and result.worse == (result.bound < 0)
