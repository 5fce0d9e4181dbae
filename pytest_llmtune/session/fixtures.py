"""Whether a target's evaluations may share one setup: what a probe of its fixtures found.

A body may run under many configs at once, inside one run of pytest's protocol, only when nothing it receives
is set up per instance: its arguments are `llm`, its direct parameters, and fixtures of a broader scope that are
not parametrized (so they hold the same object for every instance, as in a plain run). Anything else (a
function-scoped fixture, `request`, an indirect or fixture parameter, an `async def` body) gets one run of the
protocol per evaluation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import pytest

from pytest_llmtune.records import Sharing
from pytest_llmtune.session.state import Run

__all__ = ["Sharing", "shared_kwargs", "sharing_of"]

OURS = "llm"


def sharing_of(probed: pytest.Item, probe: Run, instances: Sequence[pytest.Function]) -> Sharing:
    assert isinstance(probed, pytest.Function)
    arguments = _arguments(probed)
    params = set(getattr(probed, "callspec", None) and probed.callspec.params or {})
    direct = frozenset(direct_parameters(probed) & params)
    per_instance = probe.fixtures - {OURS} - direct  # a direct parameter is a function-scoped stand-in fixture
    if inspect.iscoroutinefunction(probed.obj):
        return Sharing("an async def body runs in its async runner, one evaluation at a time", direct)
    if "request" in arguments:
        return Sharing("it takes `request`, which is per instance", direct)
    if per_instance:
        return Sharing(f"function-scoped fixtures ({', '.join(sorted(per_instance))}) are set up for each "
                       "evaluation", direct)
    indirect = params - direct
    if indirect:
        return Sharing(f"parametrized fixtures ({', '.join(sorted(indirect))}) differ between instances", direct)
    return Sharing(None, direct)


def direct_parameters(item: pytest.Function) -> set[str]:
    """Argument names given values by `@pytest.mark.parametrize` without `indirect` (parameters made another way,
    e.g. by `metafunc.parametrize`, count as fixtures: the safe side)."""
    names: set[str] = set()
    for mark in item.iter_markers("parametrize"):
        argnames = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        listed = [n.strip() for n in argnames.split(",")] if isinstance(argnames, str) else list(argnames)
        indirect = mark.args[2] if len(mark.args) > 2 else mark.kwargs.get("indirect", False)
        if indirect is True:
            continue
        names |= {name for name in listed if not (isinstance(indirect, (list, tuple)) and name in indirect)}
    return names


def _arguments(item: pytest.Function) -> list[str]:
    return list(inspect.signature(item.obj).parameters)


def shared_kwargs(item: pytest.Function, probed: pytest.Function, sharing: Sharing) -> dict[str, Any]:
    """`item`'s arguments: its own direct parameters, the probe's shared fixtures (llm is added by the caller)."""
    own = item.callspec.params if hasattr(item, "callspec") else {}
    return {name: own[name] if name in sharing.direct else probed.funcargs[name]
            for name in _arguments(item) if name != OURS}
