"""The output fits the width pytest uses: the terminal's, or COLUMNS in a log (CI), where nothing is a terminal."""

from __future__ import annotations

import pytest
from openai_server import FakeOpenAI

from conftest import sentiment_test


def section(result: pytest.RunResult, title: str = "llmtune") -> list[str]:
    lines = result.outlines
    start = next(i for i, line in enumerate(lines) if line.startswith("=") and f" {title} " in line)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1:end]


@pytest.mark.parametrize("columns", [80, 100])
def test_a_tune_summary_in_a_log_fits_the_columns(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                   monkeypatch: pytest.MonkeyPatch, columns: int) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    pytester.makepyfile(test_sentiment=sentiment_test().replace('"model": "gpt-4o-mini"', '"model": "m"'))

    result = pytester.runpytest("--llm-tune", "-v")

    lines = section(result)
    assert lines and max(map(len, lines)) <= columns, max(lines, key=len)
    assert any(line.startswith("  ") for line in lines)  # prose wrapped, its continuation indented


def test_a_gate_summary_in_a_log_fits_the_columns(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    monkeypatch.setenv("COLUMNS", "80")

    result = pytester.runpytest("--llm-test")

    lines = [line for line in section(result) if line]
    assert lines[0].startswith("test_sentiment.py::test_sentiment: pass_rate ") and max(map(len, lines)) <= 80


def test_the_co_plan_at_80_columns_keeps_the_settings_that_differ(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    wide = sentiment_test().replace('"max_tokens": randint(1, 16),', """"max_tokens": randint(1, 16),
        "top_p": uniform(0.5, 1), "presence_penalty": uniform(-1, 1), "frequency_penalty": uniform(-1, 1),""")
    pytester.makepyfile(test_sentiment=wide)

    result = pytester.runpytest("--llm-tune", "--co")

    lines = section(result, "llmtune plan:")
    assert max(map(len, lines)) <= 80
    headers = [line.split() for line in lines if line.lstrip().startswith("#  ")]
    assert len(headers) > 1 and all(header[0] == "#" for header in headers)  # tables that fit, each numbered
    columns = [name for header in headers for name in header[1:]]
    assert sorted(columns) == sorted(["frequency_penalty", "max_tokens", "presence_penalty", "prompt", "temperature",
                                      "top_p", "tok/eval", "worst"])  # every setting that differs, and the numbers
    assert any(line.strip().startswith("prompt #1:") for line in lines)  # the legend names what the table shows
