"""`pytest --llm-test --llm-prune` end to end: a passing gate cuts its target's cassette to what it replayed,
the gate then passes offline on what is left, and every other case leaves the cassette as it was and says why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import assert_ran, sentiment_test
from pytest_llmtune.store.cassette import request_key, size_words

TARGET = "test_sentiment.py::test_sentiment"
CASSETTE = "llmtune_cassettes/test_sentiment/test_sentiment.json"
OFFLINE = "http://127.0.0.1:9/v1"  # the discard port: nothing listens


@pytest.fixture
def tuned(project: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """A tuned project, then no endpoint and no key: a gate that needs a request fails."""
    assert_ran(project.runpytest("--llm-tune"), 26)
    go_offline(monkeypatch)
    return project


def go_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", OFFLINE)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def interactions(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(path.read_text())["interactions"]
    return found


def key_of(interaction: dict[str, Any]) -> str:
    request = interaction["request"]
    return request_key(request["method"], request["uri"], request["headers"], request["body"])


def gate_replays(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    """The recordings a gate replays, found by pruning; the cassette is then put back as it was."""
    cassette = pytester.path / CASSETTE
    text = cassette.read_text()
    pytester.runpytest("--llm-test", "--llm-prune")
    replayed = interactions(cassette)
    cassette.write_text(text)
    return replayed


def without(pytester: pytest.Pytester, removed: list[dict[str, Any]]) -> None:
    """Write the cassette without the `removed` recordings."""
    cassette = pytester.path / CASSETTE
    keys = {key_of(interaction) for interaction in removed}
    kept = [interaction for interaction in interactions(cassette) if key_of(interaction) not in keys]
    cassette.write_text(json.dumps({"interactions": kept, "version": 1}))


def test_prune_keeps_what_the_gate_replays_and_the_gate_passes_offline_on_it(tuned: pytest.Pytester,
                                                                             openai_server: FakeOpenAI) -> None:
    cassette = tuned.path / CASSETTE
    recorded, size = len(interactions(cassette)), cassette.stat().st_size
    requests = openai_server.requests

    result = tuned.runpytest("--llm-test", "--llm-prune")

    assert result.ret == pytest.ExitCode.OK
    kept = interactions(cassette)
    assert 0 < len(kept) < recorded
    result.stdout.fnmatch_lines([f"pruned {CASSETTE}: {recorded} -> {len(kept)} recordings "
                                 f"({size_words(size)} -> {size_words(cassette.stat().st_size)})"])
    keys = [key_of(interaction) for interaction in kept]
    assert keys == sorted(keys)  # the order a save writes: diff-friendly, the same whatever the requests' order
    assert json.loads(cassette.read_text())["version"] == 1
    text = cassette.read_text()
    again = tuned.runpytest("--llm-test", "--llm-prune")
    assert again.ret == pytest.ExitCode.OK
    again.stdout.fnmatch_lines([f"{TARGET}: * on 24 instances *; all 24 results as locked: ok",
                                f"not pruned {CASSETTE}: the gate replays all {len(kept)} recordings"])
    assert cassette.read_text() == text
    assert openai_server.requests == requests


def test_a_selection_that_keeps_the_target_item_prunes_for_every_instance(tuned: pytest.Pytester) -> None:
    """The verdict evaluates the deselected instances too, so what it replayed is what the whole gate needs."""
    replayed = gate_replays(tuned)

    result = tuned.runpytest("--llm-test", "--llm-prune", "-k", "case0 or llmtune")

    assert_ran(result, 2)  # case0 and the verdict
    result.stdout.fnmatch_lines([f"pruned {CASSETTE}: * -> {len(replayed)} recordings *"])
    assert_ran(tuned.runpytest("--llm-test"), 26)


def test_recordings_made_by_llm_record_count_as_replayed(tuned: pytest.Pytester, openai_server: FakeOpenAI,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cassette = tuned.path / CASSETTE
    recorded = len(interactions(cassette))
    replayed = gate_replays(tuned)
    without(tuned, replayed)  # only the recordings the gate does not replay: it must record its own again
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    requests = openai_server.requests

    result = tuned.runpytest("--llm-test", "--llm-record", "--llm-prune")

    assert_ran(result, 26)
    assert openai_server.requests == requests + len(replayed)
    result.stdout.fnmatch_lines([f"pruned {CASSETTE}: {recorded} -> {len(replayed)} recordings *"])
    assert sorted(map(key_of, interactions(cassette))) == sorted(map(key_of, replayed))
    go_offline(monkeypatch)
    assert_ran(tuned.runpytest("--llm-test"), 26)
    assert openai_server.requests == requests + len(replayed)


def deselect_the_target(pytester: pytest.Pytester) -> list[str]:
    return ["-k", "case0 or case1"]


def make_the_lock_stale(pytester: pytest.Pytester) -> list[str]:
    pytester.makepyfile(test_sentiment=sentiment_test().replace("texts[0].split()", "texts[0].strip().split()"))
    return []


def fail_one_setup(pytester: pytest.Pytester) -> list[str]:
    pytester.makeconftest('''
def pytest_runtest_setup(item):  # a hook, not a fixture: the lock stays fresh
    if item.name.endswith("[case3]"):
        raise RuntimeError("no database")
''')
    return []


def remove_a_recording_the_gate_replays(pytester: pytest.Pytester) -> list[str]:
    without(pytester, gate_replays(pytester)[:1])
    return []


@pytest.mark.parametrize(("change", "why"), [
    (deselect_the_target, f"its gate did not run ({TARGET}[[]llmtune[]] was not selected, or the session stopped "
                          "before it)"),
    (make_the_lock_stale, "its gate did not pass; fix it first *"),
    (fail_one_setup, "its gate did not pass; fix it first *"),
    (remove_a_recording_the_gate_replays, "its gate did not pass; fix it first *"),
])
def test_a_target_not_gated_in_full_keeps_its_cassette_and_says_why(tuned: pytest.Pytester, change: Any,
                                                                    why: str) -> None:
    options = change(tuned)
    cassette = tuned.path / CASSETTE
    text = cassette.read_text()

    result = tuned.runpytest("--llm-test", "--llm-prune", *options)

    result.stdout.fnmatch_lines([f"not pruned {CASSETTE}: {why}"])
    assert cassette.read_text() == text


def test_a_request_with_no_recording_keeps_the_cassette_even_when_the_body_swallows_it(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test().replace(
        "    texts = llm(case)\n",
        "    try:\n        texts = llm(case)\n    except Exception:\n        texts = [case['label']]\n"))
    assert_ran(pytester.runpytest("--llm-tune"), 26)
    go_offline(monkeypatch)
    without(pytester, gate_replays(pytester)[:1])
    cassette = pytester.path / CASSETTE
    text = cassette.read_text()

    result = pytester.runpytest("--llm-test", "--llm-prune")

    assert result.ret == pytest.ExitCode.OK  # the body answered for the model: the gate cannot tell
    result.stdout.fnmatch_lines([f"not pruned {CASSETTE}: 1 request found no recording; record with "
                                 "`pytest --llm-test --llm-record --llm-prune`"])
    assert cassette.read_text() == text


def test_cassettes_of_targets_not_in_the_session_are_untouched(project: pytest.Pytester, openai_server: FakeOpenAI,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    project.makepyfile(test_other=sentiment_test())
    assert_ran(project.runpytest("--llm-tune"), 52)
    go_offline(monkeypatch)
    other = project.path / "llmtune_cassettes/test_other/test_sentiment.json"
    text = other.read_text()

    result = project.runpytest("--llm-test", "--llm-prune", "test_sentiment.py")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"pruned {CASSETTE}: *"])
    assert "test_other" not in result.stdout.str()
    assert other.read_text() == text


@pytest.mark.parametrize(("options", "message"), [
    (["--llm-prune"], "--llm-prune goes with --llm-test: it keeps the recordings the gate replays"),
    (["--llm-test", "--llm-live", "--llm-prune"], "--llm-prune and --llm-live are separate: --llm-live replays "
                                                  "nothing*"),
    (["--llm-test", "--llm-prune", "-n", "2"], "--llm-prune does not run under pytest-xdist (-n/--dist): each "
                                               "worker replays only part of the recordings; prune without -n"),
])
def test_prune_options_that_do_not_fit_are_refused(project: pytest.Pytester, options: list[str],
                                                   message: str) -> None:
    result = project.runpytest(*options)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
