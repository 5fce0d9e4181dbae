"""One target's search as the session poses it: the spec, the instances, how to search when the spec does not
say, and how to price a request. A frozen record: what changes while a tune runs lives elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.search.spec import EvalSpec

__all__ = ["Price", "TuneProblem", "may_sample", "sampled"]

Price = Callable[[str, float, float], float]  # dollars of (model, prompt tokens, completion tokens)


def sampled(config: Mapping[str, Any]) -> bool:
    """Whether the config's answers are samples, which a search picking the best of them flatters (a cascade's:
    those of any stage)."""
    if set(config) == {"cascade"}:
        return any(sampled(stage) for stage in config["cascade"])
    temperature = config.get("temperature", 1.0)
    return not isinstance(temperature, (int, float)) or temperature > 0


def may_sample(space: Mapping[str, Any]) -> bool:
    return sampled(space)  # a domain for temperature, or none (the API's default 1), may sample


@dataclass(frozen=True, kw_only=True)
class TuneProblem:
    spec: EvalSpec
    instances: int  # the instances the search tunes on
    held_out_count: int = 0  # more instances, kept from the search: its finalists are scored on them at the end
    num_samples: int = 16  # candidates a bracket draws, when the spec gives none
    eta: int = 3
    min_instances: int = 5
    strategy: str = "halving"  # when the spec gives none
    default_model: str | None = None  # put in every config whose space names none, so a lock names its model
    split_n: bool = False  # n samples go out as n requests: the prompt is paid for each
    price: Price = lambda model, prompt, completion: 0.0
    confirms: bool = True  # a winner whose answers are samples is confirmed with fresh ones (False: never)

    @property
    def chosen_strategy(self) -> str:
        return self.spec.strategy or self.strategy

    @property
    def one_rung(self) -> bool:
        """Every candidate on every instance (random and grid), not successive halving."""
        return self.chosen_strategy != "halving"

    @property
    def count(self) -> int:
        """Candidates a bracket draws."""
        return self.spec.num_samples if self.spec.num_samples not in (None, -1) else self.num_samples

    @property
    def confirm(self) -> int:
        """Instances of the winner's confirmation run, when its answers may be samples: all of them."""
        return self.instances + self.held_out_count if self.confirms and may_sample(self.spec.space.spec) else 0
