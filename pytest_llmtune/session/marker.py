"""`@llm_eval(...)`: validates its arguments at import time and becomes the `llm_eval` marker."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from pytest_llmtune.llm.response import Response
from pytest_llmtune.search.budget import Budget
from pytest_llmtune.search.judge_config import JudgeConfig
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.search.stats import Aggregate

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
    inference_budget: float | str | None = None,
    optimization_budget: float | str | None = None,
    strategy: str | None = None,
    holdout: float | int | None = None,
    select: str = "best",
    cascade: Callable[[Mapping[str, Any], Response], bool] | None = None,
    max_stages: int = 3,
    judge: str | Mapping[str, Any] | None = None,
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
    num_samples: configs to draw (default: the ini setting llmtune_num_samples); -1 draws batches of them until
        the optimization_budget is spent.
    inference_budget: the most a config may cost per instance on average: dollars (0.002) or tokens ("300 tokens").
        A config whose n x max_tokens alone is over it is skipped unevaluated; one whose instances show, at 95%
        confidence, an average over it is dropped then.
    optimization_budget: the most the tune may spend on new requests, in dollars or tokens; replays are free.
    strategy: "halving" (successive halving over the instances), "random" (every drawn config on every
        instance) or "grid" (every config of a discrete space on every instance); default: the ini setting
        llmtune_strategy, "halving".
    holdout: instances kept from the search (a fraction, or a count); its finalists are scored on them at the
        end, and the lock records that held-out score beside the tuning score. Default: a quarter of the
        instances once there are 40 or more, else none.
    select: "best" locks the best config scored on every instance; "cheapest" the cheapest of those whose
        paired comparison with the best, on the same instances, cannot call it worse (95% interval).
    cascade: `accept(context, response) -> bool`, a check the application can run without ground truth (the
        `filter_func` of `create()`): the tune also composes cascades of up to `max_stages` configs, cheap first,
        each call moving to the next stage when `accept` rejects an answer, and may lock one (docs/cascades.md).
    max_stages: the most stages a cascade has (at least 2).
    judge: the model of `llm.judge` (a name, or a dict with model, api and max_tokens; temperature is always 0),
        default the ini setting llmtune_judge_model (docs/judge.md).
    """
    __tracebackhide__ = True  # a bad space is the user's line, not ours
    spec = EvalSpec(space=SearchSpace(space), metric=metric, mode=mode, threshold=threshold, name=name,
                    seed=seed, agg=agg, num_samples=num_samples,
                    inference_budget=_budget(inference_budget, "inference_budget"),
                    optimization_budget=_budget(optimization_budget, "optimization_budget"), strategy=strategy,
                    holdout=holdout, select=select, cascade=cascade, max_stages=max_stages,
                    judge=None if judge is None else JudgeConfig.of(judge))
    return pytest.mark.llm_eval(spec)


def _budget(value: float | str | None, name: str) -> Budget | None:
    __tracebackhide__ = True
    return None if value is None else Budget.parse(value, name)
