"""`@llm_eval(...)`: validates its arguments at import time and becomes the `llm_eval` marker."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from pytest_llmtune.space import SearchSpace
from pytest_llmtune.spec import EvalSpec
from pytest_llmtune.stats import Aggregate

__all__ = ["llm_eval"]


def llm_eval(
    space: Mapping[str, Any],
    *,
    metric: str | None = None,
    mode: str = "max",
    threshold: float | None = None,
    name: str | None = None,
    seed: int = 0,
    agg: str | Aggregate = "mean",
    num_samples: int | None = None,
) -> pytest.MarkDecorator:
    """Mark a parametrized test as the evaluation function of an LLM feature.

    space: request fields (model, prompt or messages, temperature, top_p, max_tokens, n, stop, ...) mapped to
        constants or domains (`choice`, `uniform`, ...). Fields left out are not tuned.
    metric: None scores an instance 1 when the test passes and 0 when an assertion fails (the pass rate);
        a name reads that number from the dict the test returns.
    mode: "max" or "min" the metric.
    threshold: `pytest --llm-test` fails when the target's score is below it.
    name: the target's name in the lockfile; default the test's node id without parameters.
    seed: seeds the candidate configs and the order of instances.
    agg: how per-instance metrics combine: "mean", "median" or a callable on the list.
    num_samples: configs to draw (default: the ini setting llmtune_num_samples).
    """
    __tracebackhide__ = True  # a bad space is the user's line, not ours
    spec = EvalSpec(space=SearchSpace(space), metric=metric, mode=mode, threshold=threshold, name=name,
                    seed=seed, agg=agg, num_samples=num_samples)
    return pytest.mark.llm_eval(spec)
