"""Pacing live requests: rpm and tpm limits, and concurrency that halves on a 429 and climbs back."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock, sentiment_test
from pytest_llmtune.llm.pacing import EDGE, Pacer, reset_seconds


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("headers", "seconds"), [
    ({"retry-after": "2"}, 2.0), ({"Retry-After-Ms": "250"}, 0.25),
    ({"x-ratelimit-reset-requests": "1s", "x-ratelimit-reset-tokens": "6m0s"}, 360.0),
    ({"x-ratelimit-reset-tokens": "250ms"}, 0.25), ({"retry-after": "soon"}, None), ({}, None),
])
def test_the_reset_is_read_from_every_header_providers_send(headers: dict[str, str], seconds: float | None) -> None:
    assert reset_seconds(headers) == seconds


def test_a_429_halves_the_concurrency_and_pauses_every_request_then_it_climbs_back() -> None:
    clock = Clock()
    pacer = Pacer(8, clock=clock)

    with pacer.call() as report:
        report(429, {"retry-after": "3"})

    assert pacer.limit == 4 and pacer.paused_until == clock.now + 3
    assert pacer.throttled == "throttled: 429, paused 3s, concurrency 4/8"
    assert pacer._wait(0) == pytest.approx(3)  # every request waits out the pause
    clock.now += 3
    for _ in range(4 + 5 + 6 + 7):  # a run of successes as long as the concurrency raises it by one
        with pacer.call() as report:
            report(200, {})
    assert pacer.limit == 8 and pacer.throttled is None


def test_requests_and_tokens_per_minute_are_a_sliding_window() -> None:
    clock = Clock()
    pacer = Pacer(8, rpm=3, tpm=1000, clock=clock)
    for tokens in (100, 100, 100):
        with pacer.call(tokens) as report:
            report(200, {})
        clock.now += 10

    assert pacer._wait(0) == pytest.approx(30 + EDGE)  # the fourth request waits until the first leaves the minute
    clock.now += 30 + EDGE
    assert pacer._wait(0) == 0
    assert pacer._wait(900) == pytest.approx(10)  # 200 + 900 tokens in the minute: over 1,000


def test_a_tune_at_a_providers_rate_limit_backs_off_and_loses_no_evaluation(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Callable[[str, object], None]) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    pytester.makeini("[pytest]\nllmtune_max_retries = 6\n")
    openai_server.rate_limit, openai_server.window = 40, 2.0  # 1,200 a minute, in bursts of 40

    result = pytester.runpytest("--llm-tune")

    failed = result.stdout.str().count("raised on") + (result.ret != pytest.ExitCode.OK)
    throttled = next((line for line in result.stdout.lines if "429s (rate limits)" in line), "")
    record_property("reliability", json.dumps({  # a row of tests/test_reliability.py's table
        "tried": "a tune against a server allowing 40 requests per 2 s (429 with retry-after beyond)",
        "lost": failed, "detail": f"{openai_server.throttled} 429s; " + throttled.split(": ", 1)[-1][:60]}))
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert openai_server.throttled > 0
    result.stdout.fnmatch_lines(["*the endpoint answered * 429s (rate limits): concurrency went down to *"])
    assert read_lock(pytester.path)["targets"]  # every evaluation scored: no config dropped on an error
    assert "raised on" not in result.stdout.str()
    cassette = pytester.path / "llmtune_cassettes" / "test_sentiment" / "test_sentiment.json"
    assert all(r["response"]["status"]["code"] == 200 for r in json.loads(cassette.read_text())["interactions"])

