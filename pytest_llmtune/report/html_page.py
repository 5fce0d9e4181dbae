"""`--llm-report PATH.html`: a report (json_report.py's dict) as one self-contained page: inline CSS and SVG, nothing
loaded from the network, every text escaped (answers come from a model).

A tune report shows per target the verdict and the locked config, the leaderboard, score against cost with the
Pareto front, and the answers of the top configs side by side (html_tune.py); a gate report shows per target
the verdict and its instances. Any field may be missing (a failed tune, a refused gate): the page shows what is
there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from html import escape
from typing import Any

from pytest_llmtune.report.html_parts import (
    bounds,
    e,
    facts,
    first_line,
    heading,
    mapping,
    number,
    table,
    td,
)
from pytest_llmtune.report.html_tune import tune_section
from pytest_llmtune.report.leaderboard import value_text

__all__ = ["render"]

STYLE = """
body { font: 14px/1.45 system-ui, "Segoe UI", "DejaVu Sans", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin: 0 0 8px; }
h2 { font: 600 17px ui-monospace, "DejaVu Sans Mono", monospace; margin: 36px 0 6px; padding-top: 14px;
     border-top: 2px solid #ddd; overflow-wrap: anywhere; }
h3 { font-size: 15px; margin: 22px 0 6px; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 8px 0; }
dl.facts div { display: contents; }
dl.facts.inline { display: flex; flex-wrap: wrap; gap: 2px 22px; }
dl.facts.inline div { display: flex; gap: 6px; }
dl.facts dt { color: #666; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-weight: 600; color: #fff;
         background: #888; }
.badge.passed { background: #2e7d32; }
.badge.failed { background: #c62828; }
.badge.skipped { background: #f9a825; color: #222; }
.verdict .message { white-space: pre-wrap; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 13px; margin: 4px 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
thead th { background: #f2f2f2; white-space: nowrap; }
table.config th { background: #f7f7f7; font-weight: normal; color: #555; }
table.leaderboard td { white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.winner td { background: #fff3e0; font-weight: 600; }
td.pass, tr.passed td { background: #edf7ee; }
td.miss, tr.missed td, tr.failed td { background: #fdecec; }
td.scored { background: #fffbe6; }
td small { display: block; color: #555; font-size: 11px; }
td .sample { display: block; }
td .sample b { color: #555; font-weight: normal; font-size: 11px; }
table.answers td, table.instances td { max-width: 28em; overflow-wrap: anywhere; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font: 12px ui-monospace, "DejaVu Sans Mono",
      monospace; background: #f7f7f7; padding: 4px 6px; }
pre.error { background: #fdecec; }
.muted { color: #888; font-weight: normal; }
.order { color: #666; font-size: 12px; margin: 2px 0; }
dl.legend dt { font-weight: 600; margin-top: 6px; }
dl.legend dd { margin: 2px 0 0 16px; max-width: 70em; }
figure { margin: 12px 0; }
figcaption { color: #555; font-size: 12px; max-width: 820px; }
svg.plot { max-width: 100%; height: auto; font-family: system-ui, "DejaVu Sans", sans-serif; }
.plot text { font-size: 12px; fill: #333; }
.plot .grid { stroke: #ececec; }
.plot .frame { fill: none; stroke: #999; }
.plot .bar { stroke: #6f8fb5; stroke-width: 1.5; }
.plot .dot { fill: #3d6a9e; }
.plot .front { fill: none; stroke: #2e7d32; stroke-width: 2; stroke-dasharray: 6 3; }
.plot .ring { fill: none; stroke: #2e7d32; stroke-width: 2; }
.plot .winner .dot { fill: #ef6c00; }
.plot .winner .bar { stroke: #ef6c00; stroke-width: 2; }
.plot .winner .label { font-weight: 700; }
.plot .dropped .dot { fill: #fff; stroke: #888; stroke-width: 1.5; }
.plot .label { font-size: 11px; paint-order: stroke; stroke: #fff; stroke-width: 3px; }
.plot .leader { stroke: #aaa; stroke-width: 0.8; }
"""


def render(data: Mapping[str, Any]) -> str:
    """The report as one HTML page that loads nothing."""
    kind = str(data.get("kind") or "")
    title = e(" ".join(["pytest-llmtune", *([kind] if kind else []), "report"]))
    targets = mapping(data.get("targets"))
    section = tune_section if kind == "tune" else gate_section
    body = [page_header(title, data), *(section(str(name), mapping(target)) for name, target in targets.items())]
    if not targets:
        body.append('<p class="muted">No target was tuned or gated.</p>')
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")


def page_header(title: str, data: Mapping[str, Any]) -> str:
    """When, with what, against which endpoint and prices."""
    versions, prices = mapping(data.get("versions")), mapping(data.get("prices"))
    overrides = mapping(prices.get("overrides"))
    pairs = [("created", e(data.get("created"))), ("endpoint", e(data.get("endpoint") or "none")),
             ("prices", f"built-in table of {e(prices.get('built_in_date'))}"
              + (f"; overrides {e(json.dumps(overrides, default=repr))}" if overrides else "")),
             ("versions", e(", ".join(f"{name} {version}" for name, version in versions.items() if version))),
             ("settings", e(", ".join(f"{k}={value_text(v)}" for k, v in mapping(data.get("settings")).items())))]
    return f"<header><h1>{title}</h1>{facts(pairs)}</header>"


def gate_section(name: str, target: Mapping[str, Any]) -> str:
    """A gated target: its verdict, the numbers behind it, and each instance's outcome and answer."""
    verdict, instances = mapping(target.get("verdict")), mapping(target.get("instances"))
    details = [(key, verdict_value(key, value)) for key, value in verdict.items() if key not in ("outcome", "message")]
    rows = [gate_row(str(instance), mapping(result)) for instance, result in instances.items()]
    listing = table(("instance", "outcome", "score", "answer", "miss", "tokens", "$"), rows, "instances")
    return (f'<section class="target">{heading(name, verdict)}{facts(details, "inline")}'
            f'{listing if rows else "<p class=muted>No instance reported.</p>"}</section>')


def verdict_value(key: str, value: Any) -> str:
    found = bounds(value) if key == "interval" else None
    return f"[{found[0]:.3f}, {found[1]:.3f}]" if found else number(value)


def gate_row(instance: str, result: Mapping[str, Any]) -> str:
    outcome = str(result.get("outcome") or "")
    cells = [td(e(instance)), td(e(outcome)), td(number(result.get("score")), "num"),
             td(first_line(result.get("answer"))), td(e(result.get("miss") or "")),
             td(number(result.get("tokens")), "num"), td(number(result.get("cost_usd"), ".3g"), "num")]
    return f'<tr class="{escape(outcome)}">{"".join(cells)}</tr>'
