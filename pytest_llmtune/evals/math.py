"""Final answers of math solutions: extract them, normalise them, compare them, and vote over n samples.

    texts = llm(case)
    return math_score(texts, case["solution"])      # {"voted": 1.0, "any": 1.0}: an @llm_eval metric dict
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

__all__ = ["VoteResult", "extract_answer", "is_equiv", "math_score", "normalize", "vote"]

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE = re.compile(r"\\boxed +([^\s$]+)")  # "\boxed 5", as some MATH solutions write it
# Not preceded by a letter, digit or point, so "x2" and "10-3" give no "2" or "-3"; commas only in groups of three.
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:/\d+)?|(?<![\w.])-?\.\d+")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
_FRAC = re.compile(r"(-?)\\frac\{([^{}]+)\}\{([^{}]+)\}")
_REMOVED = ("\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "$", "\\%", "%", "^\\circ", "^{\\circ}")


@dataclass(frozen=True)
class VoteResult:
    """The most common answer (normalised) of `total` samples, given by `count` of them; None if none had one."""

    answer: str | None
    count: int
    total: int


def extract_answer(text: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}`, else the last number in the text, else None."""
    for match in reversed(list(_BOXED.finditer(text))):
        content = _balanced(text, match.end())
        if content is not None:
            return content.strip()
    bare = _BOXED_BARE.findall(text)
    if bare:
        return str(bare[-1])
    numbers = _NUMBER.findall(text)
    return str(numbers[-1]) if numbers else None


def _balanced(text: str, start: int) -> str | None:
    """The text from `start` to the brace that closes the one before it; None if it is never closed."""
    depth, i = 1, start
    while i < len(text):
        if text[i] == "\\":
            i += 2  # an escaped brace, \{ or \}, is part of the content
            continue
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start:i]
        i += 1
    return None


def normalize(answer: str) -> str:
    """A canonical spelling of an answer, so that equal answers usually compare equal as strings.

    Drops `$`, spaces, `\\left`/`\\right`, spacing commands, degrees, percent signs, a trailing point, units
    written as `\\text{ cm}`, and a leading `x =`; unwraps `\\text{...}`; writes `\\dfrac`/`\\tfrac` and `a/b` as
    `\\frac{a}{b}`; and writes numbers canonically ("1,000" -> "1000", "0.50" -> "0.5", "2.0" -> "2").
    """
    text = answer.strip()
    for token in _REMOVED:
        text = text.replace(token, "")
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{\s+[^{}]*\}", "", text)  # a unit: \text{ cm}, with a space
    text = re.sub(r"\\(?:text|textbf|mathrm|mbox)\{([^{}]*)\}", r"\1", text)
    text = re.sub(r"\s+", "", text).rstrip(".")
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\(frac|sqrt)(\d)", r"\\\1{\2}", text)  # \frac12 -> \frac{1}2, \sqrt2 -> \sqrt{2}
    text = re.sub(r"(\\frac\{[^{}]+\})(\d)", r"\1{\2}", text)  # \frac{1}2 -> \frac{1}{2}
    text = re.sub(r"^[a-zA-Z](?:_\{?\w+\}?)?=(?!=)", "", text)  # x=5 -> 5
    return _canonical_number(text)


def _canonical_number(text: str) -> str:
    """A number without thousands separators or trailing zeros; an integer fraction as \\frac; else unchanged."""
    if _THOUSANDS.fullmatch(text):
        text = text.replace(",", "")
    fraction = re.fullmatch(r"(-?)(\d+)/(\d+)", text)
    if fraction:
        sign, numerator, denominator = fraction.groups()
        return f"{sign}\\frac{{{numerator}}}{{{denominator}}}"
    if not _DECIMAL.fullmatch(text):
        return text
    number = Decimal(text).normalize()
    return "0" if number.is_zero() else format(number, "f")  # "f": 1E+3 written as 1000; never "-0"


def is_equiv(a: str | None, b: str | None) -> bool:
    """Whether two answers are the same: equal once normalised, or numbers within 1e-9 relative of each other.

    `\\frac{1}{2}`, `0.5` and `1/2` are equivalent. None (no answer) is equivalent to nothing.
    """
    if a is None or b is None:
        return False
    a, b = normalize(a), normalize(b)
    if a == b:
        return True
    x, y = _to_number(a), _to_number(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-9)


def _to_number(text: str) -> float | None:
    """The value of a normalised number or `\\frac{a}{b}` of numbers; None for anything else."""
    try:
        frac = _FRAC.fullmatch(text)
        if frac:
            sign, numerator, denominator = frac.groups()
            value = Fraction(numerator) / Fraction(denominator)
            return float(-value if sign else value)
        return float(Fraction(text)) if _DECIMAL.fullmatch(text) else None
    except (ValueError, ZeroDivisionError, OverflowError):
        return None


def vote(texts: Sequence[str]) -> VoteResult:
    """Majority vote over the answers extracted from the samples; equivalent answers count together.

    A tie goes to the answer seen first. Samples without an answer count in `total` only.
    """
    counts: dict[str, int] = {}  # first spelling of each distinct answer, in order of first appearance
    for found in (extract_answer(text) for text in texts):
        if found is not None:
            answer = normalize(found)
            seen = next((known for known in counts if is_equiv(known, answer)), answer)
            counts[seen] = counts.get(seen, 0) + 1
    if not counts:
        return VoteResult(None, 0, len(texts))
    best = max(counts, key=counts.__getitem__)  # max keeps the first of equal counts
    return VoteResult(best, counts[best], len(texts))


def math_score(texts: Sequence[str], solution: str) -> dict[str, float]:
    """{"voted": 1.0 if the majority answer matches the solution's, "any": 1.0 if any sample's does}, else 0.0.

    The solution's answer is extracted like a sample's: its last `\\boxed{}`, else its last number.
    """
    target = extract_answer(solution)
    voted = is_equiv(vote(texts).answer, target)
    any_ = any(is_equiv(extract_answer(text), target) for text in texts)
    return {"voted": float(voted), "any": float(any_)}
