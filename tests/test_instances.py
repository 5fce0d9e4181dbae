"""Each instance under the locked config: junit properties, a table with -v, MISS lines with -rA or -rm."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from openai_server import FakeOpenAI

from conftest import sentiment_test
from pytest_llmtune.records import BodyResult
from pytest_llmtune.report.instances import answer_line, instance_table, run_rows
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec


@pytest.fixture
def tuned(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    pytester.makepyfile(test_sentiment=sentiment_test())
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    return pytester


def test_each_instance_has_its_score_miss_answer_tokens_and_cost_in_junit(tuned: pytest.Pytester) -> None:
    result = tuned.runpytest("--llm-test", "--junitxml=junit.xml")

    assert result.ret == pytest.ExitCode.OK
    cases = {case.get("name", ""): {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
             for case in ET.parse(tuned.path / "junit.xml").iter("testcase")}
    instances = {name: props for name, props in cases.items() if "[case" in name}
    assert len(instances) == 24
    missed = [props for props in instances.values() if "llmtune_miss" in props]
    assert missed and all(props["llmtune_score"] == "0.0" for props in missed)
    assert all(props["llmtune_miss"].startswith("assert ") for props in missed)
    passed = [props for props in instances.values() if "llmtune_miss" not in props]
    assert passed and all(props["llmtune_score"] == "1.0" for props in passed)
    for props in instances.values():
        assert props["llmtune_answer"].endswith("because reasons")  # the server's answer, first line
        assert int(props["llmtune_tokens"]) > 0 and float(props["llmtune_cost_usd"]) > 0


def test_misses_are_listed_after_the_short_summary_with_ra(tuned: pytest.Pytester) -> None:
    default, every, misses = (tuned.runpytest("--llm-test"), tuned.runpytest("--llm-test", "-rA"),
                              tuned.runpytest("--llm-test", "-rm"))

    assert "llmtune misses" not in default.stdout.str()
    for result in (every, misses):
        result.stdout.fnmatch_lines(["*= llmtune misses: tests that passed, instances that scored 0 =*",
                                     "MISS test_sentiment.py::test_sentiment[[]case*[]] - assert 'positive' == "
                                     "'negative'"])
    every.stdout.fnmatch_lines(["*short test summary info*", "PASSED *", "*llmtune misses*", "MISS *"])


@pytest.mark.parametrize("mode", ["--llm-test", "--llm-tune"])
def test_verbose_shows_each_instance_with_its_answer_and_why_it_missed(tuned: pytest.Pytester, mode: str) -> None:
    result = tuned.runpytest(mode, "-v")

    result.stdout.fnmatch_lines(["each instance under the locked config (its own run, or the verdict's evaluation of "
                                 "it when it was deselected):",
                                 "instance*outcome*answer (first line)*why it missed",
                                 "case0 *"])
    result.stdout.fnmatch_lines(["case* MISS *because reasons*assert 'positive' == 'negative'"])
    assert "each instance under" not in tuned.runpytest(mode).stdout.str()


def test_verbose_shows_each_instance_under_xdist_too_from_the_workers_reports(tuned: pytest.Pytester) -> None:
    single = tuned.runpytest("--llm-test", "-v")
    result = tuned.runpytest("--llm-test", "-v", "-n", "2")

    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["each instance under the locked config (its own run, as its report says):",
                                 "instance*outcome*answer (first line)*why it missed"])
    rows = sorted(line for line in result.stdout.lines if line.startswith("case"))
    assert rows == sorted(line for line in single.stdout.lines if line.startswith("case"))  # the same 24 rows
    assert len(rows) == 24


def test_the_answer_is_the_first_line_of_the_first_text() -> None:
    assert answer_line(["\n  Paris\nis the capital", "Lyon"]) == "Paris"
    assert answer_line([]) == "" and answer_line(["  \n"]) == ""


SPEC = EvalSpec(space=SearchSpace({"model": "m", "prompt": "{x}"}))


def test_the_instance_table_fits_the_width() -> None:
    class Served:
        answers = ["a very long answer " * 10]

    runs = [(f"t.py::t[instance-{i}]", BodyResult(miss="assert " + "x" * 200) if i % 2 else BodyResult(), Served())
            for i in range(5)] + [("t.py::t[broken]", None, None)]

    lines = instance_table(run_rows(runs, SPEC), 80)  # type: ignore[arg-type]

    assert max(map(len, lines)) <= 80
    assert lines[-1].startswith("broken      error") and "no result" in lines[-1]


def test_with_a_metric_dict_the_table_shows_each_instances_metric_not_pass() -> None:
    spec = EvalSpec(space=SPEC.space, metric="score")
    runs = [("t.py::t[right]", BodyResult(returned={"score": 1.0}), None),
            ("t.py::t[wrong]", BodyResult(returned={"score": 0.0}), None),
            ("t.py::t[missed]", BodyResult(miss="assert False"), None)]

    rows = run_rows(runs, spec)

    assert [row[1] for row in rows] == ["score=1", "score=0", "MISS"]


def test_an_instance_whose_metric_cannot_be_read_says_why_in_junit() -> None:
    from pytest_llmtune.report.instances import instance_properties
    from pytest_llmtune.search.space import SearchSpace
    from pytest_llmtune.search.spec import EvalSpec

    spec = EvalSpec(space=SearchSpace({"model": "m", "prompt": "{x}"}), metric="f1")

    properties = dict(instance_properties(BodyResult(returned={"recall": 0.5}), None, spec))

    assert "llmtune_score" not in properties and "f1" in properties["llmtune_metric_error"]
