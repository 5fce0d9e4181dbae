"""What each request field accepts, so that a bad space fails at collection, not mid-tune."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pytest_llmtune.search.domains import Choice, Domain, IntRange, InvalidSpaceError

__all__ = ["FIELD_RULES", "validate_field"]

Rule = Callable[[Any], str | None]  # the problem with one value, or None when it is allowed


def _number_in(low: float, high: float) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return f"a number in [{low}, {high}]"
        return None

    return check


def _int_at_least(low: int) -> Rule:
    def check(value: Any) -> str | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            return f"an int >= {low}"
        return None

    return check


def _template(value: Any) -> str | None:
    return None if isinstance(value, str) or callable(value) else "a str template with {field}s, or a callable"


def _messages(value: Any) -> str | None:
    if callable(value):
        return None
    ok = isinstance(value, list) and value and all(
        isinstance(m, Mapping) and set(m) == {"role", "content"} and isinstance(m["content"], str) for m in value
    )
    return None if ok else 'a non-empty list of {"role": ..., "content": "template"} dicts, or a callable'


def _stop(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return None
    if isinstance(value, list) and all(isinstance(s, str) and s for s in value):
        return None
    return "None, a str, or a list of non-empty strs"


def _one_of(*allowed: str) -> Rule:
    def check(value: Any) -> str | None:
        return None if value in allowed else "one of " + ", ".join(repr(a) for a in allowed)

    return check


def _str(value: Any) -> str | None:
    return None if isinstance(value, str) and value else "a non-empty str"


FIELD_RULES: dict[str, Rule] = {
    "api": _one_of("chat", "completions"),
    "model": _str,
    "prompt": _template,
    "messages": _messages,
    "temperature": _number_in(0, 2),
    "top_p": _number_in(0, 1),
    "presence_penalty": _number_in(-2, 2),
    "frequency_penalty": _number_in(-2, 2),
    "max_tokens": _int_at_least(1),
    "n": _int_at_least(1),
    "stop": _stop,
}
INT_FIELDS = {"max_tokens", "n"}


def validate_field(name: str, value: Any, where: str) -> None:
    """Raise InvalidSpaceError naming `where`, the value and what is allowed, if `value` cannot be searched."""
    __tracebackhide__ = True
    rule = FIELD_RULES.get(name)
    if rule is None:
        return  # any other request field is passed through as given
    if name in INT_FIELDS and isinstance(value, Domain) and not isinstance(value, (Choice, IntRange)):
        raise InvalidSpaceError(f"{where}: {value!r} gives floats, but {name} takes ints; use randint or lograndint")
    if not isinstance(value, Domain):
        problem = rule(value)
        if problem is not None:
            raise InvalidSpaceError(f"{where} is {value!r}, but {name} must be {problem}")
        return
    for option in value.values():  # the bounds of a range, the options of a choice
        problem = rule(option)
        if problem is not None:
            raise InvalidSpaceError(f"{where}: {value!r} allows {option!r}, but {name} must be {problem}")
