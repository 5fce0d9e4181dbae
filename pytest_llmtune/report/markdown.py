"""`--llm-report PATH.md`: what a tune or a gate did, as Markdown for GitHub's job summary ($GITHUB_STEP_SUMMARY)
and pull-request comments.

Per target: the verdict, the score with its interval, what the lock costs an instance, and the locked config. With
`--llm-base-lock PATH` (the base branch's lockfile), each target is compared with its lock there: the settings that
changed (in bold, with the base's value), the score difference with its paired 95% interval on the instances both
locks scored, and those instances whose result changed. A difference whose interval holds 0 is said to be within
noise, never a gain.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.direction import Direction
from pytest_llmtune.search.stats import paired_difference

__all__ = ["CHANGED_SHOWN", "render"]

CHANGED_SHOWN = 20  # instances whose result changed, listed before "and N more"
VALUE = 80  # characters of a setting's value in a table cell
MARKS = {"passed": ":white_check_mark: passed", "failed": ":x: failed", "skipped": ":warning: skipped"}


def render(data: Mapping[str, Any], locks: Mapping[str, Mapping[str, Any]],
           base: Mapping[str, Mapping[str, Any]] | None) -> str:
    """The report's Markdown. `locks`: the lockfile's entries now (after the tune wrote them); `base`: the base
    branch's entries, or None when no base lock was given."""
    kind = str(data.get("kind") or "run")
    targets = dict(data.get("targets") or {})
    lines = [f"## pytest-llmtune {kind}", ""]
    if not targets:
        return "\n".join([*lines, "No `@llm_eval` target ran.", ""])
    lines += ["| target | verdict | score [95% CI] | cost an instance |"
              + (" against the base lock |" if base is not None else ""),
              "|---|---|---|---|" + ("---|" if base is not None else "")]
    for name, target in targets.items():
        lock, was = locks.get(name), (base or {}).get(name)
        row = [code(name), verdict_mark(target), score_words(lock) if lock else "not locked",
               cost_words(lock) if lock else ""]
        if base is not None:
            row.append(difference_words(lock, was, short=True))
        lines.append("| " + " | ".join(cell(text) for text in row) + " |")
    for name, target in targets.items():
        lines += ["", *target_section(name, target, locks.get(name), (base or {}).get(name), base is not None)]
    return "\n".join(lines) + "\n"


def target_section(name: str, target: Mapping[str, Any], lock: Mapping[str, Any] | None,
                   was: Mapping[str, Any] | None, compared: bool) -> list[str]:
    verdict = dict(target.get("verdict") or {})
    lines = [f"### {code(name)}: {verdict_mark(target)}", ""]
    if verdict.get("message"):
        lines += ["```", str(verdict["message"]).strip(), "```", ""]
    if target.get("error"):
        lines += [f"Error: {cell(str(target['error']))}", ""]
    if lock is None:
        return [*lines, "Nothing is locked for this target."]
    lines += config_table(dict(lock.get("config") or {}), dict(was.get("config") or {}) if was else None)
    if compared:
        lines += ["", difference_words(lock, was, short=False), *changed_instances(lock, was)]
    return lines


def verdict_mark(target: Mapping[str, Any]) -> str:
    outcome = str(dict(target.get("verdict") or {}).get("outcome") or "no verdict")
    return MARKS.get(outcome, outcome)


def score_words(lock: Mapping[str, Any]) -> str:
    bounds = lock.get("interval")
    shown = f" [{bounds[0]:.2f}, {bounds[1]:.2f}]" if bounds else ""
    return f"{lock.get('metric')} {float(lock['score']):.3f}{shown} on {lock.get('instances')}"


def cost_words(lock: Mapping[str, Any]) -> str:
    tokens = dict(lock.get("tokens") or {}).get("per_instance")
    dollars = dict(lock.get("cost") or {}).get("usd_per_instance")
    return ", ".join(part for part in (f"{tokens:,.1f} tokens" if tokens is not None else "",
                                       f"${dollars:.6f}" if dollars is not None else "") if part)


def config_table(config: Mapping[str, Any], was: Mapping[str, Any] | None) -> list[str]:
    """The locked config, a setting a row; against a base, the changed settings in bold with the base's value."""
    changed = [] if was is None else [key for key in sorted({*config, *was}) if config.get(key) != was.get(key)]
    heading = "Locked config" + (f" ({len(changed)} setting{'' if len(changed) == 1 else 's'} changed from the "
                                 "base lock, in bold)" if changed else ", as in the base lock" if was else "")
    lines = [heading + ":", "", "| setting | value |" + (" base lock |" if changed else ""),
             "|---|---|" + ("---|" if changed else "")]
    for key in sorted({*config, *(was or {})}):
        now = value_text(config[key]) if key in config else "(not set)"
        row = [code(key), code(now)]
        if key in changed:
            before = value_text(was[key]) if was is not None and key in was else "(not set)"
            row = [f"**{row[0]}**", f"**{row[1]}**", code(before)]
        elif changed:
            row.append("")
        lines.append("| " + " | ".join(cell(text) for text in row) + " |")
    return lines


def difference_words(lock: Mapping[str, Any] | None, was: Mapping[str, Any] | None, *, short: bool) -> str:
    """The score against the base lock's, paired on the instances both scored."""
    if lock is None:
        return "not locked" if short else ""
    if was is None:
        return "new target" if short else "The base lock has no entry for this target: nothing to compare with."
    now_results, base_results = dict(lock.get("results") or {}), dict(was.get("results") or {})
    shared = sorted(set(now_results) & set(base_results))
    change = float(lock["score"]) - float(was["score"])
    if lock.get("metric") != was.get("metric") or lock.get("mode") != was.get("mode"):
        return ("another metric" if short else f"The base lock scores {was.get('metric')} ({was.get('mode')}), "
                f"this one {lock.get('metric')} ({lock.get('mode')}): the scores do not compare.")
    if len(shared) < 2:
        said = f"{change:+.3f}, unpaired"
        return said if short else (f"{lock.get('metric')} {float(lock['score']):.3f} against "
                                   f"{float(was['score']):.3f} in the base lock ({change:+.3f}); the locks share "
                                   f"{len(shared)} instance results, too few to pair on: no interval.")
    mean, bounds = paired_difference([float(now_results[k]) for k in shared], [float(base_results[k]) for k in shared])
    assert bounds is not None
    judged = judgement(mean, bounds, str(lock.get("mode") or "max"))
    interval = f"{mean:+.3f} [95% CI {bounds[0]:+.3f}, {bounds[1]:+.3f}]"
    if short:
        return f"{interval} on {len(shared)}: {judged}"
    return (f"Against the base lock: {lock.get('metric')} {float(lock['score']):.3f} against "
            f"{float(was['score']):.3f}; paired on the {len(shared)} instances both locks scored, the difference is "
            f"{interval}: {judged}.")


def judgement(mean: float, bounds: tuple[float, float], mode: str) -> str:
    if math.isclose(bounds[0], 0.0, abs_tol=1e-12) and math.isclose(bounds[1], 0.0, abs_tol=1e-12):
        return "the same results"
    if bounds[0] <= 0.0 <= bounds[1]:
        return "within noise"
    return "better" if Direction(mode).gain(mean, 0.0) > 0 else "worse"


def changed_instances(lock: Mapping[str, Any], was: Mapping[str, Any] | None) -> list[str]:
    if was is None:
        return []
    now_results, base_results = dict(lock.get("results") or {}), dict(was.get("results") or {})
    changed = [key for key in sorted(set(now_results) & set(base_results), key=natural)
               if not math.isclose(float(now_results[key]), float(base_results[key]), abs_tol=1e-9)]
    if not changed:
        return []
    lines = ["", f"Instances whose result changed ({len(changed)}):", "", "| instance | base lock | now |",
             "|---|---|---|"]
    lines += [f"| {cell(code(key))} | {number(base_results[key])} | {number(now_results[key])} |"
              for key in changed[:CHANGED_SHOWN]]
    if len(changed) > CHANGED_SHOWN:
        lines.append(f"| ... and {len(changed) - CHANGED_SHOWN} more | | |")
    return lines


def natural(key: str) -> list[Any]:
    """case2 before case10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def number(value: Any) -> str:
    return f"{float(value):.4g}"


def value_text(value: Any) -> str:
    if Demonstrations.encoded(value):
        return Demonstrations.decode(value).label()
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = json.dumps(text, ensure_ascii=False)[1:-1] if isinstance(value, str) else text  # newlines as \n
    return text if len(text) <= VALUE else text[: VALUE - 1] + "…"


def cell(text: str) -> str:
    """Text safe in a table cell: pipes escaped, lines joined."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    """`text` as a code span, also when it holds a backtick."""
    return f"`` {text} ``" if "`" in text else f"`{text}`"
