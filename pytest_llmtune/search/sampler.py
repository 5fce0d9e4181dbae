"""Candidate configs: scrambled Sobol points in the unit cube, mapped through the space."""

from __future__ import annotations

import json
import warnings
from typing import Any

from scipy.stats import qmc

from pytest_llmtune.search.space import SearchSpace

__all__ = ["candidates"]


def candidates(space: SearchSpace, num_samples: int, seed: int) -> list[dict[str, Any]]:
    """Up to `num_samples` distinct configs; the same seed gives the same configs in the same order.

    Points that map to a config already drawn (likely when the space is mostly `choice`) are dropped,
    so a small space yields fewer candidates rather than repeats.
    """
    if num_samples < 1:
        raise ValueError(f"The value of `num_samples` is {num_samples}, but must be `num_samples >= 1`")
    if space.dims == 0:
        return [space.config_at([])]
    sobol = qmc.Sobol(d=space.dims, scramble=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # balance needs a power of 2; any count is fine here
        points = sobol.random(num_samples)
    configs: dict[str, dict[str, Any]] = {}
    for point in points:
        config = space.config_at([float(u) for u in point])
        configs.setdefault(json.dumps(config, sort_keys=True, default=repr), config)
    return list(configs.values())
