"""`pytest --llm-tune` end to end, against the OpenAI-compatible server in openai_server.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import API_KEY, assert_ran, read_lock


def test_tune_writes_the_winner_to_the_lockfile(project: pytest.Pytester, openai_server: FakeOpenAI,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the leaderboard at 80 columns: short names
    result = project.runpytest("--llm-tune")

    assert_ran(result, 26)
    lock = read_lock(project.path)["targets"]["test_sentiment.py::test_sentiment"]
    assert lock["instances"] == 24
    assert lock["config"]["prompt"].startswith("Examples:")  # the few-shot template is the better one here
    assert set(lock["fingerprints"]) == {"space", "instances", "body", "config"}
    assert len(lock["results"]) == 24 and set(lock["results"].values()) <= {0, 1}
    assert lock["tokens"]["total"] > 0
    result.stdout.fnmatch_lines(["*llmtune: tuning test_sentiment.py::test_sentiment: 16 configs*",
                                 "*rung 1/*", "rank*#*inst*score*tok/inst*", "rank*#*prompt*",
                                 "*locked in llmtune.lock (updated)*"])
    assert "no held-out share: with fewer than 40 instances none is kept by default" in " ".join(
        result.stdout.str().split())  # 24 instances: the user is told the score is where the search chose


def test_rerun_with_same_seed_makes_no_requests(project: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    assert_ran(project.runpytest("--llm-tune"), 26)
    first_requests = openai_server.requests
    lock_before = (project.path / "llmtune.lock").read_text()

    result = project.runpytest("--llm-tune")

    assert_ran(result, 26)
    assert first_requests > 0
    assert openai_server.requests == first_requests
    assert (project.path / "llmtune.lock").read_text() == lock_before
    result.stdout.fnmatch_lines(["*: 16 configs in *", "  0 requests (0 tokens, $0.0000); * replayed*",
                                 "*(unchanged)*"])


def test_same_seed_gives_the_same_lock_from_scratch(project: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    project.runpytest("--llm-tune")
    first = (project.path / "llmtune.lock").read_text()
    (project.path / "llmtune.lock").unlink()
    import shutil

    shutil.rmtree(project.path / "llmtune_cassettes")

    project.runpytest("--llm-tune")

    assert (project.path / "llmtune.lock").read_text() == first


def test_evaluations_run_concurrently(project: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    openai_server.latency = 0.05

    assert_ran(project.runpytest("--llm-tune", "--llm-concurrency", "4"), 26)

    assert openai_server.max_in_flight == 4


def test_identical_calls_in_one_test_get_distinct_samples(pytester: pytest.Pytester,
                                                           openai_server: FakeOpenAI) -> None:
    pytester.makepyfile('''
        import pytest
        from pytest_llmtune import llm_eval

        @llm_eval(space={"model": "m", "prompt": "Review: {r}", "temperature": 0.9})
        @pytest.mark.parametrize("r", ["great fun"])
        def test_twice(llm, r):
            assert len(llm(r=r) + llm(r=r)) == 2
    ''')

    pytester.runpytest("--llm-tune").assert_outcomes(passed=2)  # the instance and its target's verdict
    pytester.runpytest("--llm-tune").assert_outcomes(passed=2)  # the instance and its target's verdict

    # two distinct recordings, and the two of the confirmation (temperature 0.9), then all replayed
    assert openai_server.sample_headers == ["0", "1", "1000", "1001"]


def test_api_key_is_sent_but_never_written(project: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    assert_ran(project.runpytest("--llm-tune"), 26)

    assert openai_server.auth_headers[0] == f"Bearer {API_KEY}"
    written = [p.read_text() for p in project.path.rglob("*") if p.is_file() and p.suffix in (".json", ".lock")]
    assert written and not any(API_KEY in text or "Bearer" in text for text in written)


def test_error_in_a_test_body_is_an_error_not_a_zero(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile('''
        import pytest
        from pytest_llmtune import llm_eval

        @llm_eval(space={"model": "m", "prompt": "Review: {review}"})
        @pytest.mark.parametrize("case", [{"review": "fun"}, {"review": "dull"}])
        def test_broken(llm, case):
            return case["missing_key"]
    ''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*KeyError: 'missing_key'*", "*search stopped: *on test_*broken[[]case*]: KeyError*"])
    assert not (pytester.path / "llmtune.lock").exists()


def test_failing_endpoint_stops_the_tune_and_keeps_what_was_recorded(
    project: pytest.Pytester, openai_server: FakeOpenAI
) -> None:
    project.runpytest("--llm-tune", "--llm-concurrency", "1", "-o", "llmtune_max_retries=0")
    total = openai_server.requests
    project.path.joinpath("llmtune.lock").unlink()
    cassette = project.path / "llmtune_cassettes/test_sentiment/test_sentiment.json"
    cassette.unlink()
    openai_server.requests = 0
    openai_server.failures.clear()

    # the endpoint fails after 30 good answers
    original = openai_server.respond

    def fail_after_30(path: str, body: dict[str, Any], headers: dict[str, str]) -> tuple[int, dict[str, Any],
                                                                                         dict[str, str]]:
        if openai_server.requests >= 30:
            openai_server.fail_next(1, status=500)
        return original(path, body, headers)

    openai_server.respond = fail_after_30  # type: ignore[method-assign]
    result = project.runpytest("--llm-tune", "--llm-concurrency", "1", "-o", "llmtune_max_retries=0")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*search stopped*InternalServerError*", "*recorded responses are kept*"])
    assert cassette.read_text().count('"request"') == 30
    openai_server.respond = original  # type: ignore[method-assign]
    openai_server.requests = 0
    assert_ran(project.runpytest("--llm-tune", "--llm-concurrency", "1"), 26)
    assert openai_server.requests == total - 30  # the 30 recorded responses were not requested again


def test_rate_limited_requests_are_retried(project: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(2, status=429, retry_after=0.01)

    assert_ran(project.runpytest("--llm-tune"), 26)

    assert read_lock(project.path)["targets"]


def test_a_returned_dict_is_the_metric(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile('''
        import pytest
        from pytest_llmtune import llm_eval, choice

        @llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                         "temperature": 0}, metric="closeness", agg="median")
        @pytest.mark.parametrize("a,b", [(1, 2), (3, 4), (10, 20)])
        def test_add(llm, a, b):
            answer = int(llm(a=a, b=b)[0].split()[0])
            return {"closeness": 1 / (1 + abs(answer - (a + b)))}
    ''')

    result = pytester.runpytest("--llm-tune", "-W", "error::pytest.PytestReturnNotNoneWarning")

    result.assert_outcomes(passed=4)
    lock = read_lock(pytester.path)["targets"]["test_a_returned_dict_is_the_metric.py::test_add"]
    assert lock["metric"] == "closeness" and lock["agg"] == "median"


def test_chat_messages_and_the_completions_api(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile('''
        import pytest
        from pytest_llmtune import llm_eval, choice

        @llm_eval(space={"model": "m", "temperature": 0, "prompt": "Examples: What is {a} + {b}?",
                         "api": "completions", "stop": ["\\n"]})
        @pytest.mark.parametrize("a", [1, 2])
        def test_completion(llm, a):
            assert llm.config["api"] == "completions"
            assert llm(a=a, b=1)[0].startswith(str(a + 1))

        @llm_eval(space={"model": "m", "temperature": 0, "messages": [
            {"role": "system", "content": "Examples: you add."}, {"role": "user", "content": "What is {a} + 1?"}]})
        @pytest.mark.parametrize("a", [1, 2])
        def test_chat(llm, a):
            assert llm({"a": a})[0].startswith(str(a + 1))
    ''')

    pytester.runpytest("--llm-tune").assert_outcomes(passed=6)

    prompts = sorted(body["prompt"] for body in openai_server.bodies if "prompt" in body)
    assert prompts == ["Examples: What is 1 + 1?", "Examples: What is 2 + 1?"]
    assert all(body["stop"] == ["\n"] for body in openai_server.bodies if "prompt" in body)
    chats = [body["messages"] for body in openai_server.bodies if "messages" in body]
    assert sorted(m[1]["content"] for m in chats) == ["What is 1 + 1?", "What is 2 + 1?"]
    assert chats[0][0] == {"role": "system", "content": "Examples: you add."}


def test_bad_space_fails_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile('''
        from pytest_llmtune import llm_eval, uniform

        @llm_eval(space={"model": "m", "prompt": "{x}", "temperature": uniform(0, 3)})
        def test_x(llm):
            pass
    ''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert ("space['temperature']: uniform(0, 3) allows 3, but temperature must be a number in [0, 2]"
            in result.stdout.str())
    assert "fields.py" not in result.stdout.str()  # the user's line, not our internals


def test_bad_concurrency_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("--llm-tune", "--llm-concurrency", "0")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-concurrency: 0 is too small; give a count >= 1*"])


def test_tune_and_test_together_is_a_usage_error(project: pytest.Pytester) -> None:
    result = project.runpytest("--llm-tune", "--llm-test")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-tune and --llm-test are separate steps*"])


def test_ctrl_c_keeps_every_recorded_response(project: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    assert_ran(project.runpytest("--llm-tune"), 26)
    total = openai_server.requests
    (project.path / "llmtune.lock").unlink()
    cassette = project.path / "llmtune_cassettes/test_sentiment/test_sentiment.json"
    cassette.unlink()
    openai_server.requests = 0
    openai_server.latency = 0.1

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "pytest", "--llm-tune", "--llm-concurrency", "2", "-p",
                                "no:cacheprovider"], cwd=project.path, env=env, stdout=subprocess.PIPE, text=True)
    assert openai_server.wait_for_requests(20, timeout=60)
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=60)

    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "KeyboardInterrupt" in output
    sent = openai_server.requests
    recorded = cassette.read_text().count('"request"')
    assert recorded == sent  # the requests in flight at Ctrl-C finished and were saved too
    openai_server.latency = 0
    openai_server.requests = 0
    assert_ran(project.runpytest("--llm-tune"), 26)
    assert openai_server.requests == total - recorded


GRID_TEST = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

@llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                 "temperature": TEMPERATURE}STRATEGY)
@pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(12)])
def test_sum(llm, a, b):
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
'''


def test_a_grid_evaluates_every_config_on_every_instance(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=GRID_TEST.replace("TEMPERATURE", "choice([0, 0.5, 1.0])")
                        .replace("STRATEGY", ', strategy="grid"'))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["llmtune: tuning test_sums.py::test_sum: 6 configs, 12 instances, "
                                 "rungs (configs x instances) 6 x 12,*"])
    locked = read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["config"]
    assert locked["prompt"].startswith("Examples") and locked["temperature"] == 0


def test_the_ini_strategy_applies_to_targets_without_one(pytester: pytest.Pytester,
                                                         openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=GRID_TEST.replace("TEMPERATURE", "uniform(0, 1)").replace("STRATEGY", ""))

    random = pytester.runpytest("--llm-tune", "-o", "llmtune_strategy=random", "-o", "llmtune_num_samples=5")
    grid = pytester.runpytest("--llm-tune", "-o", "llmtune_strategy=grid")
    bogus = pytester.runpytest("--llm-tune", "-o", "llmtune_strategy=best")

    random.stdout.fnmatch_lines(["llmtune: tuning test_sums.py::test_sum: 5 configs, 12 instances, "
                                 "rungs (configs x instances) 5 x 12,*"])
    assert grid.ret == pytest.ExitCode.TESTS_FAILED
    grid.stdout.fnmatch_lines(["could not tune test_sums.py::test_sum:",
                               "uniform(0, 1) is continuous: strategy='grid' needs choice*llmtune_strategy = grid)"])
    assert bogus.ret == pytest.ExitCode.USAGE_ERROR
    bogus.stderr.fnmatch_lines(["*ini setting llmtune_strategy = 'best': expected one of halving, random, grid*"])


HOLDOUT_TEST = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

@llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                 "temperature": uniform(0, 1)}HOLDOUT)
@pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(COUNT)])
def test_sum(llm, a, b):
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
'''


def test_a_quarter_of_40_instances_is_held_out_and_scores_the_finalists(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # the leaderboard at 80 columns: short names
    pytester.makepyfile(test_sums=HOLDOUT_TEST.replace("HOLDOUT", "").replace("COUNT", "40"))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["llmtune: tuning test_sums.py::test_sum: 16 configs, 30 instances (+10 held out)*",
                                 "*held-out [[]CI[]]*",
                                 "held-out pass_rate * on the 10 instances the search",  # wrapped at 80
                                 "  never saw; * on the 30 it tuned on"])
    entry = read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]
    assert entry["instances"] == 40 and entry["holdout"]["instances"] == 10 and entry["tuning"]["instances"] == 30
    # the locked score is the confirmation run's, on all 40 (what the gate replays), beside what the search measured
    result.stdout.fnmatch_lines(["confirmed with fresh samples of the winner on all 40 instances: pass_rate "
                                 f"{entry['score']:.3f}", "  (the search measured * on them)*"])  # wrapped at 80
    assert entry["repeat"] == 1 and len(entry["results"]) == 40
    assert entry["score"] == pytest.approx(sum(entry["results"].values()) / 40, abs=1e-5)
    assert pytester.runpytest("--llm-test").ret == pytest.ExitCode.OK


def test_held_out_instances_are_never_seen_by_the_search(pytester: pytest.Pytester,
                                                         openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=HOLDOUT_TEST.replace("HOLDOUT", ", holdout=0.5").replace("COUNT", "20"))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    askers: dict[int, set[str]] = {}
    for body in openai_server.bodies:
        content = body["messages"][0]["content"]
        a = int(content.split("What is ")[1].split(" +")[0])
        askers.setdefault(a, set()).add(json.dumps([content.split("What")[0], body.get("temperature")]))
    counts = sorted(len(configs) for configs in askers.values())
    assert counts[:10] == [counts[0]] * 10 and counts[0] <= 3  # 10 instances: only the finalists asked them
    assert counts[-1] > 3  # the tuning instances saw the whole first rung


def test_holdout_zero_tunes_on_every_instance(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=HOLDOUT_TEST.replace("HOLDOUT", ", holdout=0").replace("COUNT", "40"))

    result = pytester.runpytest("--llm-tune")

    result.stdout.fnmatch_lines(["llmtune: tuning test_sums.py::test_sum: 16 configs, 40 instances, rungs*"])
    assert "holdout" not in read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]


def test_a_winner_at_temperature_0_is_not_confirmed(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """Greedy answers are no samples: the search's results are what a rerun gets, so no confirmation is sent."""
    pytester.makepyfile(test_greedy='''
        import pytest
        from pytest_llmtune import llm_eval, choice

        @llm_eval(space={"model": "m", "prompt": choice(["Review: {r}", "Examples: Review: {r}"]), "temperature": 0},
                  holdout=0)
        @pytest.mark.parametrize("r", ["great fun", "dull", "loved it"])
        def test_greedy(llm, r):
            assert llm(r=r)
    ''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert not [line for line in result.outlines if line.startswith(("confirmed", "not confirmed"))]
    assert "repeat" not in read_lock(pytester.path)["targets"]["test_greedy.py::test_greedy"]
    assert set(openai_server.sample_headers) == {"0"}
