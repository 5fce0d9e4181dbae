"""`pytest --llm-tune --co`: each target's plan, with no request sent and no server started."""

from __future__ import annotations

import math
import re

import pytest
from openai_server import FakeOpenAI

from conftest import sentiment_test
from pytest_llmtune.llm.cost import MESSAGE_OVERHEAD
from pytest_llmtune.report.preview import Sizes, evaluations, tokens_per_evaluation
from pytest_llmtune.search.brackets import Brackets
from pytest_llmtune.search.budget import Budget
from pytest_llmtune.search.domains import choice, randint
from pytest_llmtune.search.halving import TIES, Rung
from pytest_llmtune.search.problem import TuneProblem
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec


def test_the_plan_before_a_tune_sends_nothing(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test().replace("threshold=", 'optimization_budget="3000 tokens", '
                                                                              "threshold="))

    result = pytester.runpytest("--llm-tune", "--co")

    assert result.ret == pytest.ExitCode.OK
    assert openai_server.requests == 0
    assert not (pytester.path / "llmtune.lock").exists() and not (pytester.path / "llmtune_cassettes").exists()
    result.stdout.fnmatch_lines([
        "*llmtune plan: what `pytest --llm-tune` would do (no request sent)*",
        "test_sentiment.py::test_sentiment: * candidates (of 16 drawn), 24 instances searched",
        "  rungs (configs x instances): *; * evaluations planned*",
        "  no recordings to measure from: *",
        "  expected: * tokens, $*; worst case: * tokens, $*",
        "  optimization budget 3,000 tokens: pays for about * of the 16 candidates (expected * tokens)*",
        "#*tok/eval*worst"])


def test_the_plan_measures_from_recordings_and_is_near_what_the_tune_spent(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    tuned = pytester.runpytest("--llm-tune")
    spent = re.search(r"(\d[\d,]*) requests \(([\d,]+) tokens", tuned.stdout.str())
    assert spent is not None
    requests = openai_server.requests

    result = pytester.runpytest("--llm-tune", "--co")

    assert openai_server.requests == requests
    result.stdout.fnmatch_lines(["  tokens measured on * recordings of this target: * a prompt, * an answer*"])
    expected = re.search(r"expected: ([\d,]+) tokens", result.stdout.str())
    assert expected is not None
    ratio = int(expected.group(1).replace(",", "")) / int(spent.group(2).replace(",", ""))
    assert 0.5 < ratio < 2, ratio  # an estimate, from the same plan and the recorded sizes


def test_tokens_per_evaluation_bound_the_worst_case_by_max_tokens() -> None:
    sizes = Sizes(prompt=30, sample=8, measured=10)

    split = tokens_per_evaluation({"prompt": "x", "n": 3, "max_tokens": 5, "temperature": 0.5}, sizes, True)
    whole = tokens_per_evaluation({"prompt": "x", "n": 3, "max_tokens": 5, "temperature": 0.5}, sizes, False)
    unbounded = tokens_per_evaluation({"prompt": "x"}, Sizes(None, None), False)

    assert (split.prompt, split.completion, split.worst_completion) == (90, 15, 15)  # answers capped at max_tokens
    assert (whole.prompt, whole.completion) == (30, 15)
    assert unbounded.worst_completion is None and unbounded.prompt == len('"x"') / 4 + MESSAGE_OVERHEAD  # a chat
    completion = tokens_per_evaluation({"prompt": "x", "api": "completions"}, Sizes(None, None), False)  # message
    assert completion.prompt == len('"x"') / 4


def test_evaluations_count_rungs_held_out_and_the_confirmation() -> None:
    planned, most = evaluations([Rung(9, 10), Rung(3, 30)], held_out=10, confirm=40)

    assert planned == 9 * 10 + 3 * 20 + 10 + 40
    assert most == 9 * 10 + (3 + math.ceil(TIES * 3)) * 20 + 3 * 10 + 40


def test_the_plan_screens_by_the_inference_budget_as_the_tune_does(pytester: pytest.Pytester,
                                                                     openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test().replace("threshold=", 'inference_budget="14 tokens", '
                                                                              "threshold="))

    plan, tuned = pytester.runpytest("--llm-tune", "--co"), pytester.runpytest("--llm-tune")

    planned = re.search(r"test_sentiment: (\d+) candidates \(of 16 drawn\)", plan.stdout.str())
    ran = re.search(r"test_sentiment: (\d+) configs in", tuned.stdout.str())
    skipped = re.search(r"inference budget 14 tokens per instance: (\d+) of the 16 drawn skipped", plan.stdout.str())
    assert planned and ran and skipped, plan.stdout.str()
    assert planned.group(1) == ran.group(1) and int(skipped.group(1)) == 16 - int(ran.group(1))


def test_a_budget_that_cannot_finish_one_config_says_so_in_the_plan_with_the_budget_that_would(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """A new user's plan at 200 tokens read "1 candidate (of 16 drawn) ... expected: 2,889 tokens" beside "pays for
    about 0 of the 16 candidates", and no budget to try; the tune then refused with one. The plan now says what the
    tune stops with."""
    pytester.makepyfile(test_sentiment=sentiment_test().replace("threshold=", 'optimization_budget="50 tokens", '
                                                                              "threshold="))

    plan, tuned = pytester.runpytest("--llm-tune", "--co"), pytester.runpytest("--llm-tune")

    words = r"the optimization budget of 50 tokens cannot pay for one config on all \d+ instances: the cheapest of"
    assert re.search(rf"test_sentiment: {words}", " ".join(plan.stdout.str().split())), plan.stdout.str()
    assert re.search(r'give optimization_budget="\d+ tokens" or more', " ".join(plan.stdout.str().split()))
    assert "pays for about 0" not in plan.stdout.str()
    assert re.search(words, " ".join(tuned.stdout.str().split()))


def test_the_plan_keeps_room_for_the_confirmation_as_the_tune_does(pytester: pytest.Pytester,
                                                                     openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test().replace("threshold=", 'optimization_budget="3000 tokens", '
                                                                              "threshold="))
    pytester.runpytest("--llm-tune")  # recordings to measure from, so the plan's sizes are the tune's
    (pytester.path / "llmtune.lock").unlink()

    plan = pytester.runpytest("--llm-tune", "--co")

    chosen = re.search(r"pays for about (\d+) of the (\d+) candidates", plan.stdout.str())
    assert chosen is not None
    assert re.search(rf"test_sentiment: {chosen.group(1)} candidates", plan.stdout.str())


@pytest.mark.parametrize("mode", [["--llm-tune"], ["--llm-test", "--llm-prune", "--llm-report", "r.json"]])
def test_collect_only_writes_nothing_and_needs_no_terminal(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                           mode: list[str]) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())

    quiet, plain = pytester.runpytest(*mode, "--co", "-p", "no:terminal"), pytester.runpytest(*mode, "--co")

    assert quiet.ret == plain.ret == pytest.ExitCode.OK
    assert sorted(p.name for p in pytester.path.iterdir()) == ["test_sentiment.py"]
    assert openai_server.requests == 0


def test_the_first_bracket_a_tight_budget_pays_for_is_its_cheapest_candidate() -> None:
    """The preview shows what the tune's fit chose: when only the cheapest candidate fits, that one (not the first
    drawn), with no request sent."""
    space = SearchSpace({"prompt": "p", "max_tokens": choice([8, 64, 256])})
    spec = EvalSpec(space=space, optimization_budget=Budget.parse("85 tokens", "optimization_budget"), num_samples=12)
    problem = TuneProblem(spec=spec, instances=10, confirms=False)

    first = Brackets(problem).first(lambda config: float(config["max_tokens"]))

    drawn = Brackets(problem).draw(problem.count, spec.seed)
    assert drawn[0]["max_tokens"] != 8  # so the first drawn is not the cheapest
    assert [c["max_tokens"] for c in first.candidates] == [8]  # 8 x 10 instances fits 85 tokens; no margin
    assert first.fit is not None and first.fit.chosen and first.priced == first.drawn
    assert first.rungs == [Rung(1, 10)]


def test_when_no_drawn_candidate_fits_the_plan_shows_the_cheaper_few_the_tune_draws_further() -> None:
    """16 candidates of which none can be finished in 700 tokens: the tune (and so the preview) draws further for
    candidates it can finish, and compares a few of them on a few instances rather than run one
    drawn blind."""
    space = SearchSpace({"prompt": "p", "max_tokens": randint(4, 400)})
    spec = EvalSpec(space=space, optimization_budget=Budget.parse("700 tokens", "optimization_budget"), num_samples=16)
    problem = TuneProblem(spec=spec, instances=30, held_out_count=5, confirms=False)
    brackets = Brackets(problem)
    drawn = brackets.draw(problem.count, spec.seed)

    def estimate(config: dict[str, int | str]) -> float:
        return float(config["max_tokens"])

    assert min(estimate(c) for c in drawn) * 35 > 700  # none of the 16 fits on its own

    first = brackets.first(estimate)

    assert first.cheaper and first.fit is not None
    assert len(first.candidates) >= 2
    assert all(estimate(c) * 35 <= 700 for c in first.candidates)
    assert first.rungs[0].configs == len(first.candidates) and first.rungs[-1] == Rung(1, 30)
    assert first.candidates == brackets.cheaper(700.0, spec.seed, estimate)[0]  # type: ignore[index]
