"""`--llm-report x.json`: what a tune or a gate did, in a fixed key order, with no key in it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import API_KEY, read_lock, sentiment_test

TARGET = "test_sentiment.py::test_sentiment"
TOP = ["llmtune_report", "kind", "created", "versions", "endpoint", "prices", "settings", "targets"]
TUNE_TARGET = ["metric", "mode", "agg", "threshold", "verdict", "instances", "budgets", "spending", "plan",
               "configs", "ranking", "winner", "confirmation", "locked", "stopped", "error"]


def load(path: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.fixture
def tuned(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    pytester.makepyfile(test_sentiment=sentiment_test())
    result = pytester.runpytest("--llm-tune", "--llm-report", "tune.json")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"report written to {pytester.path / 'tune.json'}"])
    return pytester


def test_a_tune_report_holds_every_config_its_instances_and_the_winner(tuned: pytest.Pytester) -> None:
    data = load(tuned.path / "tune.json")

    assert list(data) == TOP and data["kind"] == "tune" and data["llmtune_report"] == 1
    assert data["versions"]["pytest-llmtune"] and data["versions"]["pytest"] and data["prices"]["built_in_date"]
    target = data["targets"][TARGET]
    assert list(target) == TUNE_TARGET
    assert len(target["configs"]) == 16 == target["plan"]["configs_drawn"]
    assert [c["number"] for c in target["configs"]] == list(range(16))
    assert sorted(target["ranking"]) == list(range(16))
    lock = read_lock(tuned.path)["targets"][TARGET]
    winner = target["configs"][target["winner"]]
    assert winner["config"] == lock["config"] == target["locked"]["config"]
    assert target["ranking"][0] == target["winner"]
    for config in target["configs"]:
        assert config["instances"] == len(config["results"]) > 0
        assert config["rung"] in (1, 2)
        for result in config["results"].values():
            assert result["metric"] in (0.0, 1.0) and result["answer"].split()[0] in ("positive", "negative")
            assert result["answers"][0] == result["answer"] and len(result["answers"]) == 1
            assert (result["miss"] is None) == (result["metric"] == 1.0)
    assert target["spending"]["requests"] > 0 and target["verdict"]["outcome"] == "passed"
    assert target["confirmation"]["instances"] == 24  # the sampled winner's fresh samples


def test_a_config_with_n_samples_reports_every_answer(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test().replace('"max_tokens": randint(1, 16),',
                                                                '"max_tokens": randint(1, 16), "n": 3,'))
    assert pytester.runpytest("--llm-tune", "--llm-report", "tune.json").ret == pytest.ExitCode.OK

    configs = load(pytester.path / "tune.json")["targets"][TARGET]["configs"]

    results = [result for config in configs for result in config["results"].values()]
    assert results and all(len(result["answers"]) == 3 for result in results)
    assert all(result["answers"][0] == result["answer"] for result in results)
    assert any(len(set(result["answers"])) > 1 for result in results)  # samples differ: each is shown


def test_the_key_never_lands_in_a_report(tuned: pytest.Pytester) -> None:
    assert API_KEY not in (tuned.path / "tune.json").read_text()
    tuned.runpytest("--llm-test", "--llm-report", "gate.json")
    assert API_KEY not in (tuned.path / "gate.json").read_text()


def test_a_rerun_writes_the_same_report_but_for_its_date_and_spending(tuned: pytest.Pytester) -> None:
    first = load(tuned.path / "tune.json")
    tuned.runpytest("--llm-tune", "--llm-report", "tune.json")
    second = load(tuned.path / "tune.json")

    for data in (first, second):
        data.pop("created"), data.pop("endpoint")  # the test server's port changes
        data["targets"][TARGET].pop("spending")  # the rerun replays: no new requests
    assert json.dumps(first) == json.dumps(second)  # same keys, same order, same values


@pytest.mark.parametrize("spread", [[], ["-n", "2"]])
def test_a_gate_report_holds_each_verdict_and_instance(tuned: pytest.Pytester, spread: list[str]) -> None:
    result = tuned.runpytest("--llm-test", "--llm-report", "gate.json", *spread)

    assert result.ret == pytest.ExitCode.OK
    data = load(tuned.path / "gate.json")
    assert list(data) == TOP and data["kind"] == "gate" and data["endpoint"] is None  # replay only
    target = data["targets"][TARGET]
    assert target["verdict"]["outcome"] == "passed" and target["verdict"]["message"].startswith("pass_rate ")
    assert target["verdict"]["score"] == pytest.approx(read_lock(tuned.path)["targets"][TARGET]["score"], abs=1e-6)
    assert len(target["instances"]) == 24
    missed = [i for i in target["instances"].values() if i["outcome"] == "missed"]
    assert missed and all(i["miss"].startswith("assert") and i["score"] == 0.0 for i in missed)


def test_the_ini_names_reports_and_a_bad_suffix_is_refused(tuned: pytest.Pytester) -> None:
    tuned.makeini("[pytest]\nllmtune_report = out/gate.json\n")
    tuned.runpytest("--llm-test")
    assert load(tuned.path / "out" / "gate.json")["kind"] == "gate"

    refused = tuned.runpytest("--llm-test", "--llm-report", "gate.txt")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        ["ERROR: report */gate.txt: give a path ending in .json (the data), .html (one page) or .md*"])
