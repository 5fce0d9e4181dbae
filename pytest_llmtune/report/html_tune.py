"""A tune's target on the HTML report: the verdict and the locked config, the leaderboard (every ranked config,
the settings that differ, long values as labels with their full text below), score against cost with the Pareto
front, and the answers of the top configs side by side."""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmtune.report.html_parts import (
    bounds,
    e,
    facts,
    finite,
    first_line,
    fmt,
    heading,
    mapping,
    number,
    score_text,
    sequence,
    table,
    td,
)
from pytest_llmtune.report.leaderboard import LONG, NAMES, ORDER, value_text
from pytest_llmtune.report.svg_plot import Point, plot
from pytest_llmtune.search.budget import Budget
from pytest_llmtune.search.cascade import is_cascade
from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.direction import Direction

__all__ = ["tune_section"]

TOP = 5  # configs side by side in the answers table
Config = Mapping[str, Any]  # one of a tune report's configs (json_report.config_json)
Labels = dict[str, dict[str, tuple[str, Any]]]  # key -> value text -> its label and the whole value


def tune_section(name: str, target: Mapping[str, Any]) -> str:
    listed = map(mapping, sequence(target.get("configs")))
    configs = {config["number"]: config for config in listed if isinstance(config.get("number"), int)}
    ranking = [n for n in sequence(target.get("ranking")) if n in configs]
    winner = target.get("winner") if isinstance(target.get("winner"), int) else None
    parts = [heading(name, mapping(target.get("verdict"))), facts(tune_facts(target)), locked(target),
             leaderboard(configs, ranking, winner), plot_figure(target, configs, winner),
             answers(configs, ranking, winner, target)]
    return f'<section class="target">{"".join(parts)}</section>'


def tune_facts(target: Mapping[str, Any]) -> list[tuple[str, str]]:
    instances, plan, spent, confirmation = (mapping(target.get(key))
                                            for key in ("instances", "plan", "spending", "confirmation"))
    texts = [("metric", metric_text(target)), ("instances", instances_text(instances)), ("plan", plan_text(plan)),
             ("winner", f"#{target['winner']}" if target.get("winner") is not None else ""),
             ("confirmation", f"{score_text(confirmation.get('score'), confirmation.get('interval'))} on "
                              f"{confirmation.get('instances')} instances" if confirmation else ""),
             ("spending", spending_text(spent) if spent else ""),
             ("budgets", budgets_text(mapping(target.get("budgets")))), ("stopped", str(target.get("stopped") or ""))]
    error = f'<pre class="error">{e(target["error"])}</pre>' if target.get("error") else ""
    return [(name, e(text)) for name, text in texts] + [("error", error)]


def metric_text(target: Mapping[str, Any]) -> str:
    if not target.get("metric"):
        return ""
    threshold = f", threshold {target['threshold']}" if target.get("threshold") is not None else ""
    return f"{target['metric']} (mode {target.get('mode')}, agg {target.get('agg')}){threshold}"


def instances_text(instances: Mapping[str, Any]) -> str:
    if not instances:
        return ""
    return f"{len(sequence(instances.get('tuning')))} tuning, {len(sequence(instances.get('held_out')))} held out"


def plan_text(plan: Mapping[str, Any]) -> str:
    """The configs drawn and every bracket's rungs: "40 configs drawn in 3 brackets: 16 x 8, then 6 x 24 | ..."."""
    if not plan:
        return ""
    brackets = sequence(plan.get("brackets")) or [plan.get("rungs")]
    shown = [", then ".join(f"{r.get('configs')} x {r.get('instances')}" for r in map(mapping, sequence(rungs)))
             for rungs in brackets]
    drawn = f"{plan.get('configs_drawn')} configs drawn" + (f" in {len(shown)} brackets" if len(shown) > 1 else "")
    return f"{drawn}; rungs (configs x instances): " + " | ".join(
        (f"bracket {n}: " if len(shown) > 1 else "") + text for n, text in enumerate(shown, 1))


def spending_text(spent: Mapping[str, Any]) -> str:
    """New spending and replays apart, as the terminal's summary says them."""
    return (f"{spent.get('requests')} requests ({fmt(spent.get('tokens'), ',')} tokens, "
            f"${fmt(spent.get('cost_usd'), '.4f')}); {spent.get('replayed')} replayed "
            f"({fmt(spent.get('replayed_tokens'), ',')} tokens, ${fmt(spent.get('replayed_cost_usd'), '.4f')}, "
            f"not spent); {fmt(spent.get('seconds'), '.1f')} s")


def budgets_text(budgets: Mapping[str, Any]) -> str:
    """As the terminal says them: "optimization 20,000 tokens (19,580 spent)", "inference $0.0100 (per instance)"."""
    parts = []
    for name, found in budgets.items():
        entry = mapping(found)
        if not finite(entry.get("amount")):
            continue
        budget = Budget(float(entry["amount"]), "tokens" if entry.get("unit") == "tokens" else "usd")
        spent = entry["spent"] if finite(entry.get("spent")) else None
        note = f" ({budget.words(spent).removesuffix(' tokens')} spent)" if spent is not None else ""
        parts.append(f"{name} {budget.words(budget.amount)}{note}" + (" per instance" if name == "inference" else ""))
    return "; ".join(parts)


def locked(target: Mapping[str, Any]) -> str:
    entry = mapping(target.get("locked"))
    config = mapping(entry.get("config"))
    if not config:
        return '<p class="muted">Nothing was locked.</p>'
    if is_cascade(config):  # stage by stage, with the share of the instances each answered
        shares = sequence(mapping(entry.get("cascade")).get("shares"))
        rows = []
        for number, stage in enumerate(sequence(config["cascade"])):
            share = f" (answered {shares[number]:.0%})" if number < len(shares) else ""
            rows.append(f'<tr><th colspan="2">stage {number + 1}{e(share)}</th></tr>')
            rows += [f"<tr><th>{e(key)}</th><td>{whole(value)}</td></tr>" for key, value in mapping(stage).items()]
    else:
        rows = [f"<tr><th>{e(key)}</th><td>{whole(value)}</td></tr>" for key, value in config.items()]
    score = score_text(entry.get("score"), entry.get("interval"))
    return (f'<h3>Locked config <span class="muted">({e(score)} on {e(entry.get("instances"))} instances)</span>'
            f'</h3><table class="config">{"".join(rows)}</table>')


def whole(value: Any) -> str:
    """A setting in full, as the lockfile holds it: a string as its text, a long list or dict as indented JSON,
    demonstrations as they are rendered."""
    if Demonstrations.encoded(value):
        found = Demonstrations.decode(value)
        shown = (found.text(found.items) if not found.as_turns else
                 "\n".join(f"{turn['role']}: {turn['content']}" for turn in found.turns(found.items)))
        spare = f"\n\n(spare, for an instance that is one of them: {json.dumps(found.spare, ensure_ascii=False)})"
        return f"<pre>{e(found.label())}\n\n{e(shown)}{e(spare) if found.spare else ''}</pre>"
    text = value if isinstance(value, str) else value_text(value)
    if isinstance(value, (list, dict)) and len(text) > LONG:
        text = json.dumps(value, indent=1, ensure_ascii=False, default=repr)
    return f"<pre>{e(text)}</pre>" if "\n" in text or len(text) > LONG else e(text)


def leaderboard(configs: Mapping[int, Config], ranking: Sequence[int], winner: int | None) -> str:
    if not ranking:
        return '<p class="muted">No config was scored.</p>'
    shown = [configs[n] for n in ranking]
    keys = differing_settings([mapping(c.get("config")) for c in configs.values()])
    labels = long_labels([k for k in keys if k != "cascade"], shown)
    columns = score_columns(shown)
    singles = [(mapping(c.get("config")), c.get("number")) for c in configs.values()]
    stages = {c.get("number"): "→".join(next((f"#{n}" for found, n in singles if found == stage), "?")
                                       for stage in sequence(mapping(c.get("config")).get("cascade")))
              for c in configs.values() if is_cascade(mapping(c.get("config")))}
    rows = [leaderboard_row(rank, config, keys, labels, columns, winner, stages)
            for rank, config in enumerate(shown, 1)]
    unscored = len(configs) - len(ranking)
    note = f'<p class="muted">{unscored} configs drawn but not evaluated before the search stopped.</p>'
    board = table(["rank", "#", *keys, *columns], rows, "leaderboard")
    return f'<h3>Leaderboard</h3><p class="order">{e(ORDER)}</p>{board}{note if unscored else ""}{legend(labels)}'


def differing_settings(settings: Sequence[Mapping[str, Any]]) -> list[str]:
    """The settings whose value is not the same in every config (missing counts as a value); unlike the
    terminal's `leaderboard.varying_keys`, prompt and messages keep their own columns: a page has the room."""
    keys = dict.fromkeys(key for config in settings for key in config)
    return [key for key in keys if len({value_text(c[key]) if key in c else None for c in settings}) > 1]


def long_labels(keys: Sequence[str], shown: Sequence[Config]) -> Labels:
    """Labels (`prompt #2`) for the keys with a long value, numbered in the leaderboard's order."""
    labels: Labels = {}
    settings = [mapping(config.get("config")) for config in shown]
    for key in keys:
        named = {value_text(s[key]): s[key] for s in settings if isinstance(s.get(key), (str, list, dict))}
        if any(len(text) > NAMES.get(key, LONG) for text in named):
            labels[key] = {text: (f"{key} #{n}", value) for n, (text, value) in enumerate(named.items(), 1)}
    return labels


def legend(labels: Labels) -> str:
    """The labels' values in full (the terminal shows only the text that tells them apart)."""
    items = "".join(f"<dt>{e(label)}</dt><dd>{whole(value)}</dd>"
                    for named in labels.values() for label, value in named.values())
    if not items:
        return ""
    return f'<details open><summary>Long values in full</summary><dl class="legend">{items}</dl></details>'


def score_columns(shown: Sequence[Config]) -> list[str]:
    columns = ["instances", "score [95% CI]"]
    columns += ["held-out [95% CI]"] if any(c.get("held_out") for c in shown) else []
    columns += ["tokens/inst"]
    columns += ["$/inst"] if any(finite(c.get("cost_usd")) and c["cost_usd"] > 0 for c in shown) else []
    return columns + (["dropped"] if any(c.get("dropped") for c in shown) else [])


def leaderboard_row(rank: int, config: Config, keys: Sequence[str], labels: Labels, columns: Sequence[str],
                    winner: int | None, stages: Mapping[Any, str] | None = None) -> str:
    """`stages`: a cascade's stages by their numbers ("#1→#3"), by the cascade's number."""
    settings = mapping(config.get("config"))
    scores = {"instances": td(number(config.get("instances")), "num"),
              "score [95% CI]": td(e(score_text(config.get("score"), config.get("interval"))), "num"),
              "held-out [95% CI]": td(e(held_out_text(config.get("held_out"))), "num"),
              "tokens/inst": td(number(config.get("tokens_per_instance"), ".1f"), "num"),
              "$/inst": td(number(config.get("cost_usd_per_instance"), ".3g"), "num"),
              "dropped": td(e(config.get("dropped") or ""))}
    cells = [td(str(rank), "num"), td(e(config.get("number")), "num"),
             *(td(e((stages or {}).get(config.get("number"), "-"))) if key == "cascade" else
               setting_cell(settings, key, labels) for key in keys), *(scores[column] for column in columns)]
    return f'<tr class="{"winner" if config.get("number") == winner else ""}">{"".join(cells)}</tr>'


def setting_cell(settings: Mapping[str, Any], key: str, labels: Labels) -> str:
    if key not in settings:
        return td("-", "muted")
    value = settings[key]
    label = labels.get(key, {}).get(value_text(value))
    if label is not None:
        return td(e(label[0]), title=value if isinstance(value, str) else value_text(value))
    return td(e(f"{value:.3g}" if isinstance(value, float) else value if isinstance(value, str) else value_text(value)))


def held_out_text(held: Any) -> str:
    held = mapping(held)
    if not held:
        return ""
    if held.get("error"):
        return "not scored: budget" if "budget" in str(held["error"]) else "error"
    return score_text(held.get("score"), held.get("interval"))


def plot_figure(target: Mapping[str, Any], configs: Mapping[int, Config], winner: int | None) -> str:
    """Score against cost per instance (tokens per instance when nothing cost anything)."""
    scored = [c for c in configs.values() if finite(c.get("score"))]
    by_cost = any(finite(c.get("cost_usd_per_instance")) and c["cost_usd_per_instance"] > 0 for c in scored)
    x_key = "cost_usd_per_instance" if by_cost else "tokens_per_instance"
    points = [point(c, x_key) for c in scored if finite(c.get(x_key))]
    maximize = Direction(str(target.get("mode") or "max")).sign > 0
    svg = plot(points, winner=winner, maximize=maximize, y_label=str(target.get("metric") or "score"),
               x_label="cost per instance ($)" if by_cost else "tokens per instance")
    if not svg:
        return ""
    better = "higher" if maximize else "lower"
    return (f"<h3>Score against cost</h3><figure>{svg}<figcaption>Each config's score on the instances it ran, with "
            f"its 95% interval ({better} is better; configs stopped at an early rung ran fewer instances). The "
            "dashed line joins the Pareto front, whose configs are ringed: no other config is as cheap and as good. "
            "Orange: the winner; hollow: dropped; squares: cascades (a cheap config first, the next when the check "
            "rejects its answer). Configs at the same point share a label.</figcaption></figure>")


def point(config: Config, x_key: str) -> Point:
    low, high = bounds(config.get("interval")) or (None, None)
    return Point(config["number"], float(config[x_key]), float(config["score"]), low, high,
                 dropped=bool(config.get("dropped")), cascade=is_cascade(mapping(config.get("config"))))


def answers(configs: Mapping[int, Config], ranking: Sequence[int], winner: int | None,
            target: Mapping[str, Any]) -> str:
    """Rows: instances; columns: the top configs; cells: the first answer line (with n samples, each distinct one
    and its count), green if it passed."""
    top = [configs[n] for n in ranking if results_of(configs[n])][:TOP]
    if not top:
        return ""
    instances = mapping(target.get("instances"))
    held_out = sequence(instances.get("held_out"))
    ordered = [*sequence(instances.get("tuning")), *held_out]
    found = {i for c in top for i in results_of(c)}
    ids = [i for i in dict.fromkeys([*ordered, *sorted(found, key=str)]) if i in found]
    headers = [f"#{c.get('number')}" + (" winner" if c.get("number") == winner else "")
               + f" · {score_text(c.get('score'), None)}" for c in top]
    rows = [f"<tr>{td(e(i) + (' <small>held out</small>' if i in held_out else ''))}"
            + "".join(answer_cell(results_of(c).get(i)) for c in top) + "</tr>" for i in ids]
    return f"<h3>Answers of the top {len(top)} configs</h3>{table(['instance', *headers], rows, 'answers')}"


def results_of(config: Config) -> Mapping[str, Any]:
    """A config's results on the instances of the search and, if it ran them, the held-out ones."""
    return {**mapping(config.get("results")), **mapping(mapping(config.get("held_out")).get("results"))}


def answer_cell(result: Any) -> str:
    if result is None:
        return td("not run", "muted")
    result = mapping(result)
    miss, metric = result.get("miss"), result.get("metric")
    notes = f"<small>{e(miss)}</small>" if miss else ""
    if finite(metric) and metric not in (0, 1):
        notes += f"<small>metric {fmt(metric)}</small>"
    cls = "miss" if miss else "pass" if metric is None or metric == 1 else "scored"
    samples = [str(answer) for answer in sequence(result.get("answers"))]
    if len(samples) > 1:  # n samples: each distinct answer with its count, the most frequent first
        counts = collections.Counter(samples)
        shown = "".join(f"<span class=\"sample\">{first_line(text)} <b>×{count}</b></span>"
                        for text, count in counts.most_common())
        return td(f"<small>{len(samples)} answers</small>{shown}{notes}", cls, title=miss)
    return td(first_line(result.get("answer")) + notes, cls, title=miss)
