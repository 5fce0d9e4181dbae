"""`llm.judge`: a model grading answers through the same request path as the config's own calls, over real HTTP
to the fake OpenAI server on 127.0.0.1 (its judge grades an answer 5 when it holds a reference answer's first word,
else 1; a "mute-" judge never grades, a "first-" judge always prefers answer A)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import openai
import pytest
from openai_server import FakeOpenAI

from conftest import SENTIMENT_CASES, read_lock
from pytest_llmtune.errors import TemplateError
from pytest_llmtune.llm import judge as judge_module
from pytest_llmtune.llm.client import LLM, Endpoint
from pytest_llmtune.llm.judge import Ungraded
from pytest_llmtune.search.judge_config import GRADE_PROMPT, JudgeConfig

pytestmark = pytest.mark.filterwarnings("ignore:no price for model")


@pytest.fixture
def endpoint(openai_server: FakeOpenAI) -> Iterator[Endpoint]:
    found = Endpoint(openai.OpenAI(base_url=openai_server.base_url, api_key="sk-test"))
    yield found
    found.close()


def judging(endpoint: Endpoint, model: str = "judge-model") -> LLM:
    return LLM({"model": "gpt-4o-mini", "prompt": "{x}"}, endpoint, judge=JudgeConfig(model))


def test_a_judgement_is_a_score_a_grade_and_a_reason_at_temperature_0(endpoint: Endpoint,
                                                                     openai_server: FakeOpenAI) -> None:
    llm = judging(endpoint)
    good = llm.judge("Names the capital.", "Paris, of course.", context="Capital of France?", reference="Paris")
    bad = llm.judge("Names the capital.", "Lyon", reference=["Paris", "Paris, France"])
    assert (good.score, good.grade, good.scale, good.reason) == (1.0, 5, 5, "it matches the reference.")
    assert (bad.score, bad.grade) == (0.0, 1)
    assert float(good) == 1.0
    body = openai_server.bodies[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0 and body["max_tokens"] == 128
    prompt = body["messages"][0]["content"]
    assert "Rubric: Names the capital.\nContext: Capital of France?\nReference answer: Paris\n" in prompt
    assert llm.usage.requests == 0 and llm.judge_usage.requests == 2  # the config's own cost stays its own


def test_a_completions_judge_continues_from_the_label_of_its_reply(endpoint: Endpoint,
                                                                    openai_server: FakeOpenAI) -> None:
    llm = LLM({"model": "gpt-4o-mini", "prompt": "{x}"}, endpoint,
              judge=JudgeConfig("judge-model", api="completions", max_tokens=32))
    judged = llm.judge("Names the capital.", "Paris", reference="Paris")
    assert (judged.grade, judged.reason) == (5, "it matches the reference.")
    assert openai_server.bodies[-1]["prompt"].endswith("Reason: <one sentence>\n\nGrade:")
    assert openai_server.bodies[-1]["stop"] == ["\n\n"]
    assert llm.judge.pairwise("Names the capital.", "Paris", "Lyon", reference="Paris").winner == "a"
    assert openai_server.bodies[-1]["prompt"].endswith("\n\nWinner:")


def test_a_scale_of_two_is_pass_or_fail_and_at_least_is_the_assertion_form(endpoint: Endpoint) -> None:
    llm = judging(endpoint)
    assert llm.judge("r", "Paris", reference="Paris", scale=2).score == 1.0
    with pytest.raises(AssertionError, match=re.escape("judge 0.00 < 0.50 (grade 1 of 5): 'it misses the "
                                                       "reference.'")):
        llm.judge("r", "Lyon", reference="Paris").at_least(0.5)
    with pytest.raises(ValueError, match=re.escape("judge(scale=1): give an int >= 2")):
        llm.judge("r", "Lyon", scale=1)


def test_a_reply_without_a_grade_is_a_miss_that_is_counted_never_a_zero(endpoint: Endpoint) -> None:
    llm = judging(endpoint, "mute-judge")
    with pytest.raises(Ungraded, match=re.escape("the judge (mute-judge) gave no grade from 1 to 5: 'Reason: it is "
                                                 "hard to say.\\nI would rather not.'")):
        llm.judge("r", "Paris", reference="Paris")
    assert llm.ungraded == 1
    assert isinstance(Ungraded("x"), AssertionError)  # a miss, as a failed assertion is


def test_a_judgement_in_an_assert_is_refused_not_always_true(endpoint: Endpoint) -> None:
    llm = judging(endpoint)
    with pytest.raises(TypeError, match=re.escape("assert judgement.at_least(threshold)")):
        assert llm.judge("r", "Lyon", reference="Paris")
    with pytest.raises(TypeError, match="a Preference has no truth value"):
        assert llm.judge.pairwise("r", "Lyon", "Paris", reference="Paris")


def test_pairwise_asks_in_both_orders_and_a_position_biased_judge_gets_a_tie(endpoint: Endpoint,
                                                                           openai_server: FakeOpenAI) -> None:
    fair = judging(endpoint).judge.pairwise("Names the capital.", "Lyon", "Paris", reference="Paris")
    assert (fair.winner, fair.score, fair.consistent) == ("b", 0.0, True)
    prompts = [b["messages"][0]["content"] for b in openai_server.bodies[-2:]]
    assert "Answer A: Lyon\nAnswer B: Paris" in prompts[0] and "Answer A: Paris\nAnswer B: Lyon" in prompts[1]
    biased = judging(endpoint, "first-judge").judge.pairwise("Names the capital.", "Lyon", "Paris",
                                                             reference="Paris")
    assert (biased.winner, biased.score, biased.consistent) == ("tie", 0.5, False)


def test_without_a_judge_model_the_error_says_where_to_give_one(endpoint: Endpoint) -> None:
    llm = LLM({"model": "gpt-4o-mini", "prompt": "{x}"}, endpoint)
    with pytest.raises(TemplateError, match=re.escape('no judge model; give the target @llm_eval(judge="MODEL")')):
        llm.judge("r", "a")


@pytest.mark.parametrize(("given", "message"), [
    ({"model": "m", "temperature": 0.7}, "temperature=0.7, but a judge always runs at temperature 0"),
    ({"model": "m", "top_p": 0.5}, "top_p=0.5, but a judge always runs at temperature 0"),
    ({"model": "m", "prompt": "x"}, "the key 'prompt' is not a judge setting; a judge takes model, api, max_tokens"),
    ({"api": "chat"}, 'give the judge\'s "model"'),
    ({"model": "m", "api": "responses"}, "api='responses'; use 'chat' or 'completions'"),
    ({"model": "m", "max_tokens": 4}, "max_tokens=4; give an int >= 8"),
    (3, "got 3; give a model name or a dict"),
])
def test_a_judge_setting_the_tool_cannot_honour_is_refused_at_collection(pytester: pytest.Pytester, given: object,
                                                                         message: str) -> None:
    pytester.makepyfile(test_x=f'''
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={{"prompt": "{{x}}"}}, judge={given!r})
@pytest.mark.parametrize("x", ["a"])
def test_x(llm, x):
    pass
''')
    result = pytester.runpytest("--llm-tune", "--co")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*llm_eval(judge=...): {message}*"])


JUDGED = SENTIMENT_CASES + '''

@llm_eval(space={"model": "gpt-4o-mini", "prompt": "Review: {review}\\nSentiment:", "temperature": uniform(0, 1),
                 "max_tokens": randint(1, 4)}, metric="judge", num_samples=4, judge=JUDGE)
@pytest.mark.parametrize("case", CASES)
def test_sentiment(llm, case):
    answer = llm(case)[0]
    return {"judge": llm.judge("Says whether the review is positive or negative.", answer,
                               context=case["review"], reference=case["label"]).score}
'''


def judged_target(judge: str = "judge-model") -> str:
    return JUDGED.replace("judge=JUDGE", f"judge={judge!r}")


def test_a_tune_on_a_judge_records_its_calls_and_the_gate_replays_them_with_no_request(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=judged_target())
    result = pytester.runpytest("--llm-tune", "-o", "llmtune_report=tune.json")
    assert result.ret == 0, result.stdout.str()
    judge_bodies = [b for b in openai_server.bodies if b["model"] == "judge-model"]
    assert judge_bodies and all(b["temperature"] == 0 for b in judge_bodies)
    result.stdout.fnmatch_lines([f"*of which the judge: {len(judge_bodies)} requests (*tokens*"])
    report = json.loads((pytester.path / "tune.json").read_text())
    tuned = next(iter(report["targets"].values()))
    assert tuned["judge"]["requests"] == len(judge_bodies) and tuned["judge"]["ungraded"] == 0
    assert tuned["spending"]["requests"] == openai_server.requests  # the judge's are in the tune's spending too
    entry = next(iter(read_lock(pytester.path)["targets"].values()))
    assert entry["metric"] == "judge" and 0 < entry["score"] <= 1
    assert entry["fingerprints"]["judge"] == JudgeConfig("judge-model").fingerprint()
    assert "judge-model" not in json.dumps(entry["config"])  # the judge is not a tuned setting
    sent = openai_server.requests

    gated = pytester.runpytest("--llm-test", "-p", "no:randomly")

    assert gated.ret == 0, gated.stdout.str()
    assert openai_server.requests == sent  # the judge's calls replayed from the cassette, as the config's were


def test_changing_the_judge_model_makes_the_lock_stale_and_a_rescore_records_the_new_judge(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=judged_target())
    assert pytester.runpytest("--llm-tune").ret == 0
    pytester.makepyfile(test_sentiment=judged_target("judge-model-2"))

    stale = pytester.runpytest("--llm-test")

    assert stale.ret == pytest.ExitCode.TESTS_FAILED
    stale.stdout.fnmatch_lines(["*the lock is stale (its judge (the model, api or max_tokens of llm.judge, or the "
                                "package's judge prompt) changed*--llm-test --llm-record*"])
    sent = openai_server.requests
    assert pytester.runpytest("--llm-test", "--llm-record").ret == 0
    assert any(b["model"] == "judge-model-2" for b in openai_server.bodies[sent:])  # only the new judge's calls
    assert {b["model"] for b in openai_server.bodies[sent:]} == {"judge-model-2"}  # the config's replayed
    entry = next(iter(read_lock(pytester.path)["targets"].values()))
    assert entry["fingerprints"]["judge"] == JudgeConfig("judge-model-2").fingerprint()
    assert pytester.runpytest("--llm-test").ret == 0


def test_an_ini_judge_that_a_target_never_calls_is_not_part_of_its_lock(pytester: pytest.Pytester,
                                                                        openai_server: FakeOpenAI) -> None:
    pytester.makeini("[pytest]\nllmtune_judge_model = judge-model\n")
    pytester.makepyfile(test_sentiment=SENTIMENT_CASES + '''
@llm_eval(space={"model": "gpt-4o-mini", "prompt": "Review: {review}\\nSentiment:", "temperature": uniform(0, 1)},
          num_samples=2)
@pytest.mark.parametrize("case", CASES)
def test_sentiment(llm, case):
    assert case["label"] in llm(case)[0]
''')
    assert pytester.runpytest("--llm-tune").ret == 0
    assert "judge" not in next(iter(read_lock(pytester.path)["targets"].values()))["fingerprints"]
    pytester.makeini("[pytest]\nllmtune_judge_model = another-judge\n")
    assert pytester.runpytest("--llm-test").ret == 0  # a judge it never called cannot make it stale


def test_the_judge_ungraded_replies_are_misses_counted_in_the_tune_summary(pytester: pytest.Pytester,
                                                                            openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=judged_target("mute-judge").replace("num_samples=4", "num_samples=1"))
    result = pytester.runpytest("--llm-tune")
    result.stdout.fnmatch_lines(["*of which the judge: 12 requests*; 48 replies without a grade, each a miss*"])


def test_the_judge_spend_counts_in_the_optimization_budget(pytester: pytest.Pytester,
                                                           openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=judged_target().replace("num_samples=4",
                                                               'num_samples=-1, optimization_budget="3000 tokens"'))
    result = pytester.runpytest("--llm-tune")
    served = sum(len(" ".join(m["content"] for m in b["messages"]).split()) for b in openai_server.bodies)
    assert served > 0
    spent = re.search(r"optimization budget 3,000 tokens: spent ([\d,]+) tokens", result.stdout.str())
    assert spent is not None, result.stdout.str()
    assert int(spent.group(1).replace(",", "")) <= 3000
    judge_tokens = re.search(r"of which the judge: \d+ requests \(([\d,]+) tokens", result.stdout.str())
    assert judge_tokens is not None and int(judge_tokens.group(1).replace(",", "")) > 0
    usage = sum(len(" ".join(m["content"] for m in b["messages"]).split()) for b in openai_server.bodies
                if b["model"] == "judge-model")
    assert usage <= int(judge_tokens.group(1).replace(",", ""))  # prompt tokens of the judge's calls are in it


def test_a_judge_model_the_local_server_does_not_serve_is_refused_before_any_request(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x='''
import pytest
from pytest_llmtune import llm_eval, uniform

@llm_eval(space={"prompt": "Q: {x}", "temperature": uniform(0, 1)}, judge="gpt-4o-mini")
@pytest.mark.parametrize("x", ["2 + 2"])
def test_x(llm, x):
    pass
''')
    result = pytester.runpytest("--llm-tune", "--llm-local", "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*its judge is 'gpt-4o-mini', but --llm-local serves 'smollm2'*"
                                 "Give judge=\"smollm2\"*"])


def test_a_judge_model_without_a_line_in_a_complete_endpoint_table_is_refused_before_any_request(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makeini(f"[pytest]\nllmtune_endpoints =\n    gpt-4o-mini {openai_server.base_url}\n"
                     "llmtune_endpoints_only = true\n")
    pytester.makepyfile(test_sentiment=judged_target())
    result = pytester.runpytest("--llm-tune")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the model 'judge-model' has no line in ini llmtune_endpoints*"])
    assert openai_server.requests == 0


@pytest.mark.parametrize(("reply", "grade"), [
    ("Grade: 4\nReason: close.", 4), ("**Grade:** 3", 3), ("The grade is 2.", 2), ("5", 5), ("Grade: 4/5", 4),
    ("Grade: 2\nReason: a grade 5 answer would say more.", 2), ("Grade: 7", None), ("Grade: <the number>", None),
    ("It is a fine answer.", None), ("Grade: 0", None),
])
def test_a_grade_is_read_from_the_replies_judges_give_and_nothing_else_counts(reply: str, grade: int | None) -> None:
    assert judge_module._grade(reply, 5) == grade


@pytest.mark.parametrize(("reply", "winner"), [
    ("Winner: A\nReason: x", "a"), ("Winner: Answer B", "b"), ("winner: tie", "tie"), ("**Winner:** b", "b"),
    ("Winner: <A, B or tie>", None), ("A is better.", None), ("The winner is a tie.", "tie"),
    ("Winner: a tie", "tie"), ("Winner: A\n\nWinner: B", "a"),
])
def test_a_winner_is_read_from_the_replies_judges_give(reply: str, winner: str | None) -> None:
    assert judge_module._winner(reply) == winner


def test_the_co_preview_sizes_configs_from_their_own_recordings_not_the_judges() -> None:
    from pytest_llmtune.report.preview import recorded_sizes

    def interaction(prompt: str, prompt_tokens: int, completion_tokens: int) -> dict[str, object]:
        body = {"model": "m", "messages": [{"role": "user", "content": prompt}]}
        answer = {"choices": [{"index": 0}], "usage": {"prompt_tokens": prompt_tokens,
                                                        "completion_tokens": completion_tokens}}
        return {"request": {"body": json.dumps(body)}, "response": {"body": {"string": json.dumps(answer)}}}

    sizes = recorded_sizes([interaction("Review: fun\nSentiment:", 10, 2),
                            interaction(GRADE_PROMPT.format(rubric="r", context="", reference="", answer="a",
                                                            scale=5), 300, 40)])
    assert (sizes.prompt, sizes.sample) == (10.0, 2.0)
