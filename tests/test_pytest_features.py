"""`@llm_eval` with the pytest features users combine it with, end to end against the suite's HTTP server.

Each test runs a small project in pytester under `--llm-tune` and/or `--llm-test` and checks that the result
is what a plain pytest run would make of the same test: fixtures alive while the body runs and torn down after,
async bodies awaited, selection, pytest-xdist, junit, `--co`, errors and metric dicts. A score the body did not
earn must never reach the lock.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock

# A target with real signal on the suite's server: the "Examples" prompt and a low temperature answer best.
SUMS = '''
import os
from pathlib import Path

import pytest
from pytest_llmtune import llm_eval, choice, uniform

EVENTS = Path(__file__).with_name("events.log")
CASES = [(a, a + 3) for a in range(12)]


def event(text):
    with EVENTS.open("a") as log:
        log.write(text + "\\n")

SPACE = {"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
         "temperature": uniform(0, 1)}

FIXTURES

@llm_eval(space=SPACE, threshold=0.1)
@pytest.mark.parametrize("a,b", CASES)
SIGNATURE
    BODY
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
'''


def sums(fixtures: str = "", signature: str = "def test_sum(llm, a, b):", body: str = "pass") -> str:
    return SUMS.replace("FIXTURES", fixtures).replace("SIGNATURE", signature).replace("BODY", body)


def passed(result: pytest.RunResult) -> int:
    """Tests that passed, counting those that passed with a miss (a failed assertion is a miss, not a failure)."""
    outcomes = result.parseoutcomes()
    return outcomes.get("passed", 0) + outcomes.get("missed", 0)


def events(pytester: pytest.Pytester) -> list[str]:
    path = pytester.path / "events.log"
    return path.read_text().splitlines() if path.exists() else []


def evaluations(result: pytest.RunResult) -> int:
    """The evaluations a tune ran, from its rung lines: configs x new instances per rung, and the confirmation
    run of a sampled winner on every instance."""
    plan = next(line for line in result.outlines if "llmtune: tuning " in line)
    rungs = [(int(c), int(i)) for c, i in re.findall(r"(\d+) x (\d+)", plan.split("(configs x instances) ", 1)[1])]
    total, seen = 0, 0
    for configs, instances in rungs:
        total += configs * (instances - seen)
        seen = instances
    confirmed = [line for line in result.outlines if line.startswith("confirmed with fresh samples")]
    return total + (int(confirmed[0].split(" on all ")[1].split()[0]) if confirmed else 0)


YIELD_FIXTURE = '''
@pytest.fixture
def resource():
    state = {"open": True}
    event("setup")
    yield state
    state["open"] = False
    event("teardown")
'''


def test_a_yield_fixture_is_alive_while_each_config_runs_and_torn_down_after(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=sums(YIELD_FIXTURE, "def test_sum(llm, resource, a, b):",
                                       'event(f"body {resource[\'open\']}")\n    assert resource["open"]'))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    runs = evaluations(result) + len(range(12))  # the search's evaluations, then each instance's own run
    probe = ["setup", "teardown"]  # the look at the target's fixtures, which does not run the body
    assert events(pytester) == probe + ["setup", "body True", "teardown"] * runs
    result.stdout.fnmatch_lines(["evaluated one at a time: function-scoped fixtures (resource) are set up for each "
                                 "evaluation", "locked in llmtune.lock (updated)*"])
    assert read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["score"] > 0.5


def test_monkeypatch_tmp_path_capsys_and_request_work_in_every_evaluation(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=sums('''
@pytest.fixture
def patched(monkeypatch):
    monkeypatch.setenv("LLMTUNE_TEST_PATCHED", "yes")


def test_zz_patches_are_undone():
    assert "LLMTUNE_TEST_PATCHED" not in os.environ
''', "def test_sum(llm, patched, tmp_path, capsys, request, a, b):",
       '''assert os.environ["LLMTUNE_TEST_PATCHED"] == "yes"
    assert not (tmp_path / "seen").exists()  # a fresh directory for every evaluation
    (tmp_path / "seen").write_text("x")
    print("hello")
    assert capsys.readouterr().out == "hello\\n"
    assert request.node.name == f"test_sum[{a}-{b}]"
    event("body")'''))

    result = pytester.runpytest("--llm-tune", "-p", "no:randomly")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert passed(result) == 14  # 12 instances, the verdict, and the plain test after them
    assert events(pytester) == ["body"] * (evaluations(result) + 12)
    assert read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["score"] > 0.5


def test_indirect_parametrization_gives_each_instance_its_own_value(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums='''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

@pytest.fixture
def pair(request):
    return request.param, request.param + 3

@llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                 "temperature": uniform(0, 1)})
@pytest.mark.parametrize("pair", range(12), indirect=True)
def test_sum(llm, pair):
    a, b = pair
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["evaluated one at a time: *pair*"])
    assert read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["score"] > 0.5
    asked = {json.dumps(body["messages"]) for body in openai_server.bodies}
    assert len({a.split(" + ")[0][-2:] for a in asked}) > 1  # the instances asked different sums


def test_class_based_tests_with_setup_method_and_class_fixtures(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums='''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

@pytest.fixture(scope="class")
def shared():
    state = {"open": True}
    yield state
    state["open"] = False

class TestSums:
    def setup_method(self):
        self.ready = True

    @llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                     "temperature": uniform(0, 1)})
    @pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(12)])
    def test_sum(self, llm, shared, a, b):
        assert self.ready and shared["open"]
        assert llm(a=a, b=b)[0].split()[0] == str(a + b)

class TestShared:
    @llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                     "temperature": uniform(0, 1)})
    @pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(12)])
    def test_sum(self, llm, shared, a, b):
        assert shared["open"]
        assert llm(a=a, b=b)[0].split()[0] == str(a + b)
''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert passed(result) == 26
    targets = read_lock(pytester.path)["targets"]
    assert targets["test_sums.py::TestSums::test_sum"]["score"] > 0.5
    assert targets["test_sums.py::TestShared::test_sum"]["score"] > 0.5
    # setup_method is a function-scoped fixture: one at a time; the class-scoped fixture alone can be shared
    result.stdout.fnmatch_lines(["test_sums.py::TestSums::test_sum: *", "evaluated one at a time: *setup_method*"])
    summary = result.stdout.str().split("= llmtune =", 1)[1]
    shared_summary = summary.split("test_sums.py::TestShared::test_sum: ", 1)[1].split("locked in")[0]
    assert "evaluated one at a time" not in shared_summary


def test_a_module_fixture_stays_up_through_a_concurrent_search(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=sums('''
@pytest.fixture(scope="module")
def resource():
    state = {"open": True}
    event("setup")
    yield state
    state["open"] = False
    event("teardown")
''', "def test_sum(llm, resource, a, b):", 'assert resource["open"]'))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert events(pytester) == ["setup", "teardown"]
    assert "evaluated one at a time" not in result.stdout.str()
    assert openai_server.max_in_flight > 1
    assert read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["score"] > 0.5


ASYNC_BODY = '''
    event("body")
    await asyncio.sleep(0)
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
'''


@pytest.mark.parametrize("runner", ["asyncio", "anyio"])
def test_async_bodies_are_awaited_by_their_runner(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                  runner: str) -> None:
    pytester.makepyfile(test_sums=f'''
import asyncio
from pathlib import Path

import pytest
from pytest_llmtune import llm_eval, choice, uniform

EVENTS = Path(__file__).with_name("events.log")

def event(text):
    with EVENTS.open("a") as log:
        log.write(text + "\\n")

@pytest.fixture
def anyio_backend():
    return "asyncio"

@llm_eval(space={{"model": "m", "prompt": choice(["What is {{a}} + {{b}}?", "Examples: What is {{a}} + {{b}}?"]),
                 "temperature": uniform(0, 1)}})
@pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(12)])
@pytest.mark.{runner}
async def test_sum(llm, a, b):{ASYNC_BODY}''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert events(pytester) == ["body"] * (evaluations(result) + 12)
    result.stdout.fnmatch_lines(["evaluated one at a time: an async def body *"])
    assert read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["score"] > 0.5


def test_an_async_body_no_plugin_runs_is_refused_and_never_scored(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=f'''
import asyncio
import pytest
from pytest_llmtune import llm_eval, choice, uniform

def event(text):
    raise AssertionError("the body must not run")

@llm_eval(space={{"model": "m", "prompt": choice(["What is {{a}} + {{b}}?", "Examples: What is {{a}} + {{b}}?"]),
                 "temperature": uniform(0, 1)}})
@pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(12)])
async def test_sum(llm, a, b):{ASYNC_BODY}''')

    result = pytester.runpytest("--llm-tune", "-p", "no:asyncio", "-p", "no:anyio")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*search stopped: *async def functions are not natively supported*"])
    assert not (pytester.path / "llmtune.lock").exists()
    assert openai_server.requests == 0


# --- selection ---------------------------------------------------------------------------------------------------

@pytest.fixture
def tuned(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    pytester.makepyfile(test_sums=sums(signature="@pytest.mark.slow\ndef test_sum(llm, a, b):"))
    pytester.makeini("[pytest]\nmarkers = slow: a slow test\n")
    result = pytester.runpytest("--llm-tune")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    return pytester


@pytest.mark.parametrize("selection", [["-k", "3-6"], ["test_sums.py::test_sum[3-6]"], ["-m", "not slow"]])
def test_a_tune_of_part_of_a_target_locks_nothing_and_says_so(tuned: pytest.Pytester, openai_server: FakeOpenAI,
                                                              selection: list[str]) -> None:
    lock = (tuned.path / "llmtune.lock").read_bytes()
    requests = openai_server.requests

    result = tuned.runpytest("--llm-tune", *selection)

    assert (tuned.path / "llmtune.lock").read_bytes() == lock
    assert openai_server.requests == requests
    if selection != ["-m", "not slow"]:
        result.stdout.fnmatch_lines(["*not tuned: test_sums.py::test_sum[[]llmtune[]] was not selected; a lock "
                                     "covers every instance*"])


@pytest.mark.parametrize("selection", [["test_sums.py::test_sum"], ["-m", "slow"], ["-k", "test_sum"],
                                       ["test_sums.py::test_sum[llmtune]"]])
def test_selecting_the_target_tunes_it_on_every_instance(tuned: pytest.Pytester, selection: list[str]) -> None:
    (tuned.path / "llmtune.lock").unlink()

    result = tuned.runpytest("--llm-tune", *selection)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert read_lock(tuned.path)["targets"]["test_sums.py::test_sum"]["instances"] == 12


def test_a_gate_of_part_of_a_target_reports_it_not_gated(tuned: pytest.Pytester) -> None:
    result = tuned.runpytest("--llm-test", "-k", "3-6")

    assert result.ret == pytest.ExitCode.OK
    assert passed(result) == 1
    result.stdout.fnmatch_lines(["test_sums.py::test_sum: not gated: test_sums.py::test_sum[[]llmtune[]] was not "
                                 "selected*"])


def test_the_gate_item_alone_judges_every_instance(tuned: pytest.Pytester) -> None:
    score = read_lock(tuned.path)["targets"]["test_sums.py::test_sum"]["score"]

    result = tuned.runpytest("--llm-test", "test_sums.py::test_sum[llmtune]")

    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"test_sums.py::test_sum: pass_rate {score:.3f} * on 12 instances *: ok"])


def test_last_failed_reruns_a_failed_gate_on_the_whole_target(tuned: pytest.Pytester) -> None:
    lock = read_lock(tuned.path)
    lock["targets"]["test_sums.py::test_sum"]["score"] = 1.5
    del lock["targets"]["test_sums.py::test_sum"]["results"]  # tested against its score
    (tuned.path / "llmtune.lock").write_text(json.dumps(lock))
    assert tuned.runpytest("--llm-test").ret == pytest.ExitCode.TESTS_FAILED

    result = tuned.runpytest("--llm-test", "--lf")

    result.assert_outcomes(failed=1)  # the instances' own runs passed: only the verdict reruns
    result.stdout.fnmatch_lines(["FAILED test_sums.py::test_sum: pass_rate * on 12 instances *locked 1.500*"
                                 "significantly worse than the lock*"])


# --- pytest-xdist ------------------------------------------------------------------------------------------------

def test_the_gate_under_xdist_gives_the_same_verdicts_and_exit_status(tuned: pytest.Pytester) -> None:
    alone, spread = tuned.runpytest("--llm-test"), tuned.runpytest("--llm-test", "-n", "2")

    assert alone.ret == spread.ret == pytest.ExitCode.OK
    verdict = next(line for line in alone.outlines if line.startswith("test_sums.py::test_sum: "))
    assert verdict in spread.outlines

    lock = read_lock(tuned.path)
    lock["targets"]["test_sums.py::test_sum"]["score"] = 1.5
    del lock["targets"]["test_sums.py::test_sum"]["results"]  # now it must fail, spread or not
    (tuned.path / "llmtune.lock").write_text(json.dumps(lock))
    alone, spread = tuned.runpytest("--llm-test"), tuned.runpytest("--llm-test", "-n", "2")

    assert alone.ret == spread.ret == pytest.ExitCode.TESTS_FAILED
    assert passed(alone) == passed(spread) == 12
    assert alone.parseoutcomes()["failed"] == spread.parseoutcomes()["failed"] == 1
    spread.stdout.fnmatch_lines(["FAILED test_sums.py::test_sum: *locked 1.500*significantly worse than the lock*"])


def test_a_stale_lock_fails_under_xdist(tuned: pytest.Pytester) -> None:
    tuned.makepyfile(test_sums=sums(signature="@pytest.mark.slow\ndef test_sum(llm, a, b):", body="a = a"))

    result = tuned.runpytest("--llm-test", "-n", "2")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, skipped=12)
    result.stdout.fnmatch_lines(["FAILED test_sums.py::test_sum: the lock is stale (its test body, or a definition of "
                                 "its module that it uses, changed)*"])


def test_pruning_refuses_xdist(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=sums())

    result = pytester.runpytest("--llm-test", "--llm-prune", "-n", "2")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-prune does not run under pytest-xdist (-n/--dist)*"])
    assert openai_server.requests == 0


# --- reporters and --co ------------------------------------------------------------------------------------------

def test_junit_sees_a_failed_gate_with_its_numbers(tuned: pytest.Pytester) -> None:
    tuned.makepyfile(test_sums=sums(signature="@pytest.mark.slow\ndef test_sum(llm, a, b):").replace(
        "threshold=0.1", "threshold=0.1"))
    lock = read_lock(tuned.path)
    lock["targets"]["test_sums.py::test_sum"]["score"] = 1.5
    del lock["targets"]["test_sums.py::test_sum"]["results"]  # tested against its score
    (tuned.path / "llmtune.lock").write_text(json.dumps(lock))

    tuned.runpytest("--llm-test", "--junitxml=junit.xml")

    suite = ET.parse(tuned.path / "junit.xml").getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    case = next(c for c in suite.iter("testcase") if c.get("name") == "test_sum[llmtune]")
    assert case.find("failure") is not None
    properties = {p.get("name"): p.get("value") for p in case.iter("property")}
    assert properties["llmtune_locked_score"] == "1.5"
    assert properties["llmtune_threshold"] == "0.1"
    assert float(properties["llmtune_score"] or "nan") < 1.5
    assert {"llmtune_interval", "llmtune_cost_usd", "llmtune_tokens", "llmtune_verdict"} <= set(properties)


@pytest.mark.parametrize("mode", ["--llm-tune", "--llm-test"])
def test_collect_only_runs_nothing(pytester: pytest.Pytester, openai_server: FakeOpenAI, mode: str) -> None:
    pytester.makepyfile(test_sums=sums().replace('"model": "m", ', ""))  # the local server's model, by default

    result = pytester.runpytest(mode, "--co", "--llm-local")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*<TargetItem test_sum[[]llmtune[]]>*", "*13 tests collected*"])
    assert openai_server.requests == 0
    assert "llama-server" not in result.stdout.str()
    assert not (pytester.path / "llmtune.lock").exists()
    assert not (pytester.path / "llmtune_cassettes").exists()


# --- errors ------------------------------------------------------------------------------------------------------

def test_a_config_that_raises_is_dropped_once_and_the_search_goes_on(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums=sums(body='''if llm.config["prompt"].startswith("What") and a == 5:
        raise ValueError(f"no support for {llm.config['prompt']!r}")'''))

    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    text = result.stdout.str()
    dropped = text.count(", and was dropped: ValueError: no support for 'What is {a} + {b}?'")
    assert dropped >= 1
    tracebacks = [line for line in result.outlines
                  if line.lstrip().startswith("E") and "ValueError: no support" in line]
    assert len(tracebacks) == dropped  # one traceback per dropped config
    result.stdout.fnmatch_lines(["config #* raised on test_sums.py::test_sum[[]5-8[]], and was dropped: *"])
    config = read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]["config"]
    assert config["prompt"].startswith("Examples")


def test_a_dead_endpoint_stops_the_tune_with_one_message_naming_it(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the discard port: nothing listens
    pytester.makepyfile(test_sums=sums())

    result = pytester.runpytest("--llm-tune")  # the SDK's retries on: a refused connection is not retried

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["search stopped: 3 configs in a row failed the same way, on test_sums.py::test_sum*: "
                                 "EndpointUnreachable: nothing listens at http://127.0.0.1:9/v1/chat/completions "
                                 "(connection refused): start the endpoint's server, or point ini llmtune_base_url*"])
    assert len(result.outlines) < 60 and "Traceback" not in result.stdout.str()
    assert not (pytester.path / "llmtune.lock").exists()


# --- metric dicts ------------------------------------------------------------------------------------------------

def test_a_metric_dict_counts_failed_assertions_and_keeps_its_other_numbers(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sums='''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

@llm_eval(space={"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
                 "temperature": uniform(0, 1)}, metric="closeness")
@pytest.mark.parametrize("a,b", [(a, a + 3) for a in range(12)])
def test_sum(llm, a, b):
    words = llm(a=a, b=b)[0].split()
    assert a != 0, "the zero case is a miss"
    answer = int(words[0])
    return {"closeness": 1 / (1 + abs(answer - (a + b))), "words": len(words), "label": "not a number"}
''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    entry = read_lock(pytester.path)["targets"]["test_sums.py::test_sum"]
    assert set(entry["metrics"]) == {"words"}
    result.stdout.fnmatch_lines([f"other metrics of the winner: words {entry['metrics']['words']:.3f}"])

    result = pytester.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"test_sums.py::test_sum: closeness {entry['score']:.3f} * on 12 instances (1 "
                                 f"failed an assertion, words {entry['metrics']['words']:.3f}); locked *: ok"])


def test_plain_pytest_runs_no_target_item(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_sums=sums())

    result = pytester.runpytest("--co", "-q")

    assert "[llmtune]" not in result.stdout.str()
    result.stdout.fnmatch_lines(["12 tests collected*"])


def test_two_targets_with_one_name_are_refused(pytester: pytest.Pytester) -> None:
    source = sums().replace("@llm_eval(space=SPACE, threshold=0.1)", "@llm_eval(space=SPACE, name='sums')")
    Path(pytester.path, "test_one.py").write_text(source)
    Path(pytester.path, "test_two.py").write_text(source)

    result = pytester.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*two @llm_eval tests share the target name 'sums'; give each its own name=*"])
