"""The tune's leaderboard: fits the width, tells templates apart, shows more with -v, prints the winner in full."""

from __future__ import annotations

import random
from typing import Any

import pytest

from pytest_llmtune.report.leaderboard import ORDER, Board, config_lines, legend, wrap
from pytest_llmtune.search.halving import SuccessiveHalving, Trial
from pytest_llmtune.search.result import HeldOut

SYSTEM = {"role": "system", "content": "You are a careful assistant who answers geography questions in one word."}


def configs(count: int) -> list[dict[str, Any]]:
    rng = random.Random(0)
    templates: list[dict[str, Any]] = [
        {"api": "chat", "messages": [SYSTEM, {"role": "user", "content": "Capital of {country}?"}]},
        {"api": "chat", "messages": [SYSTEM, {"role": "user", "content": "Name the capital city of {country}."}]},
        {"api": "completions", "prompt": "Country: France\nCapital: Paris\n\nCountry: {country}\nCapital:"},
    ]
    return [{"model": "gpt-4o-mini", **templates[i % 3], "temperature": rng.uniform(0, 1),
             "max_tokens": rng.randint(4, 64), "n": rng.choice([1, 3]), "stop": rng.choice([["\n"], None])}
            for i in range(count)]


def board(count: int = 14, width: int = 100, verbose: bool = False, held: bool = True,
          dropped: bool = True) -> Board:
    rng = random.Random(1)
    halving = SuccessiveHalving(count, 30)
    trials = []
    for index in range(count):
        instances = 30 if index < 5 else 10
        trial = Trial(index, metrics={i: float(rng.random() < 0.6) for i in range(instances)},
                      tokens=instances * rng.randint(40, 300), cost=instances * 0.0001 * rng.random())
        trial.dropped = "cost: over the inference budget" if dropped and index == count - 1 else None
        trials.append(trial)
    held_out = {0: HeldOut(metrics=dict.fromkeys(range(30, 40), 1.0))} if held else {}
    return Board(configs(count), halving.rank(trials), halving, held_out, width, verbose)


@pytest.mark.parametrize("width", [60, 80, 100, 120, 200])
def test_the_leaderboard_fits_the_terminal(width: int) -> None:
    lines = board(width=width).lines()

    table = [line for line in lines if not line.startswith(("order:", "legend", "  "))]
    assert max(map(len, table)) <= width
    assert all(len(line) <= width for line in lines if line.startswith("  "))  # the legend is cut to fit


def test_a_wide_terminal_gets_one_table_with_full_names() -> None:
    lines = board(width=250).lines()

    header = lines[1]
    assert header.split()[:3] == ["rank", "#", "api"] and "temperature" in header and "score [95% CI]" in header
    assert not any(line == "" for line in lines)  # one table, not scores and settings apart


def test_templates_that_share_a_system_message_are_told_apart() -> None:
    lines = board().lines()

    legend = lines[lines.index("legend (the text that tells them apart):") + 1:]
    first, second = (line for line in legend if line.startswith("  messages #"))
    assert first.split(": ", 1)[1] != second.split(": ", 1)[1]
    assert "Capital of {country}?" in first and "Name the capital city" in second
    assert "…" in first  # the shared system message is elided
    assert any(line.startswith("  prompt #1: ") for line in legend)


def test_no_two_rows_look_the_same() -> None:
    lines = board(count=30, verbose=True).lines()

    rows = [line for line in lines if line.strip()[:1].isdigit()]
    assert len(rows) == len(set(rows))


def test_more_rows_with_verbose() -> None:
    quiet, verbose = board(count=30).lines(), board(count=30, verbose=True).lines()

    assert "... and 20 more configs (-v shows them all)" in quiet
    assert not any(line.startswith("... and") for line in verbose)
    assert len(verbose) > len(quiet)


def test_the_order_is_explained_and_no_column_is_empty() -> None:
    lines = board(count=5, held=False, dropped=False).lines()

    assert lines[0] == ORDER
    headers = [name for line in lines if line.startswith("rank") for name in line.split()]
    assert "$/inst" in headers and "held-out" not in headers and "note" not in headers
    assert "template" in headers and "messages" not in headers and "prompt" not in headers


def test_a_dropped_config_says_why() -> None:
    lines = board(count=14, width=250, verbose=True).lines()

    assert lines[1].split()[-1] == "note"
    assert any(line.rstrip().endswith("dropped: cost") for line in lines)


def test_the_winner_is_printed_in_full_as_locked() -> None:
    prompt = "Country: France\nCapital: Paris\n\n" * 6 + "Country: {country}\nCapital:"
    encoded = {"api": "completions", "model": "gpt-4o-mini", "prompt": prompt, "temperature": 0.123456}

    lines = config_lines(encoded, 60)

    assert max(map(len, lines)) <= 60
    joined = "".join(line[4:] if line.startswith("    ") else "\n" + line[2:] for line in lines)
    assert '"Country: France\\nCapital: Paris' in joined and "temperature: 0.123456" in joined
    assert joined.count("Country: France") == 6  # nothing cut


def test_prose_wraps_with_an_indent() -> None:
    assert wrap("short", 100) == ["short"]
    lines = wrap("word " * 40, 50)
    assert all(len(line) <= 50 for line in lines) and lines[1].startswith("  ")


def test_a_setting_with_none_and_long_values_shows_both() -> None:
    halving = SuccessiveHalving(2, 10)
    trials = [Trial(i, metrics=dict.fromkeys(range(10), 1.0)) for i in range(2)]
    stops = [None, ["\n\n", "###", "Answer:", "Question:"]]
    shown = Board([{"prompt": "x", "stop": stop} for stop in stops], trials, halving, {}, 100).lines()

    assert any("null" in line.split() for line in shown) and any("stop #1" in line for line in shown[3:])
    assert "  stop #1: [\"\\n\\n\", \"###\", \"Answer:\", \"Question:\"]" in shown


def test_each_label_is_told_apart_from_the_one_it_is_most_like() -> None:
    shared = "You are a careful assistant. " * 5
    labels = {"prompt": {f'"{shared}Answer in one word."': "prompt #1", f'"{shared}Answer in a sentence."': "prompt #2",
                         '"Short."': "prompt #3"}}

    lines = legend(labels, 80)

    assert lines[1].startswith("  prompt #1: …") and "one word" in lines[1]
    assert lines[2].startswith("  prompt #2: …") and "a sentence" in lines[2]
    assert lines[3] == '  prompt #3: "Short."'
