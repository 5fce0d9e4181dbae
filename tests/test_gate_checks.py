"""What makes a lock stale, re-scoring without a re-tune (`--llm-record`), and the live check (`--llm-live`)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock

TARGET = "test_reviews.py::test_review"
CASSETTE = "llmtune_cassettes/test_reviews/test_review.json"
HELPERS = '''
def first_word(text):
    return text.split()[0].lower()
'''
CONFTEST = '''
import pytest

@pytest.fixture
def expected():
    return lambda case: case["label"]

def pytest_report_header(config):
    return "a header"
'''
TEST = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform
from helpers import first_word

CASES = [{"review": w, "label": "positive" if w.startswith(("great", "loved")) else "negative"}
         for w in ["great fun", "loved it", "dull", "a waste", "great cast", "boring", "loved the end", "awful"] * 3]


def label(texts):
    return first_word(texts[0])


@llm_eval(space={"model": "m", "temperature": uniform(0, 0.2),
                 "prompt": choice(["Examples: ...\\nReview: {review} ->", "Review: {review}\\nSentiment:"])},
          threshold=THRESHOLD, holdout=0)
@pytest.mark.parametrize("case", CASES)
def test_review(llm, case, expected):
    """Sentiment of one review."""
    assert label(llm(case)) == expected(case)
'''


def project_files(threshold: float = 0.5, test: str = TEST) -> dict[str, str]:
    return {"test_reviews": test.replace("THRESHOLD", repr(threshold))}


@pytest.fixture
def tuned(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    pytester.makepyfile(helpers=HELPERS, **project_files())
    pytester.makeconftest(CONFTEST)
    pytester.runpytest("--llm-tune").assert_outcomes(passed=25)
    return pytester


def gate(pytester: pytest.Pytester, *options: str) -> pytest.RunResult:
    return pytester.runpytest("--llm-test", "-p", "no:cacheprovider", *options)


def verdict_line(result: pytest.RunResult) -> str:
    return next(line for line in result.outlines if line.startswith((TARGET, f"FAILED {TARGET}")))


# --- what makes a lock stale -------------------------------------------------------------------------------------

def test_comments_formatting_docstrings_and_the_threshold_leave_the_lock_fresh(tuned: pytest.Pytester) -> None:
    lock = (tuned.path / "llmtune.lock").read_text()
    edited = TEST.replace('    """Sentiment of one review."""\n', '    """What a reviewer felt."""  # a comment\n')
    edited = edited.replace("return first_word(texts[0])", "return first_word(  texts[0]  )  # the first")
    tuned.makepyfile(**project_files(threshold=0.55, test=edited))
    tuned.makepyfile(helpers="# helpers for the test\n" + HELPERS.replace("(text):", "(text):  # one word"))
    tuned.makeconftest(CONFTEST.replace('"a header"', '"another header"'))  # a hook, not a fixture

    result = gate(tuned)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert "stale" not in result.stdout.str()
    assert (tuned.path / "llmtune.lock").read_text() == lock


def test_a_threshold_change_takes_effect_without_a_re_tune(tuned: pytest.Pytester) -> None:
    tuned.makepyfile(**project_files(threshold=1.01))

    result = gate(tuned)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "stale" not in result.stdout.str()
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: pass_rate * the score is below the threshold 1.01*"])


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda p: p.makepyfile(helpers=HELPERS.replace(".lower()", ".lower().strip(',.')")), "helpers.py changed"),
    (lambda p: p.makepyfile(**project_files(test=TEST.replace("return first_word(texts[0])",
                                                              "return first_word(texts[-1])"))),
     "its test body, or a definition of its module that it uses, changed"),  # a same-module helper the body calls
    (lambda p: p.makeconftest(CONFTEST.replace('case["label"]', 'case["label"].lower()')), "conftest.py changed"),
    (lambda p: p.makepyfile(**project_files(test=TEST.replace('"awful"]', '"awful", "great"]'))),
     "its instances changed"),
])
def test_a_change_to_what_decides_the_result_makes_the_lock_stale_and_says_what(
        tuned: pytest.Pytester, edit: Callable[[pytest.Pytester], object], reason: str) -> None:
    edit(tuned)

    result = gate(tuned)

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: the lock is stale ({reason}): score the locked config again with "
                                 f"`pytest --llm-test --llm-record {TARGET}`*"])


def test_a_space_change_that_leaves_out_the_locked_config_needs_a_re_tune(tuned: pytest.Pytester) -> None:
    tuned.makepyfile(**project_files(test=TEST.replace("uniform(0, 0.2)", "uniform(0.5, 0.6)")))

    result = gate(tuned, "--llm-record")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: the lock is stale (its search space changed): re-tune: "
                                 f"`pytest --llm-tune {TARGET}`*"])


@pytest.mark.parametrize("edit", [
    lambda text: text.replace("uniform(0, 0.2)", "uniform(0, 0.3)"),  # wider
    lambda text: text.replace('"Review: {review}\\nSentiment:"', '"Review: {review}\\nPositive or negative:"'),
])
def test_a_space_edited_around_the_locked_config_keeps_the_lock_and_says_a_re_tune_may_find_better(
        tuned: pytest.Pytester, edit: Callable[[str], str]) -> None:
    lock = (tuned.path / "llmtune.lock").read_text()
    assert "Examples:" in read_lock(tuned.path)["targets"][TARGET]["config"]["prompt"]  # the option not reworded
    tuned.makepyfile(**project_files(test=edit(TEST)))

    result = gate(tuned)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert f"ok; its search space changed since the tune, and the locked config is still a point of it: a re-tune " \
           f"may find better (`pytest --llm-tune {TARGET}`)" in verdict_line(result)
    assert (tuned.path / "llmtune.lock").read_text() == lock


# --- re-scoring ----------------------------------------------------------------------------------------------------

def test_record_re_scores_a_lock_made_stale_by_code_and_updates_it(tuned: pytest.Pytester,
                                                                  openai_server: FakeOpenAI) -> None:
    config = read_lock(tuned.path)["targets"][TARGET]["config"]
    tuned.makepyfile(helpers=HELPERS.replace(".lower()", ".lower().strip(',.')"))  # the same answers
    requests = openai_server.requests

    result = gate(tuned, "--llm-record")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert openai_server.requests == requests  # every response was recorded: nothing asked again
    result.stdout.fnmatch_lines([f"{TARGET}: re-scored pass_rate * all 24 results as locked: re-scored lock written "
                                 "to llmtune.lock*"])
    entry = read_lock(tuned.path)["targets"][TARGET]
    assert entry["config"] == config and entry["scored_by"] == "rescore"
    assert "module:helpers.py" in entry["fingerprints"]
    assert gate(tuned).ret == pytest.ExitCode.OK  # fresh again, offline


def test_a_re_score_lower_on_the_same_responses_fails_names_them_and_leaves_the_lock(
        tuned: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    lock = (tuned.path / "llmtune.lock").read_text()
    tuned.makepyfile(**project_files(test=TEST.replace("== expected(case)", '== "positive"')))  # half now miss
    requests = openai_server.requests

    result = gate(tuned, "--llm-record")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert openai_server.requests == requests
    line = verdict_line(result)
    assert "re-scored pass_rate" in line
    assert re.search(r"24 replayed instances compared exactly: 12 score lower on the same responses \((case\d+, ){4}"
                     r"case\d+ \.\.\.\), -0\.500 on the score \(a change of the code\)", line), line
    assert line.endswith("the same recorded responses score lower than the lock: the code changed (the test, a "
                         "helper it uses, or an installed package), not the model; the lock is left as it was; find "
                         "the change; to lock the lower score anyway, `pytest --llm-test --llm-record "
                         f"--llm-accept-lower {TARGET}`")
    assert (tuned.path / "llmtune.lock").read_text() == lock

    accepted = gate(tuned, "--llm-record", "--llm-accept-lower")

    assert accepted.ret == pytest.ExitCode.OK, accepted.stdout.str()
    assert "re-scored lock written to llmtune.lock (lower: --llm-accept-lower)" in verdict_line(accepted)
    assert read_lock(tuned.path)["targets"][TARGET]["score"] == 0.5


def test_threshold_on_lower_judges_the_worse_bound_of_the_interval(tuned: pytest.Pytester) -> None:
    score = read_lock(tuned.path)["targets"][TARGET]["score"]
    tuned.makepyfile(**project_files(threshold=round(score - 0.01, 3)))
    tuned.makeini("[pytest]\nllmtune_threshold_on = lower\n")

    result = gate(tuned)

    assert gate(tuned, "-o", "llmtune_threshold_on=score").ret == pytest.ExitCode.OK
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*the worse bound of its 95% interval is below the threshold*"])


# --- the live check ------------------------------------------------------------------------------------------------

def test_live_sends_every_request_with_samples_of_its_own_and_writes_no_file(tuned: pytest.Pytester,
                                                                  openai_server: FakeOpenAI) -> None:
    cassette = (tuned.path / CASSETTE).read_text()
    requests = openai_server.requests

    # a margin: the fake model's answers are pseudo-random per sample, and this run's second samples happen to
    # miss 4 of the 8 reviews (p = 0.009 against the confirmed lock); what counts here is what is sent
    result = gate(tuned, "--llm-live", "--llm-repeat", "2", "-o", "llmtune_margin=0.3")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    # nothing replayed: each distinct request sampled twice (the 24 instances are 8 reviews three times, and an
    # identical request is sent once, as in the tune)
    assert openai_server.requests == requests + 8 * 2
    assert (tuned.path / CASSETTE).read_text() == cassette
    line = verdict_line(result)
    assert line.startswith(f"{TARGET}: live pass_rate ")
    assert "on 24 instances x 2 samples" in line and line.endswith(": ok")


def test_live_sends_the_requests_of_a_body_that_shares_its_fixtures_concurrently(pytester: pytest.Pytester,
                                                                                openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(helpers=HELPERS, **project_files(test=TEST.replace(", expected):", "):").replace(
        "expected(case)", 'case["label"]')))
    pytester.runpytest("--llm-tune").assert_outcomes(passed=25)
    openai_server.latency, openai_server.max_in_flight, requests = 0.05, 0, openai_server.requests

    # the margin: the lock is the luckiest of the configs tried, and fresh samples of it score lower (bench_gate's
    # winner's curse); this test is about how the requests go out
    result = gate(pytester, "--llm-live", "--llm-repeat", "3", "--llm-concurrency", "4", "-o", "llmtune_margin=0.5")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert openai_server.requests == requests + 8 * 3
    assert openai_server.max_in_flight == 4
    assert "on 24 instances x 3 samples" in verdict_line(result)


def test_live_fails_when_the_model_behind_the_name_got_worse(tuned: pytest.Pytester,
                                                            openai_server: FakeOpenAI) -> None:
    locked = read_lock(tuned.path)["targets"][TARGET]["score"]
    tuned.makepyfile(**project_files(threshold=0.1))  # the drift alone must fail it
    openai_server.drift = 0.5

    result = gate(tuned, "--llm-live")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: live pass_rate 0.* [[]95% CI *] on 24 instances (* failed an "
                                 f"assertion); locked {locked:.3f}; difference -0.*, at most -0.* (one-sided 95% "
                                 "bound), p = * (one-sided, paired on 24 instances with new samples, alpha 0.05): "
                                 "significantly worse than the lock: the model behind the endpoint may have changed*"])


def test_live_judges_a_lock_without_per_instance_results_against_its_score(tuned: pytest.Pytester,
                                                                          openai_server: FakeOpenAI) -> None:
    lock = read_lock(tuned.path)
    del lock["targets"][TARGET]["results"]
    (tuned.path / "llmtune.lock").write_text(json.dumps(lock))
    openai_server.drift = 0.5

    result = gate(tuned, "--llm-live")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "against the locked score (no per-instance results in the lock)" in verdict_line(result)


@pytest.mark.parametrize(("options", "message"), [
    (["--llm-live"], "--llm-live goes with --llm-test*"),
    (["--llm-test", "--llm-repeat", "3"], "--llm-repeat goes with --llm-live*"),
    (["--llm-test", "--llm-live", "--llm-record"], "--llm-live and --llm-record are separate*"),
    (["--llm-test", "-o", "llmtune_tolerance=0.1"], "*llmtune_tolerance is replaced*set llmtune_margin instead"),
    (["--llm-test", "-o", "llmtune_alpha=0.7"], "*llmtune_alpha = 0.7 must be between 0 and 0.5*"),
    (["--llm-test", "-o", "llmtune_threshold_on=mean"], "*llmtune_threshold_on = 'mean': expected score or lower"),
])
def test_gate_options_that_do_not_fit_are_refused(pytester: pytest.Pytester, options: list[str], message: str) -> None:
    pytester.makepyfile(**project_files())

    result = pytester.runpytest(*options)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_a_fresh_lock_of_a_continuous_metric_replays_as_locked(pytester: pytest.Pytester,
                                                                openai_server: FakeOpenAI) -> None:
    """The lock keeps results to 6 digits; the gate compares at that precision, so 2/3 is not 'worse' than the
    0.666667 it was locked as."""
    pytester.makepyfile(test_thirds='''
import pytest
from pytest_llmtune import llm_eval, uniform

@llm_eval(space={"model": "m", "prompt": "Examples: Review: {r} ->", "temperature": uniform(0, 0.2)},
          metric="score", holdout=0)
@pytest.mark.parametrize("r", ["great fun", "dull", "loved it", "awful", "great cast", "boring"])
def test_thirds(llm, r):
    return {"score": 2 / 3 if llm(r=r)[0].startswith(("positive", "negative")) else 1 / 3}
''')
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK

    result = gate(pytester)

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["test_thirds.py::test_thirds: score * on 6 instances *; all 6 results as locked: ok"])


def test_live_refuses_a_stale_lock_and_writes_nothing(tuned: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    tuned.makepyfile(helpers=HELPERS + "\n\nUNUSED = 1\n")  # a helper module changed: re-scoring is --llm-record's
    lock = (tuned.path / "llmtune.lock").read_text()
    requests = openai_server.requests

    result = gate(tuned, "--llm-live")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"FAILED {TARGET}: the lock is stale (helpers.py changed): score the locked config "
                                 "again with `pytest --llm-test --llm-record*"])
    assert (tuned.path / "llmtune.lock").read_text() == lock
    assert openai_server.requests == requests
