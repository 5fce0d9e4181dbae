"""The edges a user may write: a space key, a flag, an edit. For each class of mistake, what the tool must do: refuse
it with the fix before anything is spent, or honour it exactly, never tune, send or lock it as if it mattered.

Each test records a row (`record_property("edge", ...)`): what was written and what the tool did; tests/conftest.py
prints them as a table at the end of the run, beside the reliability table.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock
from pytest_llmtune.search.domains import InvalidSpaceError, choice, randint, uniform
from pytest_llmtune.search.keys import API_FIELDS, SESSION_KEYS
from pytest_llmtune.search.space import SearchSpace

Record = Callable[[str, object], None]


def edge_row(record: Record, written: str, done: str) -> None:
    record("edge", json.dumps({"written": written, "done": done}))


def refusal(space: dict[str, Any]) -> str:
    with pytest.raises(InvalidSpaceError) as caught:
        SearchSpace(space)
    return str(caught.value)


def typo(name: str) -> str:
    """A typo a hand makes: two different neighbouring letters swapped, from the middle on."""
    at = next(k for k in range(len(name) // 2, len(name)) if name[k] != name[k - 1])
    return name[:at - 1] + name[at] + name[at - 1] + name[at + 1:]


# --- space keys, at collection: every key of a class ------------------------------------------------------------

@pytest.mark.parametrize("api", sorted(API_FIELDS))
def test_every_request_field_of_an_api_is_accepted_in_its_space(api: str) -> None:
    valid = {"temperature": 0.5, "top_p": 0.5, "presence_penalty": 0, "frequency_penalty": 0, "max_tokens": 5, "n": 1}
    for field in sorted(API_FIELDS[api] - {"model"}):
        space = SearchSpace({"api": api, "model": "m", "prompt": "Q: {x}", field: valid.get(field, "a value")})
        assert field in space.config_at([])


@pytest.mark.parametrize("field", sorted({name for fields in API_FIELDS.values() for name in fields if len(name) >= 5}))
def test_a_typo_of_any_request_field_is_refused_naming_the_field(field: str, record_property: Record) -> None:
    misspelt = typo(field)
    api = "chat" if field in API_FIELDS["chat"] else "completions"

    message = refusal({"api": api, "model": "m", "prompt": "Q: {x}", misspelt: 1})

    assert f"space[{misspelt!r}]: {misspelt!r} is not a request field of api={api!r}" in message
    assert f"did you mean {field!r}?" in message
    if field == "temperature":
        edge_row(record_property, f'"{misspelt}": uniform(0, 1) (a typo)', message.split(": ", 1)[1][:110] + "…")


@pytest.mark.parametrize("key", sorted(SESSION_KEYS))
def test_every_session_key_in_a_space_is_refused_with_its_fix(key: str, record_property: Record) -> None:
    message = refusal({"model": "m", "prompt": "Q: {x}",
                       "endpoint": choice([{"model": "a"}, {"model": "b", key: "x"}])})

    assert f"space['endpoint'] option {key!r}: {key!r} cannot be tuned: {SESSION_KEYS[key]}" == message
    if key == "base_url":
        edge_row(record_property, 'choice([{"model": "a"}, {"model": "b", "base_url": URL}])', message[:110] + "…")


@pytest.mark.parametrize(("api", "field"), [("chat", "suffix"), ("chat", "best_of"), ("chat", "echo"),
                                            ("completions", "response_format"), ("completions", "tools")])
def test_a_field_of_the_other_api_is_refused(api: str, field: str) -> None:
    message = refusal({"api": api, "model": "m", "prompt": "Q: {x}", field: None})

    assert f"is a request field of api={'completions' if api == 'chat' else 'chat'!r} only" in message


def test_a_field_of_one_api_is_accepted_in_the_group_option_that_uses_that_api() -> None:
    SearchSpace({"model": "m", "template": choice([{"api": "chat", "prompt": "Q: {x}"},
                                                   {"api": "completions", "prompt": "Q: {x}\nA:", "suffix": "."}])})
    assert "suffix" in refusal({"model": "m", "suffix": ".", "template": choice([
        {"api": "chat", "prompt": "Q: {x}"}, {"api": "completions", "prompt": "Q: {x}\nA:"}])})


@pytest.mark.parametrize("extra", [{"temperature": 0.5}, {"prompt": "x"}, "top_k=5", {1: 2}])
def test_extra_body_holds_only_the_servers_own_fields(extra: Any) -> None:
    assert "extra_body" in refusal({"model": "m", "prompt": "Q: {x}", "extra_body": extra})


def test_a_template_variable_that_no_template_uses_is_refused() -> None:
    message = refusal({"model": "m", "prompt": choice(["Q: {x}", "Q ({style}): {x}"]), "stlye": choice(["a", "b"])})

    assert "did you mean 'style'?" in message


# --- space keys, end to end: tuned and sent exactly as they mean --------------------------------------------------

TEMPLATE_VARIABLES = '''
import pytest
from pytest_llmtune import llm_eval, choice, randint

def few_shot(context):
    shots = ["Examples: Review: great -> positive", "Review: dull -> negative"][: context["shots"]]
    return "\\n".join([*shots, f"Review: {context['review']} ->"])

REVIEWS = ["great fun", "dull", "loved it", "a waste", "brilliant", "boring"]

@llm_eval(space={"model": "m", "temperature": 0,
                 "template": choice([{"prompt": few_shot, "shots": choice([0, 1, 2])},
                                     {"prompt": "{intro}Review: {review} ->", "intro": choice(["", "Examples: "])}]),
                 "extra_body": {"top_k": randint(1, 50)}}, num_samples=6)
@pytest.mark.parametrize("review", REVIEWS)
def test_review(llm, review):
    expected = "positive" if review.startswith(("great", "loved", "brilliant")) else "negative"
    assert llm(review=review)[0].split()[0] == expected
'''


def test_template_variables_are_tuned_and_rendered_never_sent_and_extra_body_is_sent(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Record,
        monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_reviews=TEMPLATE_VARIABLES)
    monkeypatch.setenv("COLUMNS", "200")  # room for every setting's column

    result = pytester.runpytest("--llm-tune", "-v")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    bodies = openai_server.bodies
    assert bodies and not any({"shots", "intro", "extra_body"} & set(body) for body in bodies)
    assert all(isinstance(body["top_k"], int) for body in bodies)  # the server's field, at the top of the body
    contents = {body["messages"][0]["content"] for body in bodies}
    assert any(text.startswith("Examples: Review: great -> positive\nReview:") for text in contents)  # shots = 1
    assert any(text.startswith("Examples: Review: great fun") for text in contents)  # intro = "Examples: "
    config = read_lock(pytester.path)["targets"]["test_reviews.py::test_review"]["config"]
    assert set(config) & {"shots", "intro"} and isinstance(config["extra_body"]["top_k"], int)
    header = next(line for line in result.outlines if line.lstrip().startswith("rank"))
    assert "extra_body" in header and ("shots" in header or "intro" in header)
    edge_row(record_property, '"shots": choice([0, 1, 2]) read by a callable template; "extra_body": {"top_k": ...}',
             f"tuned and rendered; shots/intro in 0 of {len(bodies)} bodies, top_k in all; locked {sorted(config)}")


def test_the_application_renders_a_locked_template_variable_as_the_tune_did(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makepyfile(test_reviews=TEMPLATE_VARIABLES)
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    monkeypatch.syspath_prepend(str(pytester.path))
    from pytest_llmtune import create, locked

    config = locked("test_reviews.py::test_review", pytester.path / "llmtune.lock")
    tuned = {json.dumps(body, sort_keys=True) for body in openai_server.bodies}

    response = create({"review": "great fun"}, **config, price=(0.0, 0.0))  # the suite's model "m" has no price

    assert json.dumps(openai_server.bodies[-1], sort_keys=True) in tuned  # the very request the tune measured
    assert response.cached is False and response.text


def test_create_refuses_a_key_no_request_carries(openai_server: FakeOpenAI) -> None:
    from pytest_llmtune import TemplateError, create

    with pytest.raises(TemplateError, match="did you mean 'temperature'"):
        create({"x": 1}, model="m", prompt="Q: {x}", temprature=0.5)
    assert openai_server.requests == 0


@pytest.mark.parametrize(("templates", "why"), [
    ("choice([lambda c: 'Q: ' + c['x'], lambda c: 'A: ' + c['x']])", "is a lambda"),
    ("choice([shots(1), shots(3)])", "is made inside a function"),
    ("renamed", "is not what its module holds under the name 'shots_3'"),
])
def test_a_callable_template_the_application_could_not_import_is_refused_at_collection(
        pytester: pytest.Pytester, templates: str, why: str, record_property: Record) -> None:
    pytester.makepyfile(test_factory=f'''
import pytest
from pytest_llmtune import llm_eval, choice

def shots(k):
    def template(context):
        return "Q: 1 + 1 = 2\\n" * k + f"Q: {{context['x']}} ="
    return template

renamed = shots(3)
renamed.__qualname__ = renamed.__name__ = "shots_3"

@llm_eval(space={{"model": "m", "prompt": {templates}}})
@pytest.mark.parametrize("x", ["2 + 2"])
def test_sum(llm, x):
    pass
''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines([f"*InvalidSpaceError: the template *{why}*make one template read a tuned variable*"])
    if "made inside" in why:
        edge_row(record_property, "choice([shots(1), shots(3)]) (templates made by a factory)",
                 "refused at collection: define each with its own def, or read a tuned variable")


# --- the local server: what it cannot honour ----------------------------------------------------------------------

@pytest.mark.parametrize(("space", "message"), [
    ('{"model": choice(["smollm2", "some-other-model"]), "prompt": "Q: {x}"}',
     "*the space names the model 'some-other-model', but --llm-local serves 'smollm2' (*llmtune_local_models*"),
    ('{"g": choice([{"model": "gpt-4o-mini", "prompt": "Q: {x}"}, {"prompt": "{x}"}])}',
     "*the space names the model 'gpt-4o-mini'*"),
    ('{"prompt": "Q: {x}", "api": "completions", "best_of": 3}', "*llama-server ignores best_of*"),
])
def test_what_the_local_server_would_answer_without_honouring_is_refused_before_any_request(
        pytester: pytest.Pytester, space: str, message: str, record_property: Record) -> None:
    pytester.makepyfile(test_x=f'''
import pytest
from pytest_llmtune import llm_eval, choice

@llm_eval(space={space})
@pytest.mark.parametrize("x", ["2 + 2"])
def test_x(llm, x):
    pass
''')

    result = pytester.runpytest("--llm-tune", "--llm-local", "--co")  # refused in the plan too: no server needed

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    if "some-other-model" in space:
        edge_row(record_property, '--llm-local with "model": choice(["smollm2", "some-other-model"])',
                 "refused before any request: --llm-local serves 'smollm2' and the models of llmtune_local_models")


def test_llmtune_model_other_than_the_local_one_is_refused_under_llm_local(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x='''
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={"prompt": "Q: {x}"})
@pytest.mark.parametrize("x", ["1"])
def test_x(llm, x):
    pass
''')
    result = pytester.runpytest("--llm-tune", "--llm-local", "--co", "-o", "llmtune_model=gpt-4o-mini")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*ini llmtune_model = gpt-4o-mini, but --llm-local serves one model, 'smollm2'*"])


# --- flags ----------------------------------------------------------------------------------------------------------

PLAIN_TARGET = '''
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={"model": "m", "prompt": "Review: {r} ->", "temperature": 0})
@pytest.mark.parametrize("r", ["great fun", "dull"])
def test_x(llm, r):
    assert llm(r=r)[0]
'''


@pytest.mark.parametrize("option", ["--llm-report", "--llm-local-model"])
def test_a_path_option_given_apart_that_would_move_the_rootdir_is_refused_and_the_equals_form_works(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory,
        option: str, record_property: Record) -> None:
    pytester.makepyfile(test_x=PLAIN_TARGET)
    pytester.makeini("[pytest]\n")
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    outside = tmp_path_factory.mktemp("elsewhere") / ("gate.html" if option == "--llm-report" else "model.gguf")
    outside.write_text("")

    apart = pytester.runpytest("--llm-test", option, str(outside))
    joined = pytester.runpytest("--llm-test", f"{option}={outside}", "-p", "no:cacheprovider")

    assert apart.ret == pytest.ExitCode.USAGE_ERROR
    apart.stderr.fnmatch_lines([f"*{option} {outside}: pytest took this value for a test path when it chose the "
                                f"rootdir (*, not {pytester.path}), *write {option}={outside}"])
    assert joined.ret == pytest.ExitCode.OK, joined.stdout.str()
    if option == "--llm-report":
        edge_row(record_property, "--llm-test --llm-report /elsewhere/gate.html (the file exists)",
                 f"refused: the value would move the rootdir; write {option}=PATH (which works)")


def test_llm_local_model_implies_llm_local_and_names_the_model_after_its_file(
        pytester: pytest.Pytester, record_property: Record) -> None:
    from pytest_llmtune.llm.local import default_model_path

    pytester.makepyfile(test_x=PLAIN_TARGET.replace('"model": "m", ', "").replace('"temperature": 0}',
                                                                                 '"temperature": 0, "max_tokens": 4}'))
    model = pytester.path / "my-model.gguf"
    shutil.copy(default_model_path(), model)

    result = pytester.runpytest("--llm-tune", f"--llm-local-model={model}")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["llmtune: endpoint http://127.0.0.1:*/v1, concurrency 8; my-model.gguf (llama-server "
                                 "pid *)"])
    assert read_lock(pytester.path)["targets"]["test_x.py::test_x"]["config"]["model"] == "my-model"
    edge_row(record_property, "--llm-tune --llm-local-model=FILE (without --llm-local)",
             "the local server runs FILE, named my-model in the lock (was: requests to api.openai.com)")


def test_accept_lower_without_record_is_refused(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--llm-test", "--llm-accept-lower")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-accept-lower goes with --llm-test --llm-record*"])


def test_a_forgotten_llm_local_fails_once_naming_the_url_and_the_flag(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
        record_property: Record) -> None:
    """A lock tuned on the local model, checked live against nothing: one failure, no retries, the fix."""
    pytester.makepyfile(test_x=PLAIN_TARGET)
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    lock = read_lock(pytester.path)
    lock["targets"]["test_x.py::test_x"]["local"] = True  # as a tune with --llm-local writes it
    (pytester.path / "llmtune.lock").write_text(json.dumps(lock))
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the discard port: nothing listens

    result = pytester.runpytest("--llm-test", "--llm-live")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(failed=1, skipped=2)
    line = next(line for line in result.outlines if line.startswith("FAILED test_x.py::test_x:"))
    assert line == ("FAILED test_x.py::test_x: nothing listens at http://127.0.0.1:9/v1/chat/completions (connection "
                    "refused): start the endpoint's server, or point ini llmtune_base_url (or OPENAI_BASE_URL) at one "
                    "that runs; this lock was tuned on the local model: add --llm-local")
    assert "Traceback" not in result.stdout.str() and len(result.outlines) < 40
    edge_row(record_property, "--llm-test --llm-live of a local lock without --llm-local",
             "one failure naming the URL and --llm-local; the instances skipped; no retries, no traceback")


def test_hints_name_the_flag_a_local_lock_needs(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_x=PLAIN_TARGET)
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    lock = read_lock(pytester.path)
    lock["targets"]["test_x.py::test_x"]["local"] = True
    (pytester.path / "llmtune.lock").write_text(json.dumps(lock))
    pytester.makepyfile(test_x=PLAIN_TARGET.replace("assert llm(r=r)[0]", "assert llm(r=r)[0]  # edited\n    pass"))

    result = pytester.runpytest("--llm-test")

    result.stdout.fnmatch_lines(["*the lock is stale (its test body, or a definition of its module that it uses, "
                                 "changed): score the locked config again with "
                                 "`pytest --llm-test --llm-record --llm-local test_x.py::test_x`*, or re-tune: "
                                 "`pytest --llm-tune --llm-local test_x.py::test_x`*"])


TWO_TARGETS = '''
import os
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={"model": "m", "prompt": "Review: {r} ->", "temperature": 0})
@pytest.mark.parametrize("r", ["great fun", "dull"])
def test_NAME(llm, r):
    if os.environ.get("BREAK") == "NAME" and r == "dull":
        raise RuntimeError("broken on purpose")
    assert llm(r=r)[0]
'''


def test_a_run_stopped_by_x_says_which_verdicts_it_never_reached(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch,
        record_property: Record) -> None:
    pytester.makepyfile(test_a=TWO_TARGETS.replace("NAME", "a"), test_b=TWO_TARGETS.replace("NAME", "b"))
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    monkeypatch.setenv("BREAK", "a")

    result = pytester.runpytest("--llm-test", "--llm-live", "-x")

    for name in ("test_a.py::test_a", "test_b.py::test_b"):
        result.stdout.fnmatch_lines([f"{name}: not gated: the run stopped before {name}[[]llmtune[]] ran (stopping "
                                     "after 1 failures); run it without -x or --maxfail to see its verdict"])
    assert "was not selected" not in result.stdout.str()
    edge_row(record_property, "--llm-test --llm-live -x, stopped on the first target's instance",
             "each target says the run stopped before its verdict (was: 'was not selected')")


# --- edits, and what the gate makes of them -------------------------------------------------------------------------

def test_a_rescore_keeps_the_tunes_split_scores_marked_as_the_tunes(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    body = PLAIN_TARGET.replace('["great fun", "dull"]', '[f"review {k}" for k in range(12)]').replace(
        '"temperature": 0}', '"temperature": 0}, holdout=4')
    pytester.makepyfile(test_x=body)
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    tuned = read_lock(pytester.path)["targets"]["test_x.py::test_x"]
    pytester.makepyfile(test_x=body.replace("assert llm(r=r)[0]", "answer = llm(r=r)\n    assert answer[0]"))

    result = pytester.runpytest("--llm-test", "--llm-record")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    relocked = read_lock(pytester.path)["targets"]["test_x.py::test_x"]
    assert relocked["scored_by"] == "rescore"
    assert relocked["tuning"] == {**tuned["tuning"], "scored_by": "tune"}
    assert relocked["holdout"] == {**tuned["holdout"], "scored_by": "tune"}


def test_edits_that_change_a_score_on_the_same_responses_and_what_the_gate_does(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Record) -> None:
    """The class: an edit of the scoring code, on replayed responses. Any drop is the code's: the gate fails it
    with the instances named and the lock kept; an edit that changes nothing re-scores to the same lock."""
    helpers = "def norm(text):\n    return text.split()[0].lower()\n"
    body = '''
import pytest
from pytest_llmtune import llm_eval
from helpers import norm

REVIEWS = [f"great {k}" for k in range(20)] + [f"dull {k}" for k in range(20)]

@llm_eval(space={"model": "m", "prompt": "Examples:\\nReview: {r} ->", "temperature": 0}, holdout=0)
@pytest.mark.parametrize("r", REVIEWS)
def test_x(llm, r):
    assert norm(llm(r=r)[0]) == ("positive" if r.startswith("great") else "negative")
'''
    pytester.makepyfile(test_x=body, helpers=helpers)
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    lock = (pytester.path / "llmtune.lock").read_text()
    locked = read_lock(pytester.path)["targets"]["test_x.py::test_x"]
    passing = sorted(key for key, value in locked["results"].items() if value == 1)
    assert len(passing) >= 6
    broken = passing[:3]  # a helper edit that breaks three instances the lock passed
    pytester.makepyfile(helpers=helpers + f"\n\nBROKEN = {broken!r}\n")
    pytester.makepyfile(test_x=body.replace("assert norm(", "assert r not in BROKEN and norm(").replace(
        "from helpers import norm", "from helpers import BROKEN, norm"))
    requests = openai_server.requests

    result = pytester.runpytest("--llm-test", "--llm-record")

    line = next(line for line in result.outlines if line.startswith("FAILED test_x.py::test_x:"))
    assert openai_server.requests == requests  # every response replayed
    assert f"40 replayed instances compared exactly: 3 score lower on the same responses ({', '.join(broken)}), " \
           "-0.075 on the score (a change of the code)" in line
    assert "the lock is left as it was" in line and "--llm-accept-lower" in line
    assert (pytester.path / "llmtune.lock").read_text() == lock
    edge_row(record_property, "a helper edit failing 3 of 40 replayed instances, then --llm-test --llm-record",
             "fails, naming the 3 and -0.075 on the score; the lock kept; --llm-accept-lower would write it")


# --- the table --------------------------------------------------------------------------------------------------

def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    """The summary's table (used by tests/conftest.py)."""
    from tabulate import tabulate

    return tabulate([[row["written"], row["done"]] for row in rows],
                    headers=["what the user wrote", "what the tool did"], tablefmt="simple").splitlines()


def test_the_words_of_every_refusal_name_the_key() -> None:
    """A refusal says where the key is (space['...']), so a user can find the line."""
    spaces: list[dict[str, Any]] = [
        {"model": "m", "prompt": "{x}", "temprature": 1}, {"model": "m", "prompt": "{x}", "stream": True},
        {"model": "m", "prompt": "{x}", "g": choice([{"n": 1}, {"api_key": "sk-x"}])},
        {"model": "m", "prompt": "{x}", "extra_body": {"temperature": uniform(0, 1)}},
        {"model": "m", "prompt": "{x}", "extra_body": {"top_k": randint(1, 5)}, "top_k": 3}]
    for space in spaces:
        assert re.match(r"space\['\w+'\]", refusal(space))


def test_an_api_key_in_a_space_is_refused_and_never_lands_in_a_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_x=PLAIN_TARGET.replace('"temperature": 0}', '"temperature": 0, "api_key": "sk-secret"}'))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert not [path for path in Path(pytester.path).rglob("*") if path.is_file() and path.suffix in (".lock", ".json")]


def test_a_space_with_no_model_edited_around_the_lock_keeps_it_fresh(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """The tune names the session's model (ini llmtune_model) in the locked config; the space names none."""
    space = '{"prompt": choice(["Examples: Review: {r} ->", "Review: {r}\\\\nSentiment:"]), "temperature": 0}'
    body = PLAIN_TARGET.replace('{"model": "m", "prompt": "Review: {r} ->", "temperature": 0}', space).replace(
        "from pytest_llmtune import llm_eval", "from pytest_llmtune import llm_eval, choice")
    pytester.makepyfile(test_x=body)
    pytester.makeini("[pytest]\nllmtune_model = m\n")
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    locked = read_lock(pytester.path)["targets"]["test_x.py::test_x"]["config"]
    assert locked["model"] == "m"
    other = next(p for p in ("Examples: Review: {r} ->", "Review: {r}\\\\nSentiment:") if p.replace("\\\\", "\\")
                 != locked["prompt"])
    pytester.makepyfile(test_x=body.replace(other, other.replace("Review:", "A review:")))

    result = pytester.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*ok; its search space changed since the tune, and the locked config is still a "
                                 "point of it*"])


def test_a_metric_that_scores_zero_everywhere_gets_no_interval_beyond_its_values(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """Partial credit in {0, 0.5, 1}, all 0 here: not a pass rate, so not Wilson's [0.00, 0.49]."""
    pytester.makepyfile(test_x='''
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={"model": "m", "prompt": "Review: {r} ->", "temperature": 0}, metric="score")
@pytest.mark.parametrize("r", ["great fun", "dull", "loved it", "a waste"])
def test_x(llm, r):
    llm(r=r)
    return {"score": 0.0}
''')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert read_lock(pytester.path)["targets"]["test_x.py::test_x"]["interval"] == [0.0, 0.0]
    assert "[0.00, 0.49]" not in result.stdout.str()


def test_a_lock_recorded_before_samples_carried_seeds_still_replays(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """An upgrade loses no recording: a lock without "seeded" replays its split samples without seeds, as they
    were recorded (simulated here by taking the seeds out of the recordings and the flag out of the lock)."""
    pytester.makepyfile(test_x=PLAIN_TARGET.replace('"temperature": 0}', '"temperature": 0.7, "n": 3}'))
    pytester.makeini("[pytest]\nllmtune_split_n = true\n")
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    lock = read_lock(pytester.path)
    entry = lock["targets"]["test_x.py::test_x"]
    assert entry.pop("seeded") is True and "seed" not in entry["config"]
    (pytester.path / "llmtune.lock").write_text(json.dumps(lock))
    cassette = pytester.path / "llmtune_cassettes" / "test_x" / "test_x.json"
    data = json.loads(cassette.read_text())
    for interaction in data["interactions"]:
        body = json.loads(interaction["request"]["body"])
        assert "seed" in body
        del body["seed"]
        interaction["request"]["body"] = json.dumps(body, separators=(",", ":"))
    cassette.write_text(json.dumps(data))
    requests = openai_server.requests

    result = pytester.runpytest("--llm-test")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert openai_server.requests == requests
    result.stdout.fnmatch_lines(["*all 2 results as locked: ok*"])
