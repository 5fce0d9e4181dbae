"""Demonstrations chosen by the search: which k few-shot examples of a pool, in which order.

`demos(pool, k=3, format="Q: {country}\\nA: {capital}\\n")` is a domain like the others: a point of the unit cube
picks k of the pool (one coordinate per slot, so a small step in one coordinate swaps one demonstration and keeps
the others) and one spare. The config holds the chosen demonstrations in full (`Demonstrations`), so the lock, the
gate and `create()` render exactly what was tuned without the pool. With no pool, the pool is the target's tuning
instances (`Demos.bound`, by the session): never a held-out one. An instance never sees itself as a
demonstration: `Demonstrations.shown` puts the spare in its place.

A str template names the domain's key (`{demos}`) where the demonstrations go, each rendered with `format` and
joined by `sep`; with `user=` and `assistant=` templates instead, they become chat turns before the last user
message.
"""

from __future__ import annotations

import difflib
import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.search.domains import Choice, Domain, IntRange, InvalidSpaceError

__all__ = ["Demonstrations", "Demos", "demos", "identities", "same_instance"]

Demo = Mapping[str, Any]  # one demonstration: its fields (JSON values)


@dataclass(frozen=True)
class Demonstrations:
    """The demonstrations of one config, in order, with the spare shown in place of the instance itself."""

    items: tuple[Demo, ...]
    spare: Demo | None = None
    format: str | None = None
    user: str | None = None
    assistant: str | None = None
    sep: str = ""

    @property
    def k(self) -> int:
        return len(self.items)

    @property
    def as_turns(self) -> bool:
        """Chat turns (user= and assistant=), not text in a template (format=)."""
        return self.format is None

    def shown(self, *instances: Demo) -> list[Demo]:
        """The demonstrations an instance sees: any that is one of `instances` (its fields, or a dict among them:
        `llm(case)` with a parameter `case`) is replaced by the spare, or left out when the spare is one too."""
        found = [fields for instance in instances for fields in identities(instance)]

        def own(demo: Demo) -> bool:
            return any(same_instance(demo, fields) for fields in found)

        spare = self.spare if self.spare is not None and not own(self.spare) else None
        shown: list[Demo] = []
        for demo in self.items:
            if not own(demo):
                shown.append(demo)
            elif spare is not None:
                shown.append(spare)
                spare = None
        return shown

    def text(self, shown: Sequence[Demo]) -> str:
        assert self.format is not None
        return self.sep.join(_filled(self.format, demo) for demo in shown)

    def turns(self, shown: Sequence[Demo]) -> list[dict[str, str]]:
        assert self.user is not None and self.assistant is not None
        return [turn for demo in shown for turn in ({"role": "user", "content": _filled(self.user, demo)},
                                                    {"role": "assistant", "content": _filled(self.assistant, demo)})]

    def label(self) -> str:
        """Short: k and each demonstration by the first field its template names (the lock sorts fields)."""
        named = _ordered_names(self.format if self.format is not None else self.user or "")
        names = [_short(demo, named) for demo in self.items]
        return f"k{self.k} " + ("[" + ", ".join(names) + "]" if names else "none")

    def encode(self) -> dict[str, Any]:
        templates = {name: value for name in ("format", "user", "assistant")
                     if (value := getattr(self, name)) is not None}
        found = {"items": [dict(demo) for demo in self.items], "spare": dict(self.spare) if self.spare else None,
                 **templates, "sep": self.sep}
        return {"demonstrations": found}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Demonstrations:
        found = data["demonstrations"]
        return cls(tuple(found.get("items", ())), found.get("spare"), found.get("format"), found.get("user"),
                   found.get("assistant"), found.get("sep", ""))

    @staticmethod
    def encoded(value: Any) -> bool:
        return isinstance(value, Mapping) and set(value) == {"demonstrations"} and isinstance(
            value["demonstrations"], Mapping)

    def __repr__(self) -> str:  # a config's key (json default=repr): the same demonstrations, the same text
        return "Demonstrations(" + json.dumps(self.encode(), sort_keys=True) + ")"


def identities(fields: Demo) -> list[Demo]:
    """What an instance may be in a pool: its fields, and each field that is a dict of fields itself."""
    return [fields, *(value for value in fields.values() if isinstance(value, Mapping) and value)]


def same_instance(demo: Demo, fields: Demo) -> bool:
    """Whether `demo` is the instance with these fields: equal on every field of the one with fewer (a field that
    every instance shares, such as a constant parameter, alone does not make two instances one)."""
    shared = set(demo) & set(fields)
    if not shared or shared not in (set(demo), set(fields)):
        return False
    return all(demo[name] == fields[name] for name in shared)


def _filled(template: str, demo: Demo) -> str:
    from pytest_llmtune.errors import TemplateError

    try:
        return template.format_map(demo)
    except (KeyError, IndexError, ValueError) as error:
        raise TemplateError(f"the demonstration template {template!r} cannot be filled from the demonstration "
                            f"{dict(demo)!r}: {error}") from None


def _ordered_names(template: str) -> list[str]:
    try:
        return [field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError:
        return []


def _short(demo: Demo, named: Sequence[str] = ()) -> str:
    first = next((demo[name] for name in named if name in demo), next(iter(demo.values()), ""))
    text = first if isinstance(first, str) else json.dumps(first)
    return text if len(text) <= 12 else text[:11] + "…"


def _names(template: str) -> set[str]:
    try:
        return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(template) if field}
    except ValueError as error:
        raise InvalidSpaceError(f"demos(): the template {template!r} is not a str.format template: {error}") from None


def _json_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_json_value(item) for item in value)
    return isinstance(value, Mapping) and all(isinstance(k, str) and _json_value(v) for k, v in value.items())


class Demos(Domain):
    """k demonstrations of a pool, in order, and a spare (see the module's docstring)."""

    def __init__(self, pool: Sequence[Demo] | None, *, k: Any, format: str | None = None, user: str | None = None,
                 assistant: str | None = None, sep: str = "") -> None:
        self.k, self.format, self.user, self.assistant, self.sep = k, format, user, assistant, sep
        self.ks = self._ks(k)
        self._check_templates()
        self.pool: tuple[Demo, ...] | None = None if pool is None else self._pool(pool, "pool")

    def _ks(self, k: Any) -> list[int]:
        if isinstance(k, bool) or not isinstance(k, (int, IntRange, Choice)):
            raise InvalidSpaceError(f"demos(k={k!r}): `k` must be an int or an int domain, e.g. randint(0, 6)")
        if isinstance(k, int):
            values = [k]
        elif isinstance(k, IntRange):
            values = list(range(int(k.values()[0]), int(k.values()[-1]) + 1))
        else:
            values = list(k.options)
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise InvalidSpaceError(f"demos(k={k!r}): every k must be an int >= 0")
        return values

    def _check_templates(self) -> None:
        if self.format is not None and (self.user is not None or self.assistant is not None):
            raise InvalidSpaceError("demos(): give `format` (text in a template) or `user` and `assistant` (chat "
                                    "turns), not both")
        if self.format is None and (self.user is None or self.assistant is None):
            raise InvalidSpaceError('demos(): give `format`, e.g. format="Q: {question}\\nA: {answer}\\n", or both '
                                    '`user` and `assistant` templates for chat turns')
        for name in ("format", "user", "assistant", "sep"):
            value = getattr(self, name)
            if (value is not None or name == "sep") and not isinstance(value, str):
                raise InvalidSpaceError(f"demos({name}={value!r}): `{name}` must be a str")
        self.fields = set().union(*(_names(t) for t in (self.format, self.user, self.assistant) if t))

    def _pool(self, pool: Sequence[Demo], where: str) -> tuple[Demo, ...]:
        if isinstance(pool, (str, bytes, Mapping)) or not isinstance(pool, Sequence):
            raise InvalidSpaceError(f"demos(pool={pool!r}): give a list of dicts, one per demonstration")
        for number, demo in enumerate(pool):
            if not isinstance(demo, Mapping) or not all(isinstance(name, str) for name in demo):
                raise InvalidSpaceError(f"demos(): {where}[{number}] is {demo!r}, but must be a dict of fields")
            if not _json_value(dict(demo)):
                raise InvalidSpaceError(f"demos(): {where}[{number}] holds a value that is not JSON (str, number, "
                                        "bool, None, list, dict): the lock holds demonstrations in full")
            missing = sorted(self.fields - set(demo))
            if missing:
                close = difflib.get_close_matches(missing[0], list(demo), n=1)
                guess = f"; did you mean {{{close[0]}}}?" if close else ""
                has = f"has only {', '.join(sorted(demo))}" if demo else "has no fields"
                hint = (" (parameters whose values are not JSON are left out)" if "tuning instances" in where else "")
                raise InvalidSpaceError(f"demos(): its template names the field {missing[0]!r}, but the "
                                        f"{where.rstrip(',')}[{number}] {has}{hint}{guess}")
        most, room = max(self.ks), len(pool) - (1 if "tuning instances" in where else 0)  # each one needs a spare
        if room < most:
            spare = " (one of them is kept as the spare an instance sees in its own place)" if room < len(pool) else ""
            verb = "hold" if "tuning instances" in where else "holds"
            raise InvalidSpaceError(f"demos(k={self.k!r}): k can be {most}, but the {where.rstrip(',')} {verb} "
                                    f"{len(pool)} demonstration{'s' if len(pool) != 1 else ''}{spare}: give k <= "
                                    f"{room} (randint's upper bound is excluded: randint(0, {room + 1})) or a "
                                    "larger pool")
        return tuple(json.loads(json.dumps(dict(demo))) for demo in pool)  # as the lock will read them back

    def bound(self, tuning: Sequence[Demo], held_out: Sequence[Demo] = ()) -> Demos:
        """This domain as a tune draws from it: with no pool, the target's `tuning` instances' fields; a pool given
        without the ones a `held_out` instance is (its held-out score stays honest); each demonstration once."""
        given = self.pool is not None
        if not given and not any(tuning):
            raise InvalidSpaceError(
                "demos() with no pool draws from the target's parametrized instances, but they have no parameters "
                "whose values are JSON (str, number, bool, None, list, dict; other objects are left out): "
                "parametrize the test, or give demos(pool=[...])")
        held = [fields for instance in held_out for fields in identities(instance)]
        rows = [dict(d) for d in (self.pool if self.pool is not None else tuning)
                if not any(same_instance(d, fields) for fields in held)]
        unique = list({json.dumps(row, sort_keys=True): row for row in rows}.values())
        found = Demos(None, k=self.k, format=self.format, user=self.user, assistant=self.assistant, sep=self.sep)
        where = "pool, without its held-out instances," if given else "target's tuning instances"
        found.pool = found._pool(unique, where)
        return found

    @property
    def as_turns(self) -> bool:
        return self.format is None

    @property
    def k_dims(self) -> int:
        return self.k.dims() if isinstance(self.k, Domain) else 0

    def dims(self) -> int:
        return self.k_dims + max(self.ks) + 1  # k, a coordinate per slot, the spare

    def sample(self, coords: Sequence[float]) -> Demonstrations:
        if self.pool is None:
            raise InvalidSpaceError("demos() with no pool draws from the target's instances, which only a tune "
                                    "binds")
        k = self.k.sample(coords) if isinstance(self.k, Domain) else self.k
        slots = coords[self.k_dims:]
        used: list[int] = []
        for coordinate in [*slots[:k], slots[max(self.ks)]]:
            if len(used) == len(self.pool):
                break
            index = min(int(coordinate * len(self.pool)), len(self.pool) - 1)
            while index in used:  # the next one along: a slot's coordinate keeps its meaning when another moves
                index = (index + 1) % len(self.pool)
            used.append(index)
        items = tuple(self.pool[i] for i in used[:k])
        spare = self.pool[used[k]] if len(used) > k else None
        return Demonstrations(items, spare, self.format, self.user, self.assistant, self.sep)

    def slot_coordinates(self) -> range:
        """The coordinates (from this domain's first) that pick the demonstrations: one per slot, then the spare."""
        return range(self.k_dims, self.dims())

    def index_of(self, demo: Demo) -> int:
        assert self.pool is not None
        return self.pool.index(demo)

    def values(self) -> list[Any]:
        return list(self.pool or ())

    def holds(self, value: Any) -> bool:
        if not isinstance(value, Demonstrations) or value.k not in self.ks:
            return False
        if (value.format, value.user, value.assistant, value.sep) != (self.format, self.user, self.assistant,
                                                                      self.sep):
            return False
        return self.pool is None or all(demo in self.pool for demo in value.items)

    def describe(self) -> Any:
        from pytest_llmtune.search.domains import describe

        return {"demos": {"pool": list(self.pool) if self.pool is not None else "the target's tuning instances",
                          "k": describe(self.k), "format": self.format, "user": self.user,
                          "assistant": self.assistant, "sep": self.sep}}

    def __repr__(self) -> str:
        what = f"format={self.format!r}" if self.format is not None else f"user={self.user!r}, ..."
        pool = "None" if self.pool is None else f"<{len(self.pool)} demonstrations>"
        return f"demos({pool}, k={self.k!r}, {what})"


def demos(pool: Sequence[Demo] | None = None, *, k: Any, format: str | None = None, user: str | None = None,
          assistant: str | None = None, sep: str = "") -> Demos:
    """k demonstrations of `pool` (dicts of fields), chosen and ordered by the search; with no pool, the target's
    own tuning instances (never the one evaluated, never a held-out one). `k`: an int or an int domain.

    `format` renders each one in a str template that names this key (`"prompt": "{demos}Q: {country}\\nA:"`),
    joined by `sep`; `user` and `assistant` instead make each one a pair of chat turns before the last user
    message."""
    return Demos(pool, k=k, format=format, user=user, assistant=assistant, sep=sep)
