"""Domains of a search space: the values to search, and how a point of the unit cube picks one.

Sampling happens in the unit cube (sampler.py); each domain maps its coordinates to a value.
"""

from __future__ import annotations

import abc
import inspect
import itertools
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = [
    "Choice",
    "Domain",
    "InvalidSpaceError",
    "LogRandInt",
    "LogUniform",
    "QRandInt",
    "RandInt",
    "Uniform",
    "choice",
    "lograndint",
    "loguniform",
    "qrandint",
    "randint",
    "uniform",
]

# sampled floats are rounded (decimals; significant digits on log scales) so configs, bodies and lockfiles read well
FLOAT_DIGITS = 4


class InvalidSpaceError(ValueError):
    """A search space that cannot be searched; the message names the key, the value and the fix."""


class Domain(abc.ABC):
    """A set of values to search; `sample` maps unit-cube coordinates to one of them."""

    def dims(self) -> int:
        return 1

    @abc.abstractmethod
    def sample(self, coords: Sequence[float]) -> Any:
        """The value at these coordinates (each in [0, 1))."""

    @abc.abstractmethod
    def values(self) -> list[Any]:
        """The bounds or options, for validation against a field's allowed range."""

    @abc.abstractmethod
    def describe(self) -> Any:
        """A JSON-able description, for fingerprints."""

    def holds(self, value: Any) -> bool:
        """Whether `value` is one of this domain's values (a lock's config still a point of its space)."""
        return False


class _Range(Domain):
    name = ""

    def __init__(self, low: float, high: float) -> None:
        for label, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidSpaceError(f"{self.name}(): `{label}` is {value!r}, but must be a finite number")
        if not low < high:
            raise InvalidSpaceError(f"{self.name}({low!r}, {high!r}): `low` must be less than `high`")
        self.low, self.high = low, high

    def values(self) -> list[Any]:
        return [self.low, self.high]

    def holds(self, value: Any) -> bool:
        return (not isinstance(value, bool) and isinstance(value, (int, float)) and self.low <= value <= self.high
                and self._kind_holds(value))

    def _kind_holds(self, value: Any) -> bool:
        return True

    def clamp(self, value: float) -> float:
        """Rounding for readability must not step outside the range."""
        return min(max(value, self.low), self.high)

    def describe(self) -> Any:
        return {self.name: [self.low, self.high]}

    def __repr__(self) -> str:
        return f"{self.name}({self.low!r}, {self.high!r})"


class Uniform(_Range):
    name = "uniform"

    def sample(self, coords: Sequence[float]) -> float:
        return self.clamp(round(self.low + coords[0] * (self.high - self.low), FLOAT_DIGITS))


class LogUniform(_Range):
    name = "loguniform"

    def __init__(self, low: float, high: float) -> None:
        super().__init__(low, high)
        if low <= 0:
            raise InvalidSpaceError(f"loguniform({low!r}, {high!r}): `low` must be > 0 on a log scale")

    def sample(self, coords: Sequence[float]) -> float:
        log_low, log_high = math.log(self.low), math.log(self.high)
        value = math.exp(log_low + coords[0] * (log_high - log_low))
        return self.clamp(float(f"{value:.{FLOAT_DIGITS}g}"))  # significant digits: a log range may be tiny


class IntRange(_Range):
    def _kind_holds(self, value: Any) -> bool:
        return isinstance(value, int) and value < self.high  # the upper bound excluded (QRandInt includes it)

    def __init__(self, low: int, high: int) -> None:
        for label, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidSpaceError(f"{self.name}(): `{label}` is {value!r}, but must be an int")
        super().__init__(low, high)


class RandInt(IntRange):
    """An int in [low, high): the upper bound is excluded, as in Ray Tune and FLAML."""

    name = "randint"

    def sample(self, coords: Sequence[float]) -> int:
        low, high = int(self.low), int(self.high)
        return min(low + int(coords[0] * (high - low)), high - 1)

    def values(self) -> list[Any]:
        return [self.low, int(self.high) - 1]


class LogRandInt(IntRange):
    """An int in [low, high) on a log scale: the upper bound is excluded, as in Ray Tune and FLAML."""

    name = "lograndint"

    def __init__(self, low: int, high: int) -> None:
        super().__init__(low, high)
        if low <= 0:
            raise InvalidSpaceError(f"lograndint({low!r}, {high!r}): `low` must be > 0 on a log scale")

    def sample(self, coords: Sequence[float]) -> int:
        log_low, log_high = math.log(self.low), math.log(self.high)
        value = int(math.exp(log_low + coords[0] * (log_high - log_low)))  # may land a hair under low
        return min(max(value, int(self.low)), int(self.high) - 1)

    def values(self) -> list[Any]:
        return [self.low, int(self.high) - 1]


class QRandInt(IntRange):
    """An int in [low, high] rounded to a multiple of q: the upper bound is included, as in Ray Tune."""

    name = "qrandint"

    def __init__(self, low: int, high: int, q: int = 1) -> None:
        super().__init__(low, high)
        if isinstance(q, bool) or not isinstance(q, int) or q < 1:
            raise InvalidSpaceError(f"qrandint({low!r}, {high!r}, q={q!r}): `q` must be an int >= 1")
        self.q = q

    def sample(self, coords: Sequence[float]) -> int:
        value = round((self.low + coords[0] * (self.high - self.low)) / self.q) * self.q
        return int(min(max(value, self.low), self.high))

    def describe(self) -> Any:
        return {self.name: [self.low, self.high, self.q]}

    def _kind_holds(self, value: Any) -> bool:
        return isinstance(value, int) and (value % self.q == 0 or value in (self.low, self.high))

    def __repr__(self) -> str:
        return f"qrandint({self.low!r}, {self.high!r}, q={self.q!r})"


class Choice(Domain):
    """One of the options; an option that is a dict may hold domains of its own."""

    def __init__(self, options: Sequence[Any]) -> None:
        if isinstance(options, (str, bytes, Mapping)) or not isinstance(options, Sequence):
            raise InvalidSpaceError(f"choice({options!r}): give a list of options")
        if not options:
            raise InvalidSpaceError("choice([]): give at least one option")
        self.options = list(options)

    def dims(self) -> int:
        return 1 + sum(dims_of(option) for option in self.options)

    def sample(self, coords: Sequence[float]) -> Any:
        index = min(int(coords[0] * len(self.options)), len(self.options) - 1)
        offset = 1 + sum(dims_of(option) for option in self.options[:index])
        return sample(self.options[index], coords[offset:])

    def values(self) -> list[Any]:
        return self.options

    def describe(self) -> Any:
        return {"choice": [describe(option) for option in self.options]}

    def __repr__(self) -> str:
        return f"choice({self.options!r})"


def choice(options: Sequence[Any]) -> Choice:
    """One of `options`. An option that is a dict is a group of settings, merged into the config."""
    return Choice(options)


def uniform(low: float, high: float) -> Uniform:
    """A float in [low, high]."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """A float in [low, high] on a log scale."""
    return LogUniform(low, high)


def randint(low: int, high: int) -> RandInt:
    """An int in [low, high) (upper bound excluded, as in Ray Tune and FLAML)."""
    return RandInt(low, high)


def lograndint(low: int, high: int) -> LogRandInt:
    """An int in [low, high) on a log scale (upper bound excluded)."""
    return LogRandInt(low, high)


def qrandint(low: int, high: int, q: int = 1) -> QRandInt:
    """An int in [low, high] rounded to a multiple of q (upper bound included)."""
    return QRandInt(low, high, q)


def dims_of(value: Any) -> int:
    if isinstance(value, Domain):
        return value.dims()
    if isinstance(value, Mapping):
        return sum(dims_of(item) for item in value.values())
    return 0


def sample(value: Any, coords: Sequence[float]) -> Any:
    if isinstance(value, Domain):
        return value.sample(coords)
    if isinstance(value, Mapping):
        result, offset = {}, 0
        for key in sorted(value):
            result[key] = sample(value[key], coords[offset:])
            offset += dims_of(value[key])
        return result
    return value


GRID_LIMIT = 10_000  # configs a grid may have


def grid_of(value: Any) -> list[Any]:
    """Every value a field can take, for `strategy="grid"`; raises InvalidSpaceError for a continuous domain."""
    if isinstance(value, Choice):
        return [v for option in value.options for v in grid_of(option)]
    if isinstance(value, QRandInt):
        first = -(-int(value.low) // value.q) * value.q  # the first multiple of q from low
        return list(range(first, int(value.high) + 1, value.q)) or [int(value.low)]
    if isinstance(value, IntRange):
        return _limited(list(range(int(value.low), int(value.high))), value)
    if isinstance(value, Domain):
        raise InvalidSpaceError(f"{value!r} is continuous: strategy='grid' needs choice([...]) or an int range")
    if isinstance(value, Mapping):
        keys = sorted(value)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(grid_of(value[k]) for k in keys))]
    return [value]


def _limited(values: list[Any], domain: Domain) -> list[Any]:
    if len(values) > GRID_LIMIT:
        raise InvalidSpaceError(f"{domain!r} has {len(values):,} values: too many for strategy='grid'")
    return values


def describe(value: Any) -> Any:
    if isinstance(value, Domain):
        return value.describe()
    if isinstance(value, Mapping):
        return {str(key): describe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    if callable(value):
        return {"callable": callable_name(value), "source": _source_of(value)}
    return value


def callable_name(function: Callable[..., Any]) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def unimportable(function: Callable[..., Any]) -> str | None:
    """Why `callable_name(function)` would not import `function` again (None when it would, or when its module is
    not loaded, so nothing can tell): a lambda, a function made inside another, an object that is not a function,
    or one bound to another name than its own."""
    qualname = getattr(function, "__qualname__", None)
    module = sys.modules.get(getattr(function, "__module__", None) or "")
    if not isinstance(qualname, str):
        return f"is a {type(function).__name__}, not a function"
    if "<lambda>" in qualname:
        return "is a lambda"
    if "<locals>" in qualname:
        return "is made inside a function (a factory's templates all share one name)"
    if module is None:
        return None
    found: Any = module
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return None if found is function else f"is not what its module holds under the name {qualname!r}"


def _source_of(function: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(function)
    except (OSError, TypeError):
        return ""


