"""Search spaces: request fields mapped to constants or domains, validated up front.

A space is a dict from request field to a constant or a domain. `SearchSpace.config_at` maps
one point of the unit cube to a config. A `choice` between dicts is a group: the chosen dict is
merged into the config and the group's key disappears, so
`{"temperature_or_top_p": choice([{"temperature": ...}, {"top_p": ...}])}` tunes one of the two,
never both (FLAML's convention).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pytest_llmtune.search.domains import (
    GRID_LIMIT,
    Choice,
    Domain,
    InvalidSpaceError,
    callable_name,
    choice,
    describe,
    dims_of,
    grid_of,
    lograndint,
    sample,
    uniform,
)
from pytest_llmtune.search.fields import validate_field

__all__ = ["SearchSpace", "default_space", "fingerprint"]


def default_space(**overrides: Any) -> dict[str, Any]:
    """FLAML's default space: max_tokens 50-1000 and n 1-100 on log scales, temperature or top_p in [0, 1].

    Keys given as `overrides` replace or extend the defaults.
    """
    space: dict[str, Any] = {
        "temperature_or_top_p": choice([{"temperature": uniform(0, 1)}, {"top_p": uniform(0, 1)}]),
        "max_tokens": lograndint(50, 1000),
        "n": lograndint(1, 100),
    }
    space.update(overrides)
    return space





class SearchSpace:
    """A validated space: its dimension count, its configs, its fingerprint."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        __tracebackhide__ = True
        if not isinstance(spec, Mapping):
            raise InvalidSpaceError(f"space must be a dict of request fields, got {spec!r}")
        self.spec = dict(spec)
        self.keys = sorted(self.spec)
        for key in self.keys:
            if not isinstance(key, str):
                raise InvalidSpaceError(f"space key {key!r} must be a str")
            self._validate_key(key, self.spec[key])
        self._validate_templates()
        self._validate_callable_names()

    def _validate_key(self, key: str, value: Any) -> None:
        __tracebackhide__ = True
        if isinstance(value, Choice) and any(isinstance(option, Mapping) for option in value.options):
            return self._validate_group(key, value)
        validate_field(key, value, f"space[{key!r}]")
        return None

    def _validate_group(self, key: str, group: Choice) -> None:
        __tracebackhide__ = True
        for option in group.options:
            if not isinstance(option, Mapping):
                raise InvalidSpaceError(
                    f"space[{key!r}]: {group!r} mixes dicts and plain values; a group's options must all be dicts"
                )
            for name, value in option.items():
                validate_field(name, value, f"space[{key!r}] option {name!r}")

    def _validate_templates(self) -> None:
        """Every config gets exactly one of 'prompt' and 'messages' (a group may switch between them)."""
        __tracebackhide__ = True
        top = {key for key in self.keys if not _is_group(self.spec[key])}
        groups = [self.spec[key].options for key in self.keys if _is_group(self.spec[key])]
        for fields in [top] + [top | set(option) for options in groups for option in options]:
            if {"prompt", "messages"} <= fields:
                raise InvalidSpaceError("a config would have both 'prompt' and 'messages'; give one "
                                        "(a prompt is one user message)")
        if not _has_template(top) and not any(all(_has_template(o) for o in options) for options in groups):
            raise InvalidSpaceError(
                "space has no 'prompt' or 'messages': add a template, e.g. \"prompt\": \"Review: {review}\""
            )

    def _validate_callable_names(self) -> None:
        __tracebackhide__ = True
        seen: dict[str, Callable[..., Any]] = {}
        for function in _callables_in(self.spec):
            name = callable_name(function)
            if seen.setdefault(name, function) is not function:
                raise InvalidSpaceError(
                    f"two templates are both named {name}; the lockfile names a callable template by its name, "
                    "so define each with its own `def`"
                )

    @property
    def dims(self) -> int:
        return sum(dims_of(self.spec[key]) for key in self.keys)

    def config_at(self, coords: Sequence[float]) -> dict[str, Any]:
        """The config at one point of the unit cube (coords has `dims` values in [0, 1))."""
        config: dict[str, Any] = {}
        offset = 0
        for key in self.keys:
            value = sample(self.spec[key], coords[offset:])
            offset += dims_of(self.spec[key])
            if _is_group(self.spec[key]):
                config.update(value)
            else:
                config[key] = value
        return dict(sorted(config.items()))

    def grid(self) -> list[dict[str, Any]]:
        """Every config of a discrete space, in a fixed order; raises InvalidSpaceError for a continuous one."""
        per_key = [grid_of(self.spec[key]) for key in self.keys]
        size = math.prod(len(values) for values in per_key)
        if size > GRID_LIMIT:
            raise InvalidSpaceError(f"the grid has {size:,} configs, over {GRID_LIMIT:,}: use strategy='halving'")
        configs = []
        for combo in itertools.product(*per_key):
            config: dict[str, Any] = {}
            for key, value in zip(self.keys, combo, strict=True):
                if _is_group(self.spec[key]):
                    config.update(value)
                else:
                    config[key] = value
            configs.append(dict(sorted(config.items())))
        return configs

    def fingerprint(self) -> str:
        return fingerprint(describe(self.spec))

    def encode(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config as JSON-able data: a callable template becomes {"callable": "module.qualname"}."""
        return {key: _encode(value) for key, value in config.items()}

    def decode(self, encoded: Mapping[str, Any]) -> dict[str, Any]:
        """The inverse of `encode`, finding callables among this space's values."""
        callables = {callable_name(f): f for f in _callables_in(self.spec)}
        return {key: _decode(value, callables) for key, value in encoded.items()}


def _has_template(fields: Any) -> bool:
    return "prompt" in fields or "messages" in fields


def _is_group(value: Any) -> bool:
    return isinstance(value, Choice) and all(isinstance(option, Mapping) for option in value.options)


def _encode(value: Any) -> Any:
    if callable(value):
        return {"callable": callable_name(value)}
    return value


def _decode(value: Any, callables: Mapping[str, Callable[..., Any]]) -> Any:
    if isinstance(value, Mapping) and set(value) == {"callable"}:
        name = value["callable"]
        if name not in callables:
            raise InvalidSpaceError(f"the locked template {name} is not in the space any more")
        return callables[name]
    return value


def _callables_in(value: Any) -> list[Callable[..., Any]]:
    if isinstance(value, Choice):
        return [f for option in value.options for f in _callables_in(option)]
    if isinstance(value, Mapping):
        return [f for item in value.values() for f in _callables_in(item)]
    return [value] if callable(value) and not isinstance(value, Domain) else []


def fingerprint(data: Any) -> str:
    """sha256 of canonical JSON: the same data gives the same fingerprint in every process."""
    text = json.dumps(data, sort_keys=True, default=repr, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
