"""Candidate configs: scrambled Sobol points in the unit cube, mapped through the space.

A later bracket can draw part of its candidates in a box shrunk around the leaders so far (`around`): the same
quasi-random points, scaled into a cube of side `width` centred on each leader's point, so the search looks
more closely where it found good configs while the rest of its draws keep exploring the whole space.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from typing import Any

from scipy.stats import qmc

from pytest_llmtune.search.space import SearchSpace

__all__ = ["Candidate", "candidates", "distinct", "draw", "points"]

Candidate = tuple[dict[str, Any], tuple[float, ...]]  # a config and its point in the unit cube


def candidates(space: SearchSpace, num_samples: int, seed: int) -> list[dict[str, Any]]:
    """Up to `num_samples` distinct configs; the same seed gives the same configs in the same order.

    Points that map to a config already drawn (likely when the space is mostly `choice`) are dropped,
    so a small space yields fewer candidates rather than repeats.
    """
    return [config for config, _ in draw(space, num_samples, seed)]


def draw(space: SearchSpace, num_samples: int, seed: int, around: Sequence[Sequence[float]] = (),
         width: float = 1.0) -> list[Candidate]:
    """Distinct configs with their points: in the whole cube, or in cubes of side `width` around `around`."""
    if num_samples < 1:
        raise ValueError(f"The value of `num_samples` is {num_samples}, but must be `num_samples >= 1`")
    if space.dims == 0:
        return [(space.config_at([]), ())]
    return distinct(space, [coords for _, coords in points(space, num_samples, seed, around, width)])


def points(space: SearchSpace, num_samples: int, seed: int, around: Sequence[Sequence[float]] = (),
           width: float = 1.0) -> list[tuple[int, tuple[float, ...]]]:
    """`num_samples` Sobol points, each with the index of the centre (of `around`) it was drawn around (0 when
    none)."""
    sobol = qmc.Sobol(d=space.dims, scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance needs a power of 2; any count is fine here
        drawn = sobol.random(num_samples)
    found = []
    for number, point in enumerate(drawn):
        coords = [float(u) for u in point]
        if around:
            centre = around[number % len(around)]
            coords = [min(max(c + (u - 0.5) * width, 0.0), 1.0 - 1e-9) for c, u in zip(centre, coords, strict=True)]
        found.append((number % len(around) if around else 0, tuple(coords)))
    return found


def distinct(space: SearchSpace, found: Sequence[Sequence[float]]) -> list[Candidate]:
    """The configs at these points, each once (the first point that gives it)."""
    configs: dict[str, Candidate] = {}
    for coords in found:
        config = space.config_at(coords)
        configs.setdefault(json.dumps(config, sort_keys=True, default=repr), (config, tuple(coords)))
    return list(configs.values())
