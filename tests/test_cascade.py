"""Cascades (docs/cascades.md): composed from the candidates' results, locked with the share each stage answered
and the cost-quality front, run end to end by the gate and by `create()`; and the check `accept` refused clearly
when it cannot be honoured."""

from __future__ import annotations

import json
import re

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock
from pytest_llmtune.search.cascade import Cascades, CascadeTrial, front, needed, outcome_on
from pytest_llmtune.search.direction import Direction
from pytest_llmtune.search.halving import Trial
from pytest_llmtune.search.scores import Outcome

PRICES = "llmtune_prices =\n    small-1 0.0001 0.0001\n    large-1 0.001 0.001\n"

CASCADE_TEST = '''
import pytest
from pytest_llmtune import choice, llm_eval

REVIEWS = [f"review {i}: a {'great' if i % 2 else 'dull'} film number {i}" for i in range(60)]


def accept(context, response):
    return "unsure" not in response.text


@llm_eval({"model": choice(["small-1", "large-1"]), "temperature": choice([0, 0.8]), "max_tokens": 4,
           "prompt": "Examples: ...\\nReview: {review}"},
          cascade=accept, select="cheapest", optimization_budget="OPTIMIZATION", holdout=20, num_samples=4)
@pytest.mark.parametrize("review", REVIEWS)
def test_review(llm, review):
    expected = "positive" if "great" in review else "negative"
    assert llm(review=review)[0].split()[0] == expected
'''


def cascade_project(pytester: pytest.Pytester, budget: str = "100000 tokens", body: str = CASCADE_TEST) -> None:
    pytester.makepyfile(test_review=body.replace("OPTIMIZATION", budget))
    pytester.makeini("[pytest]\n" + PRICES)


NAME = "test_review.py::test_review"


def tune(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--llm-tune", "-p", "no:randomly", *args)


def test_a_tune_locks_a_cheap_cascade_that_the_gate_replays(pytester: pytest.Pytester,
                                                              openai_server: FakeOpenAI) -> None:
    cascade_project(pytester)
    result = tune(pytester)
    assert result.ret == 0
    entry = read_lock(pytester.path)["targets"][NAME]
    stages = entry["config"]["cascade"]
    assert [stage["model"] for stage in stages] == ["small-1", "large-1"]
    assert len(entry["cascade"]["shares"]) == 2 and sum(entry["cascade"]["shares"]) == pytest.approx(1)
    assert 0.5 < entry["cascade"]["shares"][0] < 1  # the small model answered the easy instances
    locked_points = [point for point in entry["front"] if point.get("locked")]
    assert [point["config"] for point in locked_points] == [entry["config"]]
    costs = [point["usd_per_instance"] for point in entry["front"]]
    assert costs == sorted(costs) and len(costs) >= 2
    result.stdout.fnmatch_lines(["*locked cascade #* (answered: config #* of the tuning instances): * against the "
                                 "best single config #*'s * on the same 40 instances (*), at 0.* its cost per instance",
                                 "*a cascade of 2 stages, each call trying them in order until accept takes an answer:",
                                 "*stage 1 (answered *% of the instances):"])
    result.stdout.fnmatch_lines(["on the 20 held-out instances: the cascade * at 0.*x ($*) the cost per instance of "
                                 "config #*, * (*)"])
    sent = openai_server.requests
    gate = pytester.runpytest("--llm-test", "-p", "no:randomly")
    assert gate.ret == 0, gate.stdout.str()
    assert openai_server.requests == sent  # every stage's request of every instance was recorded
    gate.stdout.fnmatch_lines(["test_review.py::test_review: pass_rate * on 60 instances *; all 60 results as "
                               "locked: ok"])


@pytest.mark.filterwarnings("ignore::pytest_llmtune.llm.cost.UnknownPriceWarning")
def test_locked_gives_create_the_stages_in_order(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    from pytest_llmtune import create, locked
    from pytest_llmtune.store.lockfile import LockfileError

    cascade_project(pytester)
    assert tune(pytester).ret == 0
    lockfile = pytester.path / "llmtune.lock"
    config = locked(NAME, lockfile)
    assert set(config) == {"config_list"}
    assert [stage["model"] for stage in config["config_list"]] == ["small-1", "large-1"]
    answered = set()
    for i in range(20):
        review = f"review {i}: a {'great' if i % 2 else 'dull'} film number {i}"
        response = create({"review": review}, **config, filter_func=lambda context, r: "unsure" not in r.text)
        answered.add(response.config_index)
    assert answered == {0, 1}  # the small model took the easy reviews, the large one the rest
    entry = read_lock(pytester.path)["targets"][NAME]
    cheapest = entry["front"][0]
    assert locked(NAME, lockfile, max_cost_per_instance=cheapest["usd_per_instance"]) == (
        {"config_list": cheapest["config"]["cascade"]} if "cascade" in cheapest["config"] else cheapest["config"])
    best = max(entry["front"], key=lambda point: point["score"])
    chosen = locked(NAME, lockfile, max_cost_per_instance=1.0)
    assert chosen == ({"config_list": best["config"]["cascade"]} if "cascade" in best["config"] else best["config"])
    with pytest.raises(LockfileError, match=r"no operating point of .* costs at most \$1e-09 per instance: the "
                                            r"cheapest costs \$"):
        locked(NAME, lockfile, max_cost_per_instance=1e-9)


def test_accept_that_raises_fails_the_target_naming_the_config_and_the_instance(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    raising = 'if "unsure" in response.text:\n        raise ValueError("cannot tell")\n    return True'
    body = CASCADE_TEST.replace('return "unsure" not in response.text', raising)
    cascade_project(pytester, body=body)
    result = tune(pytester)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*could not tune test_review.py::test_review:*",
                                 "test_review.py::test_review[[]review *]: accept raised on the config "
                                 "(model='small-1', temperature=*, max_tokens=4): ValueError: cannot tell; "
                                 "fix accept*"])
    assert "llmtune.lock" not in {path.name for path in pytester.path.iterdir()}


def test_a_second_llm_call_on_an_instance_is_refused(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    body = CASCADE_TEST.replace("assert llm(review=review)[0]", "llm(review=review)\n    assert llm(review=review)[0]")
    cascade_project(pytester, body=body)
    result = tune(pytester)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*a target with cascade= calls llm() once per instance*"])


@pytest.mark.parametrize(("arguments", "message"), [
    ("cascade=accept, max_stages=1", "llm_eval(max_stages=1): a cascade has at least 2 stages; give an int >= 2"),
    ("cascade='accept'", "llm_eval(cascade='accept'): give the check accept(context, response) -> bool*"),
])
def test_a_cascade_that_cannot_be_tuned_is_refused_at_collection(pytester: pytest.Pytester, arguments: str,
                                                                  message: str) -> None:
    cascade_project(pytester, body=CASCADE_TEST.replace("cascade=accept", arguments))
    result = pytester.runpytest("--llm-tune", "--co")
    assert result.ret == 2
    result.stdout.fnmatch_lines([f"*{message}*"])


def test_a_cascade_over_one_config_is_refused(pytester: pytest.Pytester) -> None:
    body = CASCADE_TEST.replace('choice(["small-1", "large-1"])', '"small-1"').replace("choice([0, 0.8])", "0")
    cascade_project(pytester, body=body)
    result = pytester.runpytest("--llm-tune", "--co")
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*llm_eval(cascade=...) over a space of one config: a cascade needs configs to "
                                 "choose its stages from*"])


def test_an_edited_accept_makes_the_lock_stale_for_a_new_search(pytester: pytest.Pytester,
                                                               openai_server: FakeOpenAI) -> None:
    cascade_project(pytester)
    assert tune(pytester).ret == 0
    cascade_project(pytester, body=CASCADE_TEST.replace('"unsure" not in response.text',
                                                        '"unsure" not in response.text.lower()'))
    gate = pytester.runpytest("--llm-test", "-p", "no:randomly")
    assert gate.ret == 1
    gate.stdout.fnmatch_lines(["*its cascade= check or max_stages changed*", "*pytest --llm-tune*"])


# --- the composition, without a session ------------------------------------------------------------------------


def trial(index: int, results: dict[int, tuple[float, bool]], tokens: int = 10) -> Trial:
    found = Trial(index)
    for instance, (metric, accepted) in results.items():
        found.add(instance, Outcome(metric, tokens, tokens / 1000, accepted=accepted))
    return found


def test_a_cascade_takes_the_first_accepted_answer_and_pays_for_every_stage_it_ran() -> None:
    cheap = trial(0, {0: (1.0, True), 1: (0.0, False), 2: (0.0, False)}, tokens=10)
    strong = trial(1, {0: (0.0, True), 1: (1.0, True), 2: (1.0, False)}, tokens=100)
    assert [outcome_on([cheap, strong], i) for i in range(3)] == [
        (Outcome(1.0, 10, 0.01, accepted=True, answered=0), 0),
        (Outcome(1.0, 110, 0.11, accepted=True, answered=1), 1),
        (Outcome(1.0, 110, 0.11, accepted=True, answered=1), 1),  # the last stage answers when none accepts
    ]


def test_a_cascade_needs_a_later_stage_only_where_the_ones_before_rejected() -> None:
    cheap = trial(0, {0: (1.0, True), 1: (0.0, False)})
    strong = trial(1, {0: (1.0, True)})
    assert outcome_on([cheap, strong], 1) is None
    assert [needed([cheap, strong], i) for i in range(3)] == [None, 1, 0]


def test_the_front_keeps_what_no_other_beats_on_both_score_and_cost() -> None:
    a, b, c, d = (trial(i, {0: (score, True)}, tokens=tokens)
                  for i, (score, tokens) in enumerate([(0.5, 10), (0.9, 100), (0.4, 50), (0.9, 200)]))
    kept = front([a, b, c, d], Direction("max"), lambda t: t.values()[0])
    assert kept == [a, b]


def test_cascades_are_composed_cheap_first_and_kept_when_known_on_every_instance() -> None:
    cheap = trial(0, {i: (1.0 if i % 3 else 0.0, bool(i % 3)) for i in range(9)}, tokens=10)
    strong = trial(1, dict.fromkeys(range(9), (1.0, True)), tokens=100)
    cascades = Cascades([cheap, strong], 9, Direction("max"), lambda t: sum(t.values()) / len(t.values()),
                        min_instances=3)
    built = cascades.build(2)
    assert [(t.stages, t.index) for t in built] == [((0, 1), 2)]
    assert isinstance(built[0], CascadeTrial) and built[0].values() == [1.0] * 9
    assert built[0].shares() == pytest.approx([6 / 9, 3 / 9])
    assert built[0].tokens_per_instance == pytest.approx(10 + 100 * 3 / 9)


def test_the_reports_show_the_cascade_stage_by_stage(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    cascade_project(pytester)
    assert tune(pytester, "--llm-report", "tune.html", "--llm-report", "tune.json").ret == 0
    data = json.loads((pytester.path / "tune.json").read_text())["targets"][NAME]
    locked = data["locked"]
    assert locked["config"]["cascade"] and locked["cascade"]["shares"] and locked["front"]
    cascades = [c for c in data["configs"] if "cascade" in c["config"]]
    assert cascades and all(c["instances"] == 40 for c in cascades)  # known on every tuning instance
    page = (pytester.path / "tune.html").read_text()
    assert '<rect class="dot"' in page  # a cascade's mark on the plot is a square
    assert "squares: cascades" in page
    assert re.search(r"<td[^>]*>#\d+→#\d+</td>", page)  # the leaderboard names a cascade by its stages
    assert re.search(r'<th colspan="2">stage 1 \(answered \d+%\)</th>', page)


def test_the_plan_says_cascades_follow_the_search(pytester: pytest.Pytester) -> None:
    cascade_project(pytester)
    result = pytester.runpytest("--llm-tune", "--co")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*then cascades of up to 3 stages composed from the configs' results (no request)*"])


def test_a_cascade_over_the_inference_budget_is_never_locked(pytester: pytest.Pytester,
                                                             openai_server: FakeOpenAI) -> None:
    """Both configs keep to 11 tokens an instance; the cascade of them costs 13 (8 or 18 an instance)."""
    body = '''
import pytest
from pytest_llmtune import choice, llm_eval

CASES = [(i, 2 * i + 1) for i in range(60)]

def accept(context, response):
    return response.text.split()[0] == str(context["a"] + context["b"])

@llm_eval({"group": choice([{"model": "m-1", "prompt": "What is {a} + {b}?"},
                            {"model": "m-2", "prompt": "Examples: ...\\nWhat is {a} + {b}?"}]),
           "temperature": 0, "max_tokens": 4},
          cascade=accept, holdout=20, inference_budget="11 tokens")
@pytest.mark.parametrize(("a", "b"), CASES)
def test_sum(llm, a, b):
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
'''
    pytester.makepyfile(test_sum=body)
    result = tune(pytester)
    assert result.ret == 0
    assert "cascade" not in read_lock(pytester.path)["targets"]["test_sum.py::test_sum"]["config"]
    result.stdout.fnmatch_lines(["*cascade of configs #* -> #* left out: over the inference budget of 11 tokens "
                                 "per instance*"])


def test_an_accept_that_raises_in_the_gate_fails_the_target_with_the_fix(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    body = CASCADE_TEST.replace('    return "unsure" not in response.text',
                                '    import os\n    if os.environ.get("BOOM") and "unsure" in response.text:\n'
                                '        raise ValueError("boom")\n    return "unsure" not in response.text')
    cascade_project(pytester, body=body)
    assert tune(pytester).ret == 0
    monkeypatch.setenv("BOOM", "1")  # the check breaks after the lock (its source is the same: not stale)
    gate = pytester.runpytest("--llm-test", "-p", "no:randomly")
    assert gate.ret == 1
    gate.stdout.fnmatch_lines(["*accept raised on stage 1 of the cascade (model='small-1', *): ValueError: boom; "
                               "fix accept*"])
    assert "INTERNALERROR" not in gate.stdout.str()


@pytest.mark.filterwarnings("ignore::pytest_llmtune.llm.cost.UnknownPriceWarning")
def test_a_stage_draws_inside_a_cascade_the_samples_it_drew_alone(openai_server: FakeOpenAI) -> None:
    """What the composition assumes: a later stage that differs from an earlier one only in n is numbered on its
    own, not after the earlier one's samples."""
    import openai

    from pytest_llmtune.llm.client import LLM, Endpoint

    endpoint = Endpoint(openai.OpenAI(base_url=openai_server.base_url, api_key="sk-x", max_retries=0), split_n=True)
    one = {"model": "m", "temperature": 0.8, "n": 1, "max_tokens": 4, "prompt": "What is {a} + {b}?"}
    three = {**one, "n": 3}
    for a in range(10):
        alone = LLM(three, endpoint, stages=[three], accept=lambda context, response: False)(a=a, b=1)
        inside = LLM(one, endpoint, stages=[one, three], accept=lambda context, response: False)(a=a, b=1)
        assert inside == alone


def test_a_cascade_with_a_function_scoped_fixture_tunes_one_at_a_time_and_gates_under_xdist(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """monkeypatch makes every evaluation its own run of pytest's protocol; the xdist gate replays the cascade."""
    body = CASCADE_TEST.replace("def test_review(llm, review):",
                                "def test_review(llm, review, monkeypatch):\n    monkeypatch.setenv('SEEN', review)")
    cascade_project(pytester, body=body)
    result = tune(pytester)
    assert result.ret == 0
    assert "cascade" in read_lock(pytester.path)["targets"][NAME]["config"]
    sent = openai_server.requests
    gate = pytester.runpytest("--llm-test", "-p", "no:randomly", "-n", "2")
    assert gate.ret == 0, gate.stdout.str()
    assert openai_server.requests == sent
