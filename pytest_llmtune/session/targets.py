"""Targets: the instances of one `@llm_eval` test function, and the item that carries the target's verdict.

When a mode is on, each `@llm_eval` function collects one more item beside its instances,
`test_x[llmtune]`. It is the target: selecting it (by default, or by the function's node id, `-k`, `-m` or
`--lf`) tunes or gates the whole target on all of its instances, including instances deselected from their
own reports; deselecting it (`-k 'Russia'`, `test_x.py::test_x[Russia]`) leaves the target untuned or
ungated, and says so. Its outcome is the target's verdict, so junit, `--lf`, `-x` and xdist see it.
"""

from __future__ import annotations

import inspect
import json
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_llmtune.records import SUFFIX, TARGET_PROPERTY, VERDICT_PROPERTY, Verdict
from pytest_llmtune.search.domains import InvalidSpaceError, describe
from pytest_llmtune.search.judge_config import JudgeConfig
from pytest_llmtune.search.space import SearchSpace, fingerprint
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.store.fingerprints import code_fingerprints

__all__ = ["MARKER", "SUFFIX", "TARGET_PROPERTY", "VERDICT_PROPERTY", "Target", "TargetItem", "Verdict",
           "instance_fields", "instance_id", "judged", "spec_of", "target_name"]

MARKER = "llm_eval"


@dataclass
class Target:
    name: str
    spec: EvalSpec
    instances: list[pytest.Function] = field(default_factory=list)  # every instance collected, selected or not
    item: TargetItem | None = None

    @property
    def nodeid(self) -> str:
        """The test function's node id: `pytest --llm-tune <nodeid>` selects the whole target."""
        return self.instances[0].nodeid.split("[", 1)[0]

    def fingerprints(self, judge: JudgeConfig | None = None) -> dict[str, str]:
        """What decides the target's result (fingerprints.py); the lock is stale when one of them changed. `judge`:
        the target's `llm.judge` config, if it has one (a lock keeps it only when the body called the judge:
        `judged`)."""
        first = self.instances[0]
        try:  # demonstrations drawn from the instances: their fields decide what a prompt shows
            space = self.tuning_space().fingerprint()
        except (InvalidSpaceError, ValueError):
            space = self.spec.space.fingerprint()  # the tune refuses it, with the reason
        found = {
            "space": space,
            "instances": instances_fingerprint(self.instances),
            **code_fingerprints(first.function, first.config.rootpath),
        }
        if self.spec.cascade is not None:  # the check decides every cascade's outcome: its code, and how long
            accept = code_fingerprints(self.spec.cascade, first.config.rootpath)
            found.update({key: value for key, value in accept.items() if key != "body"})
            found["cascade"] = fingerprint(f"{accept['body']} max_stages={self.spec.max_stages}")
        if judge is not None:
            found["judge"] = judge.fingerprint()
        return found


    def tuning_space(self) -> SearchSpace:
        """The space the search draws from: demos() with no pool drawing from the tuning instances (the first of the
        shuffled order), a given pool without the held-out ones. Raises InvalidSpaceError when they cannot serve it,
        ValueError for a holdout that keeps every instance."""
        order = self.shuffled()
        tuning = len(order) - self.spec.held_out_count(len(order))
        return self.spec.space.bound([instance_fields(item) for item in order[:tuning]],
                                     [instance_fields(item) for item in order[tuning:]])

    def shuffled(self) -> list[pytest.Function]:
        """The instances in the seeded order the search uses, so that rungs are not biased by parametrize order."""
        items = list(self.instances)
        random.Random(self.spec.seed).shuffle(items)
        return items


class TargetItem(pytest.Item):
    """The verdict of one target, computed before this item runs (`BaseSession.pytest_runtest_protocol`)."""

    def __init__(self, *, target: Target, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.verdict: Verdict | None = None
        self.lineno: int | None = None

    def runtest(self) -> None:
        verdict = self.verdict
        if verdict is None:
            raise TargetError(f"{self.target.name} was not run: no llmtune mode computed its verdict")
        self.user_properties.extend([(VERDICT_PROPERTY, verdict.message.split("\n", 1)[0]), *verdict.properties])
        if verdict.outcome == "skipped":
            pytest.skip(verdict.message)
        if verdict.outcome == "failed":
            raise TargetError(verdict.message)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, TargetError):
            return str(excinfo.value)  # the verdict says what to do; our traceback would bury it
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, self.lineno, f"{self.name}: the verdict of {self.target.name}"


class TargetError(Exception):
    """A target's failing verdict (a gate below threshold, a stale lock, a search that failed)."""


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


def add_target_item(collected: list[Any], collector: pytest.Collector, name: str, obj: Any,
                    register: Callable[[Target], None]) -> None:
    """Append the target item to what pytest collected for one `@llm_eval` function."""
    instances = [node for node in collected if isinstance(node, pytest.Function)]
    if not instances:
        return
    spec = spec_of(instances[0])
    if spec is None:
        return
    target = Target(target_name(instances[0], spec), spec, instances)
    # the node id given as a string, so that pytest parses "[llmtune]" as parameters, as for the instances: --lf
    # and the cache then know the item
    item = TargetItem.from_parent(collector, name=name + SUFFIX, nodeid=f"{collector.nodeid}::{name}{SUFFIX}",
                                  target=target)
    item.own_markers.extend(getattr(obj, "pytestmark", []))  # -m selects it as it selects the function
    item.lineno = _lineno(obj)
    target.item = item
    collected.append(item)
    register(target)


def _lineno(obj: Any) -> int | None:
    try:
        return inspect.getsourcelines(obj)[1] - 1
    except (OSError, TypeError):
        return None


def instances_fingerprint(items: Sequence[pytest.Function]) -> str:
    params = [describe(getattr(item, "callspec", None) and item.callspec.params or {}) for item in items]
    return fingerprint(sorted(params, key=repr))


def instance_fields(item: pytest.Item) -> dict[str, Any]:
    """The instance's parameters that are JSON values (as a lock reads them back): what a demonstration drawn from
    the target's instances holds, and how an instance is told apart from the demonstrations it must not see."""
    callspec = getattr(item, "callspec", None)
    fields = {}
    for name, value in (callspec.params.items() if callspec is not None else ()):
        try:
            fields[name] = json.loads(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError):
            continue  # an object: no demonstration holds it
    return fields


def instance_id(item: pytest.Function) -> str:
    """The instance's parameter id (`France` in `test_capital[France]`): its key in the lock's results."""
    callspec = getattr(item, "callspec", None)
    return callspec.id if callspec is not None else item.name


def judged(fingerprints: Mapping[str, str], used: bool) -> dict[str, str]:
    """The fingerprints a lock keeps: the judge's only when the evaluations called it (else a judge set in the ini
    for other targets would make this one's lock stale when it changes)."""
    return {key: value for key, value in fingerprints.items() if key != "judge" or used}
