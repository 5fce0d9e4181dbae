"""Aggregates and confidence intervals of per-instance metrics."""

from __future__ import annotations

import math
import re
import statistics

import pytest

from pytest_llmtune.search.stats import aggregate, drift, interval, paired_difference, resolve_agg

SCORES = [0.2, 0.4, 0.6, 0.5, 0.3]


def width(bounds: tuple[float, float] | None) -> float:
    assert bounds is not None
    return bounds[1] - bounds[0]


# interval: pass/fail data (Wilson)


def test_wilson_interval_for_8_of_10_matches_the_textbook_value() -> None:
    assert interval([1.0] * 8 + [0.0] * 2) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_wilson_interval_for_all_passes_reaches_one_and_is_not_a_point() -> None:
    low, high = interval([1.0] * 10) or (math.nan, math.nan)

    assert low == pytest.approx(0.7225, abs=1e-4)
    assert high == pytest.approx(1.0)


def test_wilson_interval_for_all_failures_starts_at_zero() -> None:
    assert interval([0.0] * 10) == pytest.approx((0.0, 0.2775), abs=1e-4)


def test_wilson_interval_is_defined_for_a_single_pass() -> None:
    assert interval([1.0]) == pytest.approx((0.2065, 1.0), abs=1e-4)


def test_wilson_interval_at_99_percent_is_wider() -> None:
    data = [1.0] * 8 + [0.0] * 2

    assert width(interval(data, confidence=0.99)) > width(interval(data))


def test_wilson_interval_treats_bools_as_pass_fail() -> None:
    assert interval([True] * 8 + [False] * 2) == pytest.approx((0.4902, 0.9433), abs=1e-4)


# interval: other metrics (Student's t)


def test_t_interval_contains_the_mean() -> None:
    low, high = interval(SCORES) or (math.nan, math.nan)

    assert low < statistics.fmean(SCORES) < high


def test_t_interval_matches_the_textbook_value() -> None:
    # mean 0.4, sd 0.1581, t(0.975, 4) = 2.7764: half-width 0.1963
    assert interval(SCORES) == pytest.approx((0.2037, 0.5963), abs=1e-4)


def test_t_interval_narrows_with_more_data() -> None:
    assert width(interval(SCORES * 4)) < width(interval(SCORES))


def test_t_interval_is_none_for_one_value() -> None:
    assert interval([0.5]) is None


def test_interval_is_none_for_no_values() -> None:
    assert interval([]) is None


# aggregates


def test_aggregate_mean() -> None:
    assert aggregate([1.0, 2.0, 6.0]) == 3.0


def test_aggregate_median() -> None:
    assert aggregate([1.0, 2.0, 6.0], "median") == 2.0


def test_aggregate_accepts_a_callable() -> None:
    assert aggregate([1.0, 2.0, 6.0], min) == 1.0


def test_aggregate_of_nothing_is_nan() -> None:
    assert math.isnan(aggregate([]))


def test_resolve_agg_names_the_allowed_values() -> None:
    message = "agg='avg': use 'mean', 'median' or a callable taking the list of per-instance metrics"

    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_agg("avg")


def test_resolve_agg_returns_a_callable_as_is() -> None:
    assert resolve_agg(max) is max


# paired_difference


def test_paired_difference_is_the_mean_difference_with_its_interval() -> None:
    mean, bounds = paired_difference([0.9, 0.8, 0.7, 0.9], [0.5, 0.6, 0.5, 0.4])

    assert mean == pytest.approx(0.325)
    assert bounds is not None
    assert bounds[0] < 0.325 < bounds[1]
    assert bounds[0] > 0  # a consistent improvement is distinguishable from zero


def test_paired_difference_interval_spans_zero_for_noise() -> None:
    _, bounds = paired_difference([1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0])

    assert bounds is not None
    assert bounds[0] < 0 < bounds[1]


def test_paired_difference_of_a_constant_shift_is_a_point() -> None:
    mean, bounds = paired_difference([1.0, 2.0, 3.0], [0.5, 1.5, 2.5])

    assert mean == 0.5
    assert bounds == pytest.approx((0.5, 0.5))


def test_paired_difference_has_no_interval_for_one_instance() -> None:
    assert paired_difference([1.0], [0.0]) == (1.0, None)


def test_paired_difference_of_no_instances_is_nan() -> None:
    mean, bounds = paired_difference([], [])

    assert math.isnan(mean)
    assert bounds is None


def test_paired_difference_refuses_unpaired_lists() -> None:
    with pytest.raises(ValueError):
        paired_difference([1.0, 2.0], [1.0])


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


def test_drift_words_give_the_difference_its_interval_and_the_p_value() -> None:
    locked = [1.0] * 20
    result = drift(_samples([[0.0]] * 10 + [[1.0]] * 10), _ids(locked), 1.0)

    assert re.fullmatch(r"difference -0\.500 \[-0\.\d{3}, -0\.\d{3}\] \(90%\), p = \S+ \(one-sided, paired on 20 "
                        r"instances, alpha 0\.05\)", result.words()), result.words()
    assert result.interval is not None and result.interval[1] < 0


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
