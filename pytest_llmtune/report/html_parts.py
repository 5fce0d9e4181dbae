"""The pieces of an HTML report's page: escaped text, numbers, intervals, tables and lists of facts.

Every text that reaches the page goes through `e` (or `escape` for an attribute): answers come from a model.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any

__all__ = ["bounds", "e", "facts", "finite", "first_line", "fmt", "heading", "mapping", "number", "score_text",
           "sequence", "table", "td"]


def mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, (list, tuple)) else []


def e(value: Any) -> str:
    """Text for the page, escaped; '-' for nothing."""
    return "-" if value is None else escape(str(value))


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def fmt(value: Any, spec: str = ".4g") -> str:
    """A number as text (not escaped); anything else as it is, '-' for nothing."""
    return format(value, spec) if finite(value) else "-" if value is None else str(value)


def number(value: Any, spec: str = ".4g") -> str:
    return escape(fmt(value, spec))


def bounds(value: Any) -> tuple[float, float] | None:
    """An interval as a report holds it: [low, high], or "low high" (a gate's junit property)."""
    parts = value.split() if isinstance(value, str) else sequence(value)
    try:
        low, high = (float(part) for part in parts)
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) else None


def score_text(score: Any, interval: Any) -> str:
    if not finite(score):
        return "-"
    found = bounds(interval)
    return f"{score:.3f}" + (f" [{found[0]:.2f}, {found[1]:.2f}]" if found else "")


def td(html: str, cls: str = "", title: Any = None) -> str:
    tip = f' title="{escape(str(title))}"' if title else ""
    return f'<td class="{cls}"{tip}>{html}</td>'


def table(headers: Iterable[str], rows: Iterable[str], cls: str = "") -> str:
    head = "".join(f"<th>{e(header)}</th>" for header in headers)
    return (f'<div class="scroll"><table class="{cls}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def facts(pairs: Iterable[tuple[str, str]], cls: str = "") -> str:
    """A list of name: html, the html as given; pairs with no html are left out."""
    items = "".join(f"<div><dt>{e(name)}</dt><dd>{html}</dd></div>" for name, html in pairs if html)
    return f'<dl class="facts {cls}">{items}</dl>' if items else ""


def heading(name: str, verdict: Mapping[str, Any]) -> str:
    outcome = verdict.get("outcome")
    cls = outcome if outcome in ("passed", "failed", "skipped") else "none"
    message = f'<span class="message">{e(verdict.get("message"))}</span>' if verdict.get("message") else ""
    return (f'<h2>{e(name)}</h2><p class="verdict"><span class="badge {cls}">{e(outcome or "no verdict")}</span> '
            f"{message}</p>")


def first_line(answer: Any) -> str:
    lines = str(answer or "").splitlines()
    return e(lines[0]) if lines else '<i class="muted">(empty)</i>'


