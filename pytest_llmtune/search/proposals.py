"""Model-based proposals (BOHB, Falkner et al. 2018): once enough configs have results on the same instances,
new candidates come from where good configs lie.

The configs scored on the most instances that still number at least MIN_POINTS are split into the good (the best
GOOD_SHARE, at least 2) and the others; each set is a kernel density in the unit cube (a product of Gaussians
per dimension, Scott's bandwidth, at least MIN_BANDWIDTH). Candidates are drawn around good points (their
bandwidth widened by WIDEN, as BOHB does) and the ones with the highest ratio l(x) / g(x) of the two densities are
proposed. Pure and seeded: the same results and seed give the same proposals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["GOOD_SHARE", "MIN_POINTS", "DensityModel", "Observation", "fit_model"]

GOOD_SHARE = 0.25  # of the configs compared, the share that counts as good
MIN_POINTS = 6  # configs on the same instances before a model is fitted
MIN_BANDWIDTH = 0.05  # in the unit cube: a density never narrower than this
WIDEN = 3.0  # candidates are drawn this many bandwidths wide around good points
DRAWS = 64  # candidates drawn from the good density, of which the best ratios are proposed


@dataclass(frozen=True)
class Observation:
    """A config's point in the unit cube and its metric per instance (the instances it was scored on)."""

    point: tuple[float, ...]
    metrics: dict[int, float]


@dataclass(frozen=True)
class DensityModel:
    good: np.ndarray  # points x dims
    bad: np.ndarray
    good_width: np.ndarray  # per dimension
    bad_width: np.ndarray

    def propose(self, count: int, seed: int) -> list[tuple[float, ...]]:
        """`count` points, best ratio l(x) / g(x) first, drawn around the good points."""
        if count < 1:
            return []
        rng = np.random.default_rng(seed)
        centres = self.good[rng.integers(len(self.good), size=DRAWS)]
        drawn = np.clip(centres + rng.normal(size=centres.shape) * self.good_width * WIDEN, 0.0, 1.0 - 1e-9)
        ratio = _log_density(drawn, self.good, self.good_width) - _log_density(drawn, self.bad, self.bad_width)
        order = np.argsort(-ratio, kind="stable")
        return [tuple(float(u) for u in drawn[i]) for i in order[:count]]


def fit_model(observations: Sequence[Observation], sign: float) -> DensityModel | None:
    """The density model of what was observed (`sign` 1 when higher is better, -1 when lower), or None while too
    few configs share enough instances."""
    dims = len(observations[0].point) if observations else 0
    if dims == 0:
        return None
    counts = sorted({len(o.metrics) for o in observations}, reverse=True)
    for size in counts:  # the most instances that MIN_POINTS configs were all scored on (rungs are prefixes)
        compared = [o for o in observations if len(o.metrics) >= size]
        if len(compared) >= MIN_POINTS:
            break
    else:
        return None
    scored = sorted(compared, key=lambda o: -sign * _mean_on_first(o.metrics, size))
    good_count = max(2, math.ceil(GOOD_SHARE * len(scored)))
    good = np.array([o.point for o in scored[:good_count]], dtype=float)
    bad = np.array([o.point for o in scored[good_count:]], dtype=float)
    return DensityModel(good, bad, _bandwidth(good), _bandwidth(bad))


def _mean_on_first(metrics: dict[int, float], size: int) -> float:
    first = sorted(metrics)[:size]
    return sum(metrics[i] for i in first) / len(first)


def _bandwidth(points: np.ndarray) -> np.ndarray:
    """Scott's rule per dimension, never under MIN_BANDWIDTH."""
    count, dims = points.shape
    spread = points.std(axis=0) if count > 1 else np.zeros(dims)
    width: np.ndarray = np.maximum(spread * count ** (-1.0 / (dims + 4)), MIN_BANDWIDTH)
    return width


def _log_density(at: np.ndarray, points: np.ndarray, width: np.ndarray) -> np.ndarray:
    """The log of a product-Gaussian kernel density of `points`, at each row of `at`."""
    scaled = (at[:, None, :] - points[None, :, :]) / width
    log_kernels = -0.5 * (scaled**2).sum(axis=2) - np.log(width).sum() - 0.5 * len(width) * math.log(2 * math.pi)
    top = log_kernels.max(axis=1, keepdims=True)
    density: np.ndarray = (top + np.log(np.exp(log_kernels - top).mean(axis=1, keepdims=True)))[:, 0]
    return density
