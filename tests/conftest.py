from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai  # noqa: F401
import pytest
import scipy.stats  # noqa: F401  (pytester's in-process runs drop modules they import; numpy cannot load twice)
import vcr  # noqa: F401  (imported once here, before pytester's in-process runs, as the others)
from openai_server import FakeOpenAI

from pytest_llmtune.store.lockfile import LockEntry

API_KEY = "sk-test-0123456789-secret"


def lock_entry(config: dict[str, Any], **fields: Any) -> LockEntry:
    """A lock entry for `config`; the other fields plain unless given."""
    plain: dict[str, Any] = {"score": 0.9, "interval": None, "metric": "pass_rate", "mode": "max", "agg": "mean",
                             "threshold": None, "instances": 1, "tokens_total": 0, "cost_total": 0.0, "seed": 0,
                             "split_n": False, "plugin_version": "0.1.0", "fingerprints": {}}
    return LockEntry(config=config, **{**plain, **fields})

SENTIMENT_CASES = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform, randint

WORDS = ["Loved every minute", "great fun", "a waste of time", "boring and long", "brilliant acting",
         "I enjoyed it", "dull", "best film", "terrible plot", "wonderful score", "awful", "a masterpiece"]
POSITIVE = ("loved", "great", "brilliant", "enjoyed", "best", "wonderful", "masterpiece")
CASES = [{"review": w, "label": "positive" if any(p in w.lower() for p in POSITIVE) else "negative"}
         for w in WORDS * 2]
'''  # the sentiment target's 24 cases (12 reviews twice), for a test module's text

SENTIMENT_TEST = SENTIMENT_CASES + '''
@llm_eval(
    space={
        "model": "gpt-4o-mini",
        "prompt": choice([
            "Review: {review}\\nSentiment (positive or negative):",
            "Examples:\\nReview: Great fun -> positive\\nReview: A waste of time -> negative\\nReview: {review} ->",
        ]),
        "temperature": uniform(0, 1),
        "max_tokens": randint(1, 16),
    },
    threshold=THRESHOLD,
)
@pytest.mark.parametrize("case", CASES)
def test_sentiment(llm, case):
    texts = llm(case)
    assert texts[0].split()[0].lower() == case["label"]


def test_plain():
    assert "plain".upper() == "PLAIN"
'''


@pytest.fixture(autouse=True)
def _quiet_pytest_asyncio(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytester projects run with pytest-asyncio's loop scope set, as a user's project would (else it warns), and
    in a wide log (COLUMNS=1000): the summary wraps its prose to the width pytest uses, and the tests read each
    line whole; the tests of wrapping set COLUMNS themselves."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it starts
        monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
        monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture(scope="session", autouse=True)
def _import_the_http_stack_once() -> None:
    """Make the SDK import its lazily loaded modules (errors included) in this process, before any pytester run.

    pytester's in-process runs drop the modules first imported inside them; a module imported again later
    holds new exception classes, and httpx2 would then fail to map httpcore2's errors to its own.
    """
    server = FakeOpenAI().start()
    client = openai.OpenAI(base_url=server.base_url, api_key="sk-warm-up", max_retries=0)
    client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    client.completions.create(model="m", prompt="hi")
    server.stop()
    with contextlib.suppress(openai.APIConnectionError):  # a refused connection, to load the error paths too
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


def sentiment_test(threshold: float = 0.5) -> str:
    return SENTIMENT_TEST.replace("THRESHOLD", repr(threshold))


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """A fresh OpenAI-compatible server on 127.0.0.1, and the openai client's environment pointing at it."""
    server = FakeOpenAI().start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    yield server
    server.stop()


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project holding the sentiment target and a plain test."""
    pytester.makepyfile(test_sentiment=sentiment_test())
    return pytester


def read_lock(path: Path) -> dict[str, Any]:
    lock: dict[str, Any] = json.loads((path / "llmtune.lock").read_text())
    return lock


def assert_ran(result: pytest.RunResult, total: int) -> None:
    """Every item ran and none failed or errored: each instance passed or missed (a failed assertion, which the
    locked config's samples may give), and the target's verdict passed."""
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) + outcomes.get("missed", 0) == total, outcomes


RELIABILITY: list[dict[str, Any]] = []  # rows of tests/test_reliability.py, from the reports (xdist brings them here)
EDGES: list[dict[str, Any]] = []  # rows of tests/test_edges.py


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call":
        RELIABILITY.extend(json.loads(str(value)) for name, value in report.user_properties if name == "reliability")
        EDGES.extend(json.loads(str(value)) for name, value in report.user_properties if name == "edge")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if EDGES:
        from test_edges import rows_table as edge_table

        terminalreporter.section("edges: what a user wrote, and what the tool did")
        for line in edge_table(sorted(EDGES, key=lambda row: row["written"])):
            terminalreporter.write_line(line)
    if not RELIABILITY:
        return
    from test_reliability import rows_table

    terminalreporter.section("reliability: what each test tried, and what was lost (for run_code: what escaped)")
    for line in rows_table(sorted(RELIABILITY, key=lambda row: row["tried"])):
        terminalreporter.write_line(line)
