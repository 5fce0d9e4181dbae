"""`pytest --llm-test` end to end: replay with no network, and each way the gate fails."""

from __future__ import annotations

import json

import pytest
from openai_server import FakeOpenAI

from conftest import assert_ran, read_lock, sentiment_test

TARGET = "test_sentiment.py::test_sentiment"


@pytest.fixture
def tuned(project: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A tuned project, then no endpoint and no key: the gate must work offline."""
    assert_ran(project.runpytest("--llm-tune"), 26)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # discard port: nothing listens
    monkeypatch.delenv("OPENAI_API_KEY")
    return project


def test_gate_passes_offline_with_the_locked_config(tuned: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    requests = openai_server.requests

    result = tuned.runpytest("--llm-test", "-v")

    assert result.ret == pytest.ExitCode.OK
    assert openai_server.requests == requests
    score = read_lock(tuned.path)["targets"][TARGET]["score"]
    result.stdout.fnmatch_lines([f"*{TARGET}[[]llmtune[]] PASSED*",
                                 f"{TARGET}: pass_rate {score:.3f} [[]95% CI *] on 24 instances (* failed an "
                                 f"assertion); locked {score:.3f}; all 24 results as locked: ok"])


def test_a_failed_assertion_is_a_miss_not_a_failure(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_always_positive=sentiment_test().replace(
        'texts[0].split()[0].lower() == case["label"]', 'texts[0].split()[0].lower() == "positive"'))
    pytester.runpytest("--llm-tune")

    result = pytester.runpytest("--llm-test", "-v")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*test_sentiment?case*? MISS*",
                                 "*: pass_rate 0.* on 24 instances (* failed an assertion)*: ok",
                                 "* passed, * missed*"])


def test_gate_fails_without_a_lock(project: pytest.Pytester) -> None:
    result = project.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=24, failed=1)
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: no lock in llmtune.lock: run `pytest --llm-tune {TARGET}` "
                                 "and commit llmtune.lock", f"FAILED {TARGET}[[]llmtune[]] - no lock*"])


def test_gate_fails_on_a_stale_lock(tuned: pytest.Pytester) -> None:
    tuned.makepyfile(test_sentiment=sentiment_test().replace("texts[0].split()", "texts[0].strip().split()"))

    result = tuned.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: the lock is stale (its test body, or a definition of its module "
                                 "that it uses, changed): score the locked "
                                 f"config again with `pytest --llm-test --llm-record {TARGET}` (records only "
                                 f"missing responses), or re-tune: `pytest --llm-tune {TARGET}`*"])


def test_gate_fails_below_the_threshold(tuned: pytest.Pytester) -> None:
    tuned.makepyfile(test_sentiment=sentiment_test(threshold=1.01))
    lock = read_lock(tuned.path)
    tuned.runpytest("--llm-tune")  # relock the changed source from the recordings: no endpoint needed
    assert read_lock(tuned.path)["targets"][TARGET]["config"] == lock["targets"][TARGET]["config"]

    result = tuned.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: pass_rate * below the threshold 1.01*"])


def test_gate_fails_below_the_locked_score(tuned: pytest.Pytester) -> None:
    lock = read_lock(tuned.path)
    lock["targets"][TARGET]["score"] = 1.5  # as if the locked config had done better than it now does
    del lock["targets"][TARGET]["results"]  # (a lock without per-instance results: tested against its score)
    (tuned.path / "llmtune.lock").write_text(json.dumps(lock))

    result = tuned.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: pass_rate * locked 1.500; difference -0.* p = * (one-sided, "
                                 "against the locked score *): significantly worse than the lock*"])


def test_missing_recording_says_how_to_record_it(tuned: pytest.Pytester, openai_server: FakeOpenAI,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tuned.path / "llmtune_cassettes/test_sentiment/test_sentiment.json").unlink()

    result = tuned.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*MissingRecordingError: no recording of POST /v1/chat/completions in *",
                                 "Record the missing responses with `pytest --llm-test --llm-record`*"])
    assert "_base_client.py" not in result.stdout.str()  # the message, not a traceback through the SDK
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    requests = openai_server.requests
    assert_ran(tuned.runpytest("--llm-test", "--llm-record"), 26)
    assert openai_server.requests == requests + 12  # 24 instances, 12 distinct reviews: none asked twice
    assert_ran(tuned.runpytest("--llm-test"), 26)


def test_corrupt_lockfile_fails_the_gate_and_is_left_alone(project: pytest.Pytester) -> None:
    (project.path / "llmtune.lock").write_text("{not json")

    result = project.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(passed=1, skipped=24, failed=1)
    result.stdout.fnmatch_lines(["*llmtune.lock is not a lockfile: not JSON*Restore it with `git checkout -- "
                                 "llmtune.lock`*"])
    assert (project.path / "llmtune.lock").read_text() == "{not json"


def test_corrupt_cassette_is_reported_and_left_alone(tuned: pytest.Pytester) -> None:
    cassette = tuned.path / "llmtune_cassettes/test_sentiment/test_sentiment.json"
    cassette.write_text("{broken")

    result = tuned.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*CassetteError: *test_sentiment.json is not a readable cassette*"])
    assert cassette.read_text() == "{broken"


def test_plain_pytest_skips_llm_eval_tests_and_runs_the_rest(project: pytest.Pytester) -> None:
    result = project.runpytest("-rs")

    result.assert_outcomes(passed=1, skipped=24)
    result.stdout.fnmatch_lines(["*llm_eval test: run `pytest --llm-tune` to search its settings or "
                                 "`pytest --llm-test` to gate on them*"])


def test_a_replay_only_gate_never_builds_the_sdk_client(tuned: pytest.Pytester) -> None:
    """Replays are read from the cassette before a request is built: the openai package is not even imported."""
    tuned.makeconftest('''
import sys

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"openai imported: {'openai' in sys.modules}")
''')

    result = tuned.runpytest_subprocess("--llm-test")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["openai imported: False"])
