"""Aggregates and confidence intervals of per-instance metrics."""

from __future__ import annotations

import math
import re
import statistics

import pytest

from pytest_llmtune.search.stats import aggregate, interval, paired_difference, resolve_agg

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


def test_a_metrics_interval_contains_the_mean() -> None:
    low, high = interval(SCORES) or (math.nan, math.nan)

    assert low < statistics.fmean(SCORES) < high


def test_a_metrics_interval_is_close_to_students_where_that_one_fits_the_data() -> None:
    """Forty roughly normal values: the bootstrap and the textbook t interval agree to about a hundredth."""
    values = [0.5 + 0.1 * math.sin(k * 1.7) for k in range(40)]
    mean, half = statistics.fmean(values), 2.0227 * statistics.stdev(values) / math.sqrt(40)  # t(0.975, 39)

    assert interval(values) == pytest.approx((mean - half, mean + half), abs=0.01)


@pytest.mark.parametrize("values", [[1 / 3, 2 / 3, 1.0], [0.0, 0.0, 0.0, 0.5], [0.0, 0.5, 1.0, 0.5], [0.9, 1.0, 1.0]])
def test_a_metrics_interval_never_leaves_the_range_of_its_values(values: list[float]) -> None:
    """Student's t gave 0.667 [0.30, 1.03] for scores in [0, 1]: an interval no such mean can reach."""
    low, high = interval(values) or (math.nan, math.nan)

    assert min(values) <= low <= statistics.fmean(values) <= high <= max(values)


def test_a_metrics_interval_is_seeded() -> None:
    assert interval([0.1, 0.5, 0.25, 0.8, 0.3]) == interval([0.1, 0.5, 0.25, 0.8, 0.3])


def test_a_metrics_interval_narrows_with_more_data() -> None:
    assert width(interval(SCORES * 4)) < width(interval(SCORES))


def test_a_metrics_interval_is_none_for_one_value() -> None:
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


def test_a_metric_that_happens_to_be_all_zeros_or_ones_is_not_a_pass_rate() -> None:
    assert interval([0.0] * 4, binary=False) == (0.0, 0.0)
    assert interval([0.0] * 4, binary=True) == interval([0.0] * 4) == pytest.approx((0.0, 0.49), abs=0.01)
    low, high = interval([0.0, 1.0, 1.0, 0.0, 1.0], binary=False) or (math.nan, math.nan)
    assert 0.0 <= low < high <= 1.0
