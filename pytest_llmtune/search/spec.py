"""What an `@llm_eval` marker says: the space, how to score an instance, how to combine the scores."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.search.budget import Budget
from pytest_llmtune.search.direction import MODES, Direction
from pytest_llmtune.search.judge_config import JudgeConfig
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.stats import Aggregate, resolve_agg

__all__ = ["HOLDOUT_FROM", "STRATEGIES", "EvalSpec", "MetricError"]

PASS_RATE = "pass_rate"
# halving: successive halving over the instances; random: every drawn config on every instance; grid: every
# config of a discrete space on every instance
STRATEGIES = ("halving", "random", "grid")
# The default held-out share: a quarter of the instances, once there are 40. Fewer, and the held-out interval is
# too wide to tell anything (10 pass/fail instances: about +-0.3) while the search loses instances it needs.
HOLDOUT_FRACTION, HOLDOUT_FROM = 0.25, 40


class MetricError(LlmtuneError):
    """A test returned something its `metric` cannot be read from."""


@dataclass(frozen=True)
class EvalSpec:
    """A validated `@llm_eval(...)`; see `pytest_llmtune.llm_eval` for the arguments."""

    space: SearchSpace
    metric: str | None = None
    mode: str = "max"
    threshold: float | None = None
    name: str | None = None
    seed: int = 0
    agg: str | Aggregate = "mean"
    num_samples: int | None = None
    inference_budget: Budget | None = None
    optimization_budget: Budget | None = None
    strategy: str | None = None  # None: the ini setting llmtune_strategy
    holdout: float | int | None = None  # None: HOLDOUT_FRACTION once there are HOLDOUT_FROM instances
    select: str = "best"  # or "cheapest": the cheapest complete config not significantly worse than the best
    cascade: Callable[[Mapping[str, Any], Any], bool] | None = None  # accept(context, response): cascades are tuned
    max_stages: int = 3
    judge: JudgeConfig | None = None  # llm.judge's model (None: the ini llmtune_judge_model)

    def __post_init__(self) -> None:
        __tracebackhide__ = True
        if self.cascade is not None and not callable(self.cascade):
            raise ValueError(f"llm_eval(cascade={self.cascade!r}): give the check accept(context, response) -> bool "
                             "that the application runs without ground truth (create()'s filter_func)")
        if isinstance(self.max_stages, bool) or not isinstance(self.max_stages, int) or self.max_stages < 2:
            raise ValueError(f"llm_eval(max_stages={self.max_stages!r}): a cascade has at least 2 stages; give an "
                             "int >= 2")
        if self.cascade is not None and self.space.dims == 0:
            raise ValueError("llm_eval(cascade=...) over a space of one config: a cascade needs configs to "
                             "choose its stages from; give the space a domain (e.g. temperature, n or the model)")
        if self.holdout is not None and not (
                (isinstance(self.holdout, int) and not isinstance(self.holdout, bool) and self.holdout >= 0)
                or (isinstance(self.holdout, float) and 0 <= self.holdout < 1)):
            raise ValueError(f"llm_eval(holdout={self.holdout!r}): give a fraction in [0, 1) or a count >= 0 of "
                             "the instances to keep from the search")
        if self.select not in ("best", "cheapest"):
            raise ValueError(f"llm_eval(select={self.select!r}): use 'best' or 'cheapest'")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ValueError(f"llm_eval(strategy={self.strategy!r}): use one of {', '.join(map(repr, STRATEGIES))}")
        if self.strategy == "grid":
            self.space.grid()  # a continuous or huge space fails here, at collection
        if self.mode not in MODES:
            raise ValueError(f"llm_eval(mode={self.mode!r}): use 'max' or 'min'")
        if self.threshold is not None and not _is_number(self.threshold):
            raise ValueError(f"llm_eval(threshold={self.threshold!r}): give a number, or None for no threshold")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"llm_eval(seed={self.seed!r}): give an int")
        if self.num_samples is not None and (not isinstance(self.num_samples, int) or self.num_samples < -1
                                             or self.num_samples == 0):
            raise ValueError(f"llm_eval(num_samples={self.num_samples!r}): give an int >= 1, or -1 to sample "
                             "until the optimization_budget is spent")
        if self.num_samples == -1 and self.optimization_budget is None:
            raise ValueError("llm_eval(num_samples=-1) samples until the optimization_budget is spent: give one")
        resolve_agg(self.agg)

    def held_out_count(self, instances: int) -> int:
        """How many of `instances` are kept from the search and score its finalists at the end."""
        if self.holdout is None:
            count = int(instances * HOLDOUT_FRACTION) if instances >= HOLDOUT_FROM else 0
        elif isinstance(self.holdout, float):
            count = round(instances * self.holdout)
        else:
            count = self.holdout
        if count >= instances:
            raise ValueError(f"llm_eval(holdout={self.holdout!r}) keeps {count} of {instances} instances from the "
                             "search: it needs at least one")
        return count

    @property
    def direction(self) -> Direction:
        return Direction(self.mode)

    @property
    def metric_name(self) -> str:
        return self.metric or PASS_RATE

    @property
    def agg_name(self) -> str:
        return self.agg if isinstance(self.agg, str) else getattr(self.agg, "__qualname__", repr(self.agg))

    def metric_of(self, returned: Any) -> float:
        """The instance's metric from what a passing test returned."""
        if self.metric is None:
            return 1.0
        if not isinstance(returned, Mapping) or not _is_number(returned.get(self.metric)):
            raise MetricError(
                f"the test returned {returned!r}, but metric={self.metric!r} needs it to return a dict "
                f"with a number under {self.metric!r}"
            )
        return float(returned[self.metric])

    def miss_value(self, message: str) -> float:
        """The metric of an instance whose assertion failed: 0, the worst a pass rate or a max-metric gets."""
        if self.direction.sign < 0 and self.metric is not None:
            raise MetricError(
                f"an assertion failed ({message}), and with mode='min' no value can stand for a failure: "
                f"return {{{self.metric!r}: ...}} instead of asserting"
            )
        return 0.0

    def beats(self, score: float, reference: float, tolerance: float = 0.0) -> bool:
        """Whether `score` is no worse than `reference` less `tolerance`, in this spec's direction."""
        return self.direction.beats(score, reference, tolerance)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
