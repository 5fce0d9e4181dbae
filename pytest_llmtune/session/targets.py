"""Targets: the parametrized instances of one `@llm_eval` test function, and their fingerprints."""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_llmtune.search.domains import describe
from pytest_llmtune.search.space import fingerprint
from pytest_llmtune.search.spec import EvalSpec

__all__ = ["Target", "collect_targets", "spec_of", "call_kwargs"]

MARKER = "llm_eval"


@dataclass
class Target:
    name: str
    spec: EvalSpec
    items: list[pytest.Function] = field(default_factory=list)

    def fingerprints(self) -> dict[str, str]:
        return {
            "space": self.spec.space.fingerprint(),
            "instances": instances_fingerprint(self.items),
            "source": source_fingerprint(self.items[0]),
        }

    def shuffled(self) -> list[pytest.Function]:
        """The instances in the seeded order the search uses, so that rungs are not biased by parametrize order."""
        items = list(self.items)
        random.Random(self.spec.seed).shuffle(items)
        return items


def spec_of(item: pytest.Item) -> EvalSpec | None:
    marker = item.get_closest_marker(MARKER)
    if marker is None:
        return None
    if len(marker.args) != 1 or not isinstance(marker.args[0], EvalSpec) or marker.kwargs:
        raise pytest.UsageError(
            f"{item.nodeid}: mark it with @llm_eval(space=...) from pytest_llmtune, not @pytest.mark.llm_eval"
        )
    return marker.args[0]


def target_name(item: pytest.Item, spec: EvalSpec) -> str:
    return spec.name or item.nodeid.split("[", 1)[0]


def collect_targets(items: Sequence[pytest.Item]) -> dict[str, Target]:
    targets: dict[str, Target] = {}
    for item in items:
        spec = spec_of(item)
        if spec is None or not isinstance(item, pytest.Function):
            continue
        name = target_name(item, spec)
        targets.setdefault(name, Target(name, spec)).items.append(item)
    return targets


def instances_fingerprint(items: Sequence[pytest.Function]) -> str:
    params = [describe(getattr(item, "callspec", None) and item.callspec.params or {}) for item in items]
    return fingerprint(sorted(params, key=repr))


def source_fingerprint(item: pytest.Function) -> str:
    try:
        return fingerprint(inspect.getsource(item.function))
    except (OSError, TypeError):
        return fingerprint(item.nodeid)


def call_kwargs(item: pytest.Function) -> dict[str, Any]:
    """The arguments pytest would pass to the test function, from its set-up fixtures."""
    names = inspect.signature(item.obj).parameters
    return {name: item.funcargs[name] for name in names if name in item.funcargs}
