"""The tune's leaderboard: the ranked configs in a table that fits the terminal, long values (templates) shown as
labels with a legend of the text that tells them apart, and the winner's whole config as it is locked."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.search.cascade import CASCADE, is_cascade
from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.domains import callable_name
from pytest_llmtune.search.halving import SuccessiveHalving, Trial
from pytest_llmtune.search.result import HeldOut
from pytest_llmtune.search.stats import aggregate, interval

__all__ = ["LONG", "NAMES", "ORDER", "Board", "cell", "config_lines", "cut", "format_score", "labels_for", "legend",
           "plural", "render", "split_tables", "value_text", "varying_keys", "wrap"]

TEMPLATES = ("prompt", "messages")  # a config has one or the other: one column, "template"
ROWS = 10  # rows without -v; -v shows every config
LONG = 16  # a value whose text is longer is shown as a label (`prompt #2`) with a legend
NAMES = {"model": 40}  # keys whose values are names, shown whole up to this length: `model #1` says nothing
CONTEXT = 12  # characters of the shared text kept before the first difference, in a legend
SHORT = {"temperature": "temp", "max_tokens": "max_tok", "frequency_penalty": "freq_pen",
         "presence_penalty": "pres_pen", "instances": "inst", "tokens/inst": "tok/inst",
         "score [95% CI]": "score [CI]", "held-out [95% CI]": "held-out [CI]"}
ORDER = ("order: configs that reached a later rung (more instances) first, then by score on their instances, then "
         "the cheaper; # numbers the configs as the report does")


def value_text(value: Any) -> str:
    """A config value as one line: JSON, a callable by its name, demonstrations by their k and first fields."""
    if Demonstrations.encoded(value):
        value = Demonstrations.decode(value)
    if isinstance(value, Demonstrations):
        return value.label()
    if callable(value):
        return callable_name(value).rsplit(".", 1)[-1]
    return json.dumps(value, ensure_ascii=False, default=repr)


def format_score(values: Sequence[float], score: float, *, exact: bool = False, binary: bool | None = None) -> str:
    bounds = interval(values, exact=exact, binary=binary)
    if score != score:  # NaN: nothing scored
        return "-"
    if bounds is None:
        return f"{score:.3f}"
    return f"{score:.3f} [{bounds[0]:.2f}, {bounds[1]:.2f}]"


def plural(count: int, word: str) -> str:
    """`1 config`, `2 configs`, `1,024 requests`."""
    return f"{count:,} {word}" + ("" if count == 1 else "s")


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def wrap(line: str, width: int) -> list[str]:
    """A prose line wrapped to the terminal, its continuation indented; tables are fitted, never wrapped."""
    if len(line) <= width:
        return [line]
    indent = " " * (len(line) - len(line.lstrip()) + 2)
    return textwrap.wrap(line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


@dataclass
class Board:
    """The leaderboard of one target's search."""

    configs: Sequence[Mapping[str, Any]]
    ranked: Sequence[Trial]
    halving: SuccessiveHalving
    held_out: Mapping[int, HeldOut]
    width: int = 100
    verbose: bool = False
    binary: bool | None = None  # pass/fail results (no metric): Wilson's intervals; a metric's: the bootstrap

    def lines(self) -> list[str]:
        scored = [trial for trial in self.ranked if trial.metrics]
        shown = scored if self.verbose else scored[:ROWS]
        keys = self.varying_keys()
        labels = self.labels(keys, shown)
        lines = [ORDER, *self.table(shown, keys, labels)]
        if len(scored) > len(shown):
            lines.append(f"... and {plural(len(scored) - len(shown), 'more config')} (-v shows them all)")
        if len(scored) < len(self.ranked):
            missing = len(self.ranked) - len(scored)
            lines.append(f"{plural(missing, 'config')} drawn but not evaluated before the search stopped")
        return lines + self.legend(labels)

    def varying_keys(self) -> list[str]:
        return varying_keys(self.configs)

    def labels(self, keys: Sequence[str], shown: Sequence[Trial]) -> dict[str, dict[str, str]]:
        return labels_for([self.configs[t.index] for t in shown], [k for k in keys if k != CASCADE])

    def legend(self, labels: Mapping[str, Mapping[str, str]]) -> list[str]:
        return legend(labels, self.width)

    def cell(self, config: Mapping[str, Any], key: str, labels: Mapping[str, Mapping[str, str]]) -> str:
        if key == CASCADE and is_cascade(config):  # its stages by their numbers, cheap first
            return stage_numbers(config, self.configs)
        return cell(config, key, labels)

    def table(self, shown: Sequence[Trial], keys: Sequence[str],
              labels: Mapping[str, Mapping[str, str]]) -> list[str]:
        if not shown:
            return []
        score_headers = self.score_headers(shown)
        cells = [self.score_cells(rank, trial) for rank, trial in enumerate(shown, 1)]
        scores = [[row[header] for header in score_headers] for row in cells]
        settings = [[self.cell(self.configs[t.index], key, labels) for key in keys] for t in shown]
        # one table at full names, else at short names, else split into tables of columns that fit, each
        # beginning with rank and #
        for short in (False, True):
            names = [SHORT.get(h, h) if short else h for h in (*score_headers[:2], *keys, *score_headers[2:])]
            rows = [[*s[:2], *c, *s[2:]] for s, c in zip(scores, settings, strict=True)]
            lines = render(rows, names)
            if max(map(len, lines)) <= self.width:
                return lines
        first, first_names = [s[:2] for s in scores], ["rank", "#"]
        score_names = [SHORT.get(h, h) for h in score_headers[2:]]
        return [*split_tables(first, first_names, [s[2:] for s in scores], score_names, self.width), "",
                *split_tables(first, first_names, settings, [SHORT.get(k, k) for k in keys], self.width)]

    def score_headers(self, shown: Sequence[Trial]) -> list[str]:
        headers = ["rank", "#", "instances", "score [95% CI]"]
        if self.held_out:
            headers.append("held-out [95% CI]")
        headers.append("tokens/inst")
        if any(trial.cost for trial in shown):
            headers.append("$/inst")
        if any(trial.dropped for trial in shown):
            headers.append("note")
        return headers

    def score_cells(self, rank: int, trial: Trial) -> dict[str, str]:
        values = [trial.metrics[i] for i in sorted(trial.metrics)]
        return {"rank": str(rank), "#": str(trial.index), "instances": str(len(values)),
                "score [95% CI]": format_score(values, self.halving.score(trial), binary=self.binary),
                "held-out [95% CI]": self.held_out_cell(self.held_out.get(trial.index)),
                "tokens/inst": f"{trial.tokens_per_instance:.1f}", "$/inst": f"{trial.cost_per_instance:.6f}",
                "note": dropped_note(trial)}

    def held_out_cell(self, held: HeldOut | None) -> str:
        if held is None:
            return ""
        if held.error:
            return "not scored: budget" if "budget" in held.error else "error"
        values = [held.metrics[i] for i in sorted(held.metrics)]
        return format_score(values, aggregate(values, self.halving.agg), exact=True, binary=self.binary)


NUMBERS = {"rank", "#", "instances", "inst", "tokens/inst", "tok/inst", "$/inst"}


def varying_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The settings that differ between `configs`, in the space's order; prompt and messages as one column,
    "template", when each config has one or the other."""
    keys = list(dict.fromkeys(key for config in configs for key in config))
    keys = [k for k in keys if len({value_text(c.get(k)) if k in c else "-" for c in configs}) > 1]
    if set(TEMPLATES) <= set(keys) and not any(set(TEMPLATES) <= set(c) for c in configs):
        first = min(keys.index(k) for k in TEMPLATES)
        keys = [*keys[:first], "template", *(k for k in keys[first:] if k not in TEMPLATES)]
    return keys


def labels_for(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """key -> value text -> its label, for keys with a long value; numbered in the order of `rows`."""
    labels = {}
    for key in [k for k in keys if k != "template"] + (list(TEMPLATES) if "template" in keys else []):
        texts = [value_text(row[key]) for row in rows if key in row and not isinstance(row[key], (int, float))
                 and row[key] is not None]
        if any(len(text) > NAMES.get(key, LONG) for text in texts):
            labels[key] = {text: f"{key} #{number}" for number, text in enumerate(dict.fromkeys(texts), 1)}
    return labels


def legend(labels: Mapping[str, Mapping[str, str]], width: int) -> list[str]:
    """Each label with the text that tells it apart from the others of its key (their shared start elided)."""
    lines = []
    for named in labels.values():
        for text, label in named.items():
            # the longest start it shares with another label of its key: what follows tells them apart
            shared = max((len(os.path.commonprefix([text, other])) for other in named if other != text), default=0)
            start = max(shared - CONTEXT, 0)
            lines.append(cut(f"  {label}: " + ("…" if start else "") + text[start:], width - 1))
    return ["legend (the text that tells them apart):", *lines] if lines else []


def cell(config: Mapping[str, Any], key: str, labels: Mapping[str, Mapping[str, str]]) -> str:
    if key == "template":
        key = next(k for k in TEMPLATES if k in config)
    if key not in config:
        return "-"
    value = config[key]
    if key in labels and value_text(value) in labels[key]:  # None and numbers have no label
        return labels[key][value_text(value)]
    if isinstance(value, float):
        return f"{value:.3g}"
    return cut(value if isinstance(value, str) else value_text(value), NAMES.get(key, LONG))


def render(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> list[str]:
    """A plain table: numbers right-aligned, two spaces between columns, a dash rule under the headers."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(width) if header in NUMBERS else cell.ljust(width)
                         for cell, width, header in zip(cells, widths, headers, strict=True)).rstrip()

    return [line(headers), "  ".join("-" * width for width in widths), *(line(row) for row in rows)]


def split_tables(first: Sequence[Sequence[str]], first_names: Sequence[str], rows: Sequence[Sequence[str]],
                 names: Sequence[str], width: int) -> list[str]:
    """Tables of as many of `names`' columns as fit in `width`, each beginning with the `first` columns (the row's
    rank and number), one after another: a narrow terminal still shows every column."""
    def chunk(columns: Sequence[int]) -> list[str]:
        return render([[*f, *(row[c] for c in columns)] for f, row in zip(first, rows, strict=True)],
                      [*first_names, *(names[c] for c in columns)])

    chunks: list[list[int]] = [[]]
    for column in range(len(names)):
        if chunks[-1] and max(map(len, chunk([*chunks[-1], column]))) > width:
            chunks.append([])
        chunks[-1].append(column)
    tables = [chunk(columns) for columns in chunks if columns]
    return [line for number, table in enumerate(tables) for line in ([""] if number else []) + table]


def dropped_note(trial: Trial) -> str:
    if not trial.dropped:
        return ""
    return "dropped: error" if trial.dropped.startswith("error") else "dropped: cost"


def stage_numbers(config: Mapping[str, Any], configs: Sequence[Mapping[str, Any]]) -> str:
    """A cascade by its stages' numbers among `configs`: "#1→#3"."""
    return "→".join(f"#{configs.index(stage)}" if stage in configs else "?" for stage in config[CASCADE])


def config_lines(encoded: Mapping[str, Any], width: int, shares: Sequence[float] = ()) -> list[str]:
    """The locked config, one setting a line, in full (as the lockfile holds it); a cascade's stage by stage, with
    the share of the instances each answered."""
    if is_cascade(encoded):
        lines = [f"  a cascade of {len(encoded[CASCADE])} stages, each call trying them in order until accept takes "
                 "an answer:"]
        for number, stage in enumerate(encoded[CASCADE]):
            share = f" (answered {shares[number]:.0%} of the instances)" if number < len(shares) else ""
            lines += [f"  stage {number + 1}{share}:",
                      *("  " + line for line in config_lines(stage, width - 2))]
        return lines
    lines = []
    for key, value in encoded.items():
        if Demonstrations.encoded(value):
            lines += demonstration_lines(key, Demonstrations.decode(value), width)
            continue
        text = f"  {key}: {json.dumps(value, ensure_ascii=False)}"
        lines += textwrap.wrap(text, width, subsequent_indent="    ", drop_whitespace=False,
                               break_on_hyphens=False) or [text]
    return lines


def demonstration_lines(key: str, found: Demonstrations, width: int) -> list[str]:
    """Locked demonstrations: how they are rendered, then each one's fields (and the spare an instance that is one
    of them sees instead)."""
    def quoted(text: str | None) -> str:
        return json.dumps(text, ensure_ascii=False)

    how = (f"format {quoted(found.format)}" if found.format is not None else
           f"user {quoted(found.user)}, assistant {quoted(found.assistant)}")
    lines = [cut(f"  {key}: {plural(found.k, 'demonstration')}, {how}", width - 1)]
    named = [(f"{number}.", demo) for number, demo in enumerate(found.items, 1)]
    named += [("spare:", found.spare)] if found.spare is not None else []
    return lines + [cut(f"    {label} {json.dumps(demo, ensure_ascii=False)}", width - 1) for label, demo in named]
