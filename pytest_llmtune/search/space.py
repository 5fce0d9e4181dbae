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

from pytest_llmtune.search.demos import Demonstrations, Demos
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
    unimportable,
)
from pytest_llmtune.search.fields import validate_field
from pytest_llmtune.search.keys import check_keys

__all__ = ["SearchSpace", "default_space", "fingerprint"]

SHAPES = 4096  # combinations of group options whose keys are checked together; beyond, each option alone


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
        for key in self.spec:
            if not isinstance(key, str):
                raise InvalidSpaceError(f"space key {key!r} must be a str")
        self.keys = sorted(self.spec)
        self.groups = {key for key in self.keys if _is_group(key, self.spec[key])}
        for key in self.keys:
            self._validate_key(key, self.spec[key])
        self._validate_templates()
        for shape in self._shapes():
            check_keys(shape)
        self._validate_callable_names()

    def _validate_key(self, key: str, value: Any) -> None:
        __tracebackhide__ = True
        if key in self.groups:
            return self._validate_group(key, value)
        if _nested_demos(value):
            raise InvalidSpaceError(f"space[{key!r}]: demos() is a template variable of its own: give it a key at "
                                    'the top of the space or of a group\'s option, e.g. "demos": demos(...), not '
                                    "inside another field's value")
        if _demos_in(value):
            return None  # a template variable: check_keys says where it may go
        if isinstance(value, Choice) and any(isinstance(option, Mapping) for option in value.options) \
                and key != "extra_body":
            raise InvalidSpaceError(
                f"space[{key!r}]: {value!r} mixes dicts and plain values; a group's options must all be dicts"
            )
        validate_field(key, value, f"space[{key!r}]")
        return None

    def _validate_group(self, key: str, group: Choice) -> None:
        __tracebackhide__ = True
        for option in group.options:
            for name, value in option.items():
                if not isinstance(name, str):
                    raise InvalidSpaceError(f"space[{key!r}]: option key {name!r} must be a str")
                if _nested_demos(value):
                    raise InvalidSpaceError(f"space[{key!r}] option {name!r}: demos() is a template variable of its "
                                            "own: give it a key of the option, not inside another field's value")
                if not _demos_in(value):
                    validate_field(name, value, f"space[{key!r}] option {name!r}")

    def _shapes(self) -> list[dict[str, tuple[Any, str]]]:
        """The keys a config may have, each with its value (a constant or a domain) and where the space gives it:
        the top-level keys with one option of each group. Every combination of options, up to SHAPES; beyond,
        each option on its own with the top-level keys."""
        top = {key: (self.spec[key], f"space[{key!r}]") for key in self.keys if key not in self.groups}
        options = [[{name: (value, f"space[{key!r}] option {name!r}") for name, value in option.items()}
                    for option in self.spec[key].options] for key in self.keys if key in self.groups]
        if math.prod(len(found) for found in options) > SHAPES:
            return [top] + [{**top, **option} for found in options for option in found]
        shapes = []
        for combo in itertools.product(*options):
            shape = dict(top)
            for option in combo:
                shape.update(option)
            shapes.append(shape)
        return shapes

    def _validate_templates(self) -> None:
        """Every config gets exactly one of 'prompt' and 'messages' (a group may switch between them)."""
        __tracebackhide__ = True
        top = {key for key in self.keys if key not in self.groups}
        groups = [self.spec[key].options for key in self.keys if key in self.groups]
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
            problem = unimportable(function)
            if problem is not None:
                raise InvalidSpaceError(f"the template {name} {problem}: the lockfile names a callable template by "
                                        "where it is defined, and the application imports it from there. Define "
                                        "each template with its own module-level `def`, or make one template "
                                        "read a tuned variable: \"shots\": choice([0, 1, 3]) beside "
                                        "\"prompt\": template, which reads context[\"shots\"]")
            if seen.setdefault(name, function) is not function:
                raise InvalidSpaceError(
                    f"two templates are both named {name}; the lockfile names a callable template by its name, "
                    "so define each with its own `def`"
                )

    def values_of(self, key: str) -> list[Any]:
        """Every value (a constant, or a domain's options or bounds) that `key` may take in a config, top-level or
        in a group's option; empty when no config has it."""
        found = [self.spec[key]] if key in self.spec and key not in self.groups else []
        found += [option[key] for group in self.groups for option in self.spec[group].options if key in option]
        return [v for value in found for v in (value.values() if isinstance(value, Domain) else [value])]

    def may_lack(self, key: str) -> bool:
        """Whether a config may lack `key`: it is no top-level constant or domain, and no group names it in every
        option."""
        if key in self.spec and key not in self.groups:
            return False
        return not any(all(key in option for option in self.spec[group].options) for group in self.groups)

    def together(self, key: str, other: str) -> set[tuple[Any, Any]]:
        """The (value of `key`, value of `other`) pairs a config may hold at once, `other`'s value None when a
        config with that `key` value may lack it (e.g. ("gemma3-270m", "chat"): a model and its api). Values are a
        constant's or a domain's options or bounds; a config picks one option of each group."""
        Source = tuple[str | None, int, list[Any]]  # where a key's values come from: (its group, option), values
        sources: list[list[Source]] = []
        for name in (key, other):
            found: list[Source] = ([(None, 0, self._values(self.spec[name]))]
                                   if name in self.spec and name not in self.groups else [])
            found += [(group, index, self._values(option[name])) for group in self.groups
                      for index, option in enumerate(self.spec[group].options) if name in option]
            sources.append(found)
        keyed, others = sources[0], sources[1]

        def option_has(group: str | None, index: int, name: str) -> bool:
            return group is not None and name in self.spec[group].options[index]

        def compatible(k: Source, o: Source) -> bool:
            if k[0] is not None and k[0] == o[0]:
                return k[1] == o[1]  # one option of a group at a time
            if o[0] is None and option_has(k[0], k[1], other):
                return False  # the option sets `other` itself, over the top-level value
            return not (k[0] is None and option_has(o[0], o[1], key))  # likewise for `key`

        pairs = set()
        for group, index, values in keyed:
            fitting = [o for o in others if compatible((group, index, values), o)]
            pairs |= {(v, w) for _, _, ws in fitting for v in values for w in ws}
            may_lack = not any(o[0] is None for o in others) and all(  # not top-level, and each group that holds
                any(other not in option and (g != group or i == index)  # it has an option without it
                    for i, option in enumerate(self.spec[g].options)) for g in {o[0] for o in others if o[0]})
            if may_lack:
                pairs |= {(v, None) for v in values}
        return pairs

    @staticmethod
    def _values(value: Any) -> list[Any]:
        return list(value.values()) if isinstance(value, Domain) else [value]

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether `config` (decoded) is a point of this space: a config some coordinates would give."""
        remaining = dict(config)
        for key in self.keys:
            value = self.spec[key]
            if key in self.groups:
                option = next((o for o in value.options if set(o) <= set(remaining)
                               and all(holds(o[name], remaining[name]) for name in o)), None)
                if option is None:
                    return False
                for name in option:
                    del remaining[name]
            elif key not in remaining or not holds(value, remaining.pop(key)):
                return False
        return not remaining

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
            if key in self.groups:
                config.update(value)
            else:
                config[key] = value
        return dict(sorted(config.items()))

    def grid(self) -> list[dict[str, Any]]:
        """Every config of a discrete space, in a fixed order; raises InvalidSpaceError for a continuous one."""
        if self.demos:
            raise InvalidSpaceError("demos() chooses subsets of a pool, which strategy='grid' cannot list: use "
                                    "strategy='halving' (the default) or 'random'")
        per_key = [grid_of(self.spec[key]) for key in self.keys]
        size = math.prod(len(values) for values in per_key)
        if size > GRID_LIMIT:
            raise InvalidSpaceError(f"the grid has {size:,} configs, over {GRID_LIMIT:,}: use strategy='halving'")
        configs = []
        for combo in itertools.product(*per_key):
            config: dict[str, Any] = {}
            for key, value in zip(self.keys, combo, strict=True):
                if key in self.groups:
                    config.update(value)
                else:
                    config[key] = value
            configs.append(dict(sorted(config.items())))
        return configs

    def fingerprint(self) -> str:
        return fingerprint(describe(self.spec))

    @property
    def demos(self) -> list[Demos]:
        """Every demos() domain of the space, top-level or in a group's option."""
        values = [item for key in self.keys for item in
                  ([v for option in self.spec[key].options for v in option.values()] if key in self.groups
                   else [self.spec[key]])]
        return [found for value in values for found in _demos_in(value)]

    def demo_coordinates(self) -> list[tuple[int, str, Demos]]:
        """Where each demos() domain's coordinates start in the unit cube, with the config key it sets."""
        found: list[tuple[int, str, Demos]] = []
        offset = 0
        for key in self.keys:
            found += _demo_offsets(key, self.spec[key], offset)
            offset += dims_of(self.spec[key])
        return found

    def bound(self, tuning: Sequence[Mapping[str, Any]], held_out: Sequence[Mapping[str, Any]] = ()) -> SearchSpace:
        """This space as a tune draws from it: each demos() with no pool drawing from the `tuning` instances' fields,
        and none showing a `held_out` instance (Demos.bound). Raises InvalidSpaceError when a pool cannot serve it
        (too small, a field its templates name missing)."""
        if not self.demos:
            return self
        return SearchSpace({key: _bound(value, tuning, held_out) for key, value in self.spec.items()})

    def encode(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """The config as JSON-able data: a callable template becomes {"callable": "module.qualname"}; a
        cascade's stages each so."""
        if set(config) == {"cascade"}:
            return {"cascade": [self.encode(stage) for stage in config["cascade"]]}
        return {key: _encode(value) for key, value in config.items()}

    def decode(self, encoded: Mapping[str, Any]) -> dict[str, Any]:
        """The inverse of `encode`, finding callables among this space's values."""
        if set(encoded) == {"cascade"}:
            return {"cascade": [self.decode(stage) for stage in encoded["cascade"]]}
        callables = {callable_name(f): f for f in _callables_in(self.spec)}
        return {key: _decode(value, callables) for key, value in encoded.items()}


def holds(domain: Any, value: Any) -> bool:
    """Whether `value` is one of the values of `domain` (a constant, a domain, or a dict of them)."""
    if isinstance(domain, Choice):
        return any(holds(option, value) for option in domain.options)
    if isinstance(domain, Domain):
        return domain.holds(value)
    if isinstance(domain, Mapping):
        return (isinstance(value, Mapping) and set(domain) == set(value)
                and all(holds(domain[key], value[key]) for key in domain))
    if callable(domain):
        return value is domain
    return bool(type(value) is type(domain) and value == domain)


def _has_template(fields: Any) -> bool:
    return "prompt" in fields or "messages" in fields


def _is_group(key: str, value: Any) -> bool:
    """A choice between dicts merges the chosen dict into the config, except under extra_body, whose value is a
    dict of the server's own fields."""
    return key != "extra_body" and isinstance(value, Choice) and all(isinstance(o, Mapping) for o in value.options)


def _encode(value: Any) -> Any:
    if isinstance(value, Demonstrations):
        return value.encode()
    if callable(value):
        return {"callable": callable_name(value)}
    return value


def _decode(value: Any, callables: Mapping[str, Callable[..., Any]]) -> Any:
    if Demonstrations.encoded(value):
        return Demonstrations.decode(value)
    if isinstance(value, Mapping) and set(value) == {"callable"}:
        name = value["callable"]
        if name not in callables:
            raise InvalidSpaceError(f"the locked template {name} is not in the space any more")
        return callables[name]
    return value


def _demos_in(value: Any) -> list[Demos]:
    """The demos() domains of one value: itself, or the options of a choice between them."""
    if isinstance(value, Demos):
        return [value]
    if isinstance(value, Choice):
        return [option for option in value.options if isinstance(option, Demos)]
    return []


def _nested_demos(value: Any, depth: int = 0) -> bool:
    """A demos() deeper than a space's top level, a group's option or a choice between them (e.g. in extra_body)."""
    if isinstance(value, Demos):
        return depth > 0
    if isinstance(value, Choice):
        return any(_nested_demos(option, depth) for option in value.options)
    if isinstance(value, Mapping):
        return any(_nested_demos(item, depth + 1) for item in value.values())
    if isinstance(value, (list, tuple)):
        return any(_nested_demos(item, depth + 1) for item in value)
    return False


def _demo_offsets(key: str, value: Any, offset: int) -> list[tuple[int, str, Demos]]:
    """As `sample` lays the coordinates out: a choice's own first, then each option's; a dict's keys sorted."""
    if isinstance(value, Demos):
        return [(offset, key, value)]
    found: list[tuple[int, str, Demos]] = []
    if isinstance(value, Choice):
        offset += 1
        for option in value.options:
            found += _demo_offsets(key, option, offset)
            offset += dims_of(option)
    elif isinstance(value, Mapping):
        for name in sorted(value):
            found += _demo_offsets(name, value[name], offset)
            offset += dims_of(value[name])
    return found


def _bound(value: Any, tuning: Sequence[Mapping[str, Any]], held_out: Sequence[Mapping[str, Any]]) -> Any:
    if isinstance(value, Demos):
        return value.bound(tuning, held_out)
    if isinstance(value, Choice):
        return Choice([_bound(option, tuning, held_out) for option in value.options])
    if isinstance(value, Mapping):
        return {key: _bound(item, tuning, held_out) for key, item in value.items()}
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
