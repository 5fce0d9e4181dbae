"""The examples/ are run here, so they cannot rot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock

EXAMPLES = Path(__file__).parent.parent / "examples"


def copy_example(name: str, pytester: pytest.Pytester) -> Path:
    source = EXAMPLES / name
    for path in source.iterdir():
        if path.is_file():
            shutil.copy(path, pytester.path / path.name)
        else:
            shutil.copytree(path, pytester.path / path.name)
    return pytester.path


def test_sentiment_example_tunes_then_gates_offline(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    copy_example("sentiment", pytester)

    tune = pytester.runpytest("--llm-tune")
    assert tune.ret == pytest.ExitCode.OK
    outcomes = tune.parseoutcomes()
    assert outcomes["passed"] + outcomes.get("missed", 0) == 17  # 16 instances and the target's verdict
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    gate = pytester.runpytest("--llm-test")

    # the lock holds the confirmation run of the winner (fresh samples, not the lucky ones the search picked it
    # by); the gate replays exactly those, and passes exactly when they clear the threshold
    score = read_lock(pytester.path)["targets"]["test_sentiment.py::test_sentiment"]["score"]
    tune.stdout.fnmatch_lines([f"confirmed with fresh samples of the winner on all 16 instances: pass_rate "
                               f"{score:.3f}*"])
    gate.stdout.fnmatch_lines([f"*test_sentiment.py::test_sentiment: pass_rate {score:.3f} * on 16 instances *; "
                               f"locked {score:.3f}; all 16 results as locked*"])
    assert (gate.ret == pytest.ExitCode.OK) == (score >= 0.8)


@pytest.mark.parametrize(("name", "instances"), [("arithmetic", 40), ("capitals", 40), ("cascade", 150),
                                                 ("demos", 100), ("humaneval", 8), ("models", 40)])
def test_committed_example_passes_the_gate_offline(name: str, instances: int, pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A fresh clone gates on the committed lockfile and recordings: no server, no key, no network; and in this
    venv (pytest-asyncio installed, no ini setting passed in) without a warning line."""
    copy_example(name, pytester)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS")

    result = pytester.runpytest_subprocess("--llm-test")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    output = (result.stdout.str() + result.stderr.str()).lower()
    assert "warning" not in output, output
    result.stdout.fnmatch_lines([f"*: pass_rate * on {instances} instances (* failed an assertion); locked *: ok"])


def test_the_summaries_example_gates_offline_replaying_the_judges_calls(pytester: pytest.Pytester,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Its two targets, one on ROUGE-L and one on an LLM judge, pass the gate on the committed recordings with no
    endpoint to reach: the judge's calls are replayed as the config's are (a request would fail, the port is
    closed), and every result is as locked."""
    copy_example("summaries", pytester)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PYTEST_ADDOPTS")
    lock = json.loads((pytester.path / "llmtune.lock").read_text())["targets"]
    assert "judge" in lock["summaries-judge"]["fingerprints"] and "judge" not in lock["summaries-rouge"]["fingerprints"]

    result = pytester.runpytest_subprocess("--llm-test")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines_random(["*summaries-rouge: rougeL * on 40 instances*; all 40 results as locked*: ok",
                                        "*summaries-judge: judge * on 40 instances*; all 40 results as locked*: ok"])


def test_the_application_falls_back_to_a_working_endpoint(openai_server: FakeOpenAI,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """examples/arithmetic/app.py loads the locked config and answers through the second endpoint."""
    monkeypatch.syspath_prepend(str(EXAMPLES / "arithmetic"))
    import app  # type: ignore[import-not-found]

    closed = "http://127.0.0.1:9/v1"
    answer, response = app.add(12, 35, [closed, openai_server.base_url], retry_timeout=0.5)

    assert response.config_index == 1
    assert response.config["base_url"] == openai_server.base_url
    assert app.CONFIG["split_n"]  # sampled as the tune did: n single-sample requests
    assert openai_server.requests == app.CONFIG["n"]
    assert all(body["prompt"].endswith("12 + 35 =") and "n" not in body for body in openai_server.bodies)
    assert answer in ("47", "48")  # the test server answers the sum, or errs by one
