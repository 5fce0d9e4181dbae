"""The runtime API: `locked` reads a target's config from a real lockfile, `create` calls a real HTTP server."""

from __future__ import annotations

import concurrent.futures as cf
import email.utils
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import openai
import pytest
from openai_server import FakeOpenAI

from conftest import API_KEY, lock_entry
from pytest_llmtune.errors import TemplateError
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.retry import parse_retry_after
from pytest_llmtune.runtime.api import (
    CreateError,
    Response,
    clear_cache,
    create,
    locked,
    reset_usage,
    usage_summary,
)
from pytest_llmtune.search.domains import callable_name
from pytest_llmtune.store.lockfile import LockfileError, write_target

TARGET = "test_sentiment.py::test_sentiment"
SENTIMENT: dict[str, Any] = {"model": "gpt-4o-mini", "prompt": "Examples:\nReview: {review}\nSentiment:",
                             "temperature": 0, "max_tokens": 1}


def review_prompt(case: Mapping[str, Any]) -> str:
    return f"Examples:\nReview: {case['review']} ->"


@pytest.fixture(autouse=True)
def fresh_process_state() -> Iterator[None]:
    clear_cache()
    reset_usage()
    yield
    clear_cache()
    reset_usage()


@pytest.fixture
def other_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "llmtune.lock"
    write_target(path, TARGET, lock_entry({**SENTIMENT, "prompt": {"callable": callable_name(review_prompt)}}))
    write_target(path, "test_math.py::test_sum", lock_entry({"model": "gpt-4o-mini", "prompt": "What is {a}?"}))
    return path


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def timed_create(*args: Any, **kwargs: Any) -> tuple[Response | CreateError, float]:
    start = time.monotonic()
    try:
        result: Response | CreateError = create(*args, **kwargs)
    except CreateError as error:
        result = error
    return result, time.monotonic() - start


# --- locked ---------------------------------------------------------------------------------------------------


def test_locked_returns_the_config_with_its_callable_template_imported(lock: Path) -> None:
    assert locked(TARGET, lock) == {**SENTIMENT, "prompt": review_prompt}


def test_locked_finds_the_lockfile_in_a_parent_directory(lock: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (lock.parent / "app" / "deep").mkdir(parents=True)
    monkeypatch.chdir(lock.parent / "app" / "deep")

    assert locked("test_math.py::test_sum")["prompt"] == "What is {a}?"


def test_locked_without_a_lockfile_says_to_run_llm_tune(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LockfileError, match=r"no llmtune.lock in .* or its parents; run `pytest --llm-tune`"):
        locked(TARGET)
    with pytest.raises(LockfileError, match=r"other.lock does not exist; run `pytest --llm-tune`"):
        locked(TARGET, tmp_path / "other.lock")


def test_locked_names_the_targets_there_when_the_target_is_missing(lock: Path) -> None:
    with pytest.raises(LockfileError) as raised:
        locked("test_x.py::test_nope", str(lock))

    assert str(raised.value) == (
        f"{lock} has no target 'test_x.py::test_nope' (it has: test_math.py::test_sum, {TARGET}); "
        "run `pytest --llm-tune` to tune and lock it"
    )


def test_locked_refuses_a_corrupt_lockfile(tmp_path: Path) -> None:
    path = tmp_path / "llmtune.lock"
    path.write_text("{not json")

    with pytest.raises(LockfileError, match="is not valid JSON"):
        locked(TARGET, path)


@pytest.mark.parametrize("name", ["no_such_module_xyz.prompt", "test_runtime.no_such_function",
                                  "test_runtime.test_locked_refuses_a_corrupt_lockfile.<locals>.f"])
def test_locked_says_when_a_callable_template_cannot_be_imported(tmp_path: Path, name: str) -> None:
    path = tmp_path / "llmtune.lock"
    write_target(path, TARGET, lock_entry({**SENTIMENT, "prompt": {"callable": name}}))

    with pytest.raises(LockfileError, match=rf"'prompt' of '{TARGET}' is a callable, {name}, that could not be "
                                            "imported"):
        locked(TARGET, path)


# --- create: templates and requests ---------------------------------------------------------------------------


def test_create_fills_a_prompt_template(openai_server: FakeOpenAI) -> None:
    response = create({"review": "great fun"}, **SENTIMENT, retry_timeout=5, cache=True, price=None)

    assert response.texts == ["positive"]
    prompt = "Examples:\nReview: great fun\nSentiment:"
    assert openai_server.bodies == [{"model": "gpt-4o-mini", "temperature": 0, "max_tokens": 1,
                                     "messages": [{"role": "user", "content": prompt}]}]
    assert (response.config_index, response.cached, response.config) == (None, False, {
        **SENTIMENT, "retry_timeout": 5, "cache": True, "price": None})
    assert response.usage.prompt_tokens == 5 and response.usage.completion_tokens == 1
    assert response.cost == PriceTable.default().cost("gpt-4o-mini", 5, 1) > 0
    assert response.raw.choices[0].message.content == "positive"


def test_create_fills_messages_and_keeps_n_in_one_request(openai_server: FakeOpenAI) -> None:
    messages = [{"role": "system", "content": "Examples: 1 + 1 = 2"}, {"role": "user", "content": "What is {a} + {b}?"}]

    response = create({"a": 2, "b": 3}, model="gpt-4o-mini", messages=messages, n=3, temperature=0.0)

    assert [text.split()[0] in ("5", "6") for text in response.texts] == [True] * 3  # the fake errs by one
    assert openai_server.requests == 1
    assert openai_server.bodies[0]["n"] == 3
    assert openai_server.bodies[0]["messages"][1] == {"role": "user", "content": "What is 2 + 3?"}


def test_create_answers_with_a_locked_config(openai_server: FakeOpenAI, lock: Path) -> None:
    response = create({"review": "a waste of time"}, **locked(TARGET, lock))

    assert response.texts == ["negative"]
    assert openai_server.bodies[0]["messages"][0]["content"] == "Examples:\nReview: a waste of time ->"


def test_create_without_a_model_says_so(openai_server: FakeOpenAI) -> None:
    with pytest.raises(TemplateError, match='the config has no "model"'):
        create({"review": "x"}, prompt="Review: {review}")


# --- create: alternatives -------------------------------------------------------------------------------------


def test_create_falls_back_from_an_endpoint_that_fails(openai_server: FakeOpenAI, other_server: FakeOpenAI) -> None:
    other_server.fail_next(10_000, 500)

    response = create({"review": "great fun"}, **SENTIMENT, config_list=[
        {"base_url": other_server.base_url, "retry_timeout": 0.3},
        {"base_url": openai_server.base_url},
    ])

    assert (response.config_index, response.texts) == (1, ["positive"])
    assert response.config["base_url"] == openai_server.base_url
    assert other_server.requests >= 1 and openai_server.requests == 1


def test_create_falls_back_from_a_closed_port(openai_server: FakeOpenAI) -> None:
    response = create({"review": "great fun"}, **SENTIMENT, config_list=[
        {"base_url": closed_port_url(), "retry_timeout": 0.3}, {}])

    assert response.config_index == 1
    assert openai_server.requests == 1


def test_create_names_every_alternative_when_all_fail(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(1, 400)
    dead = closed_port_url()

    with pytest.raises(CreateError) as raised:
        create({"review": "x"}, **SENTIMENT, config_list=[{"base_url": dead, "retry_timeout": 0.3},
                                                          {"model": "gpt-4o"}])

    message = str(raised.value)
    assert message.startswith("no LLM config answered:\n")
    assert f"config_list[0] (model='gpt-4o-mini', base_url='{dead}'): APIConnectionError: Connection error." in message
    assert "config_list[1] (model='gpt-4o'): HTTP 400: " in message and "(not retried)" in message
    assert isinstance(raised.value.__cause__, openai.BadRequestError)


def test_filter_func_rejecting_the_first_answer_tries_the_next(openai_server: FakeOpenAI) -> None:
    seen: list[tuple[Mapping[str, Any], str]] = []

    def only_the_big_model(context: Mapping[str, Any], response: Response) -> bool:
        seen.append((context, response.config["model"]))
        return bool(response.config["model"] == "gpt-4o")

    response = create({"review": "great fun"}, **SENTIMENT, filter_func=only_the_big_model,
                      config_list=[{"model": "gpt-4o-mini"}, {"model": "gpt-4o"}])

    assert response.config_index == 1
    assert seen == [({"review": "great fun"}, "gpt-4o-mini"), ({"review": "great fun"}, "gpt-4o")]
    assert openai_server.requests == 2


def test_filter_func_rejecting_every_answer_says_so(openai_server: FakeOpenAI) -> None:
    with pytest.raises(CreateError, match=r"the config \(model='gpt-4o-mini'\): filter_func rejected the response"):
        create({"review": "x"}, **SENTIMENT, filter_func=lambda context, response: False)


# --- create: retries ------------------------------------------------------------------------------------------


def test_a_429_waits_for_its_retry_after_then_succeeds(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(1, 429, retry_after=0.4)  # longer than the first backoff (at most 0.25 s)

    response, elapsed = timed_create({"review": "great fun"}, **SENTIMENT)

    assert isinstance(response, Response) and response.texts == ["positive"]
    assert openai_server.requests == 2
    assert elapsed >= 0.4


def test_5xx_are_retried_with_backoff(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(2, 503)

    response, _ = timed_create({"review": "great fun"}, **SENTIMENT)

    assert isinstance(response, Response) and response.config_index is None
    assert openai_server.requests == 3


def test_a_400_is_not_retried(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(1, 400)

    error, _ = timed_create({"review": "x"}, **SENTIMENT)

    assert isinstance(error, CreateError) and "HTTP 400" in str(error) and "(not retried)" in str(error)
    assert openai_server.requests == 1


def test_retries_stop_at_retry_timeout(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(10_000, 503)

    error, elapsed = timed_create({"review": "x"}, **SENTIMENT, retry_timeout=1.0)

    assert isinstance(error, CreateError) and "past retry_timeout=1 s" in str(error)
    assert elapsed < 1.0 + 1.0  # the limit, plus slack for a loaded 2-core machine
    assert openai_server.requests >= 3


def test_a_retry_after_past_retry_timeout_gives_up_at_once(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(1, 429, retry_after=30)

    error, elapsed = timed_create({"review": "x"}, **SENTIMENT, retry_timeout=2)

    assert isinstance(error, CreateError) and "HTTP 429" in str(error)
    assert elapsed < 1.0 and openai_server.requests == 1


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    now = time.time()

    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(email.utils.formatdate(now + 10, usegmt=True), now) == pytest.approx(10, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 10, usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(("key", "value", "message"), [
    ("retry_timeout", 0, "retry_timeout is 0, but must be a number of seconds > 0"),
    ("price", 0.01, r"price is 0.01, but must be \(dollars per 1K input tokens, per 1K output tokens\)"),
    ("api_key", "sk-x", "pass api_key_env, the name of the environment variable holding the key, not api_key"),
])
def test_create_refuses_bad_runtime_keys(key: str, value: Any, message: str) -> None:
    with pytest.raises(CreateError, match=message):
        create({"review": "x"}, **SENTIMENT, **{key: value})


# --- create: cache, keys and usage ----------------------------------------------------------------------------


def test_the_cache_answers_an_identical_second_call_without_a_request(openai_server: FakeOpenAI) -> None:
    first = create({"review": "great fun"}, **SENTIMENT)
    second = create({"review": "great fun"}, **SENTIMENT)

    assert (first.cached, second.cached, second.texts, second.cost) == (False, True, first.texts, 0.0)
    assert openai_server.requests == 1
    create({"review": "great fun"}, **SENTIMENT, cache=False)
    assert openai_server.requests == 2


def test_identical_calls_in_flight_together_send_one_request(openai_server: FakeOpenAI) -> None:
    openai_server.latency = 0.2

    with cf.ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: create({"review": "great fun"}, **SENTIMENT), range(8)))

    assert openai_server.requests == 1
    assert sorted(r.cached for r in responses) == [False] + [True] * 7


def test_the_api_key_comes_from_the_named_variable_and_is_never_kept(
    openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-very-secret-value")

    response = create({"review": "great fun"}, **SENTIMENT, api_key_env="MY_LLM_KEY")

    assert openai_server.auth_headers == ["Bearer sk-very-secret-value"]
    assert response.config["api_key_env"] == "MY_LLM_KEY"
    for text in (repr(response), repr(response.config), str(response.config), repr(usage_summary())):
        assert "sk-very-secret-value" not in text and API_KEY not in text


def test_a_missing_key_variable_falls_back_and_is_named(openai_server: FakeOpenAI) -> None:
    response = create({"review": "great fun"}, **SENTIMENT, config_list=[{"api_key_env": "LLMTUNE_NO_KEY"}, {}])
    assert response.config_index == 1

    with pytest.raises(CreateError, match="the environment variable LLMTUNE_NO_KEY .* is not set"):
        create({"review": "great fun"}, **SENTIMENT, api_key_env="LLMTUNE_NO_KEY")


def test_usage_summary_counts_calls_cached_calls_tokens_and_cost(openai_server: FakeOpenAI) -> None:
    price = (1.0, 2.0)  # dollars per 1K tokens, in and out
    create({"review": "great fun"}, **SENTIMENT, price=price)
    create({"review": "great fun"}, **SENTIMENT, price=price)
    create({"a": 1, "b": 2}, model="gpt-4o", prompt="What is {a} + {b}?", temperature=0, max_tokens=1)

    summary = usage_summary()

    assert (summary.calls, summary.cached_calls) == (2, 1)
    assert (summary.prompt_tokens, summary.completion_tokens) == (5 + 5, 1 + 1)
    assert summary.models["gpt-4o-mini"].cost == pytest.approx((5 * 1.0 + 1 * 2.0) / 1000)
    assert summary.models["gpt-4o-mini"].cached_cost == pytest.approx((5 * 1.0 + 1 * 2.0) / 1000)
    assert summary.models["gpt-4o"].cost == pytest.approx(PriceTable.default().cost("gpt-4o", 5, 1))
    assert summary.cost == pytest.approx(sum(usage.cost for usage in summary.models.values()))
    lines = summary.lines()
    assert lines[0].startswith("llmtune: 2 LLM calls (1 more from the cache), $")
    assert any(line.split()[:3] == ["gpt-4o-mini", "1", "1"] for line in lines)
    reset_usage()
    assert usage_summary().calls == 0 and usage_summary().lines() == [
        "llmtune: 0 LLM calls (0 more from the cache), $0.000000 spent, $0.000000 saved by the cache"]


def test_a_lock_recorded_with_split_n_samples_the_same_way(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "llmtune.lock"
    write_target(path, "t.py::t", lock_entry({**SENTIMENT, "n": 3, "seed": 7, "temperature": 0.8}, split_n=True))

    config = locked("t.py::t", lockfile=path)
    response = create({"review": "great fun"}, **config)

    assert config["split_n"] is True
    assert len(response.texts) == 3
    assert openai_server.requests == 3
    assert sorted(body["seed"] for body in openai_server.bodies) == [7, 8, 9]
    assert all("n" not in body and "split_n" not in body for body in openai_server.bodies)
    assert response.usage.completion_tokens == sum(len(t.split()) for t in response.texts)


def test_create_draws_samples_as_the_tune_does_at_temperature_0(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    """One request path: at temperature 0 with split_n, one request stands for every sample, in both."""
    path = tmp_path / "llmtune.lock"
    write_target(path, "t.py::t", lock_entry({**SENTIMENT, "n": 3, "temperature": 0}, split_n=True))

    response = create({"review": "great fun"}, **locked("t.py::t", lockfile=path), cache=False)

    assert openai_server.requests == 1
    assert response.texts == [response.texts[0]] * 3
