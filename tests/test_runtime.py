"""The runtime API: `locked` reads a target's config from a real lockfile, `create` calls a real HTTP server."""

from __future__ import annotations

import concurrent.futures as cf
import email.utils
import json
import socket
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import openai
import pytest
from openai_server import FakeOpenAI

from conftest import API_KEY, lock_entry
from pytest_llmtune import config_list_from_json
from pytest_llmtune.errors import LlmtuneError, TemplateError
from pytest_llmtune.llm.client import seed_offset
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.resolve import DEFAULT_BASE_URL, PLACEHOLDER_KEY, MissingKeyError, resolve_endpoint
from pytest_llmtune.llm.retry import parse_retry_after
from pytest_llmtune.runtime.api import (
    CACHE_SIZE,
    CreateError,
    Response,
    clear_cache,
    create,
    reset_usage,
    set_cache_size,
    usage_summary,
)
from pytest_llmtune.runtime.locked_config import locked
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
    set_cache_size(CACHE_SIZE)


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

    with pytest.raises(LockfileError, match="is not a lockfile: not JSON"):
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


def test_filter_func_rejecting_every_answer_returns_the_last_one_marked_rejected(openai_server: FakeOpenAI) -> None:
    """AutoGen's rule, and a tuned cascade's: the last alternative's answer counts when none is accepted."""
    response = create({"review": "x"}, **SENTIMENT, filter_func=lambda context, response: False,
                      config_list=[{"model": "gpt-4o-mini"}, {"model": "gpt-4o"}])
    assert (response.config_index, response.accepted, openai_server.requests) == (1, False, 2)
    accepted = create({"review": "x"}, **SENTIMENT, filter_func=lambda context, response: True)
    assert accepted.accepted is True
    assert create({"review": "y"}, **SENTIMENT).accepted is None


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
    ("cache", "yes", r"cache is 'yes', but must be True, False or None"),
    ("api_type", "azure", r"the config has api_type='azure', but create calls OpenAI-compatible endpoints only"),
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


def test_the_cache_keeps_the_most_recently_used_responses_up_to_its_size(openai_server: FakeOpenAI) -> None:
    set_cache_size(2)
    for review in ("a", "b", "a", "c"):  # "b" is the least recently used when "c" comes
        create({"review": review}, **SENTIMENT)
    assert openai_server.requests == 3

    assert create({"review": "a"}, **SENTIMENT).cached and create({"review": "c"}, **SENTIMENT).cached
    assert not create({"review": "b"}, **SENTIMENT).cached
    assert openai_server.requests == 4
    set_cache_size(0)
    assert not create({"review": "a"}, **SENTIMENT).cached
    with pytest.raises(ValueError, match=r"set_cache_size\(-1\): give a count of responses >= 0"):
        set_cache_size(-1)


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
    offset = seed_offset(openai_server.bodies[0])  # seeds differ between instances (client.sample_requests)
    assert sorted(body["seed"] for body in openai_server.bodies) == [7 + offset, 8 + offset, 9 + offset]
    assert all("n" not in body and "split_n" not in body for body in openai_server.bodies)
    assert response.usage.completion_tokens == sum(len(t.split()) for t in response.texts)


def test_create_draws_samples_as_the_tune_does_at_temperature_0(openai_server: FakeOpenAI, tmp_path: Path) -> None:
    """One request path: at temperature 0 with split_n, one request stands for every sample, in both."""
    path = tmp_path / "llmtune.lock"
    write_target(path, "t.py::t", lock_entry({**SENTIMENT, "n": 3, "temperature": 0}, split_n=True))

    response = create({"review": "great fun"}, **locked("t.py::t", lockfile=path), cache=False)

    assert openai_server.requests == 1
    assert response.texts == [response.texts[0]] * 3


# --- create: the endpoint and its key, resolved as the plugin resolves them -----------------------------------

AUTOGEN_KEY = "sk-autogen-0123-secret"


class KeyEchoingServer(FakeOpenAI):
    """Refuses every request with a 401 that quotes the Authorization header it got, as careless servers do."""

    def respond(self, path: str, body: dict[str, Any],
                headers: dict[str, str]) -> tuple[int, dict[str, Any], dict[str, str]]:
        super().respond(path, body, headers)  # counted and recorded
        message = f"Incorrect API key provided: {headers.get('authorization', '')}"
        return 401, {"error": {"message": message, "type": "invalid_request_error"}}, {}


def everything_shown(error: BaseException) -> str:
    """What a user could see of an error: its message, its repr, the whole printed traceback with its causes."""
    return "\n".join([str(error), repr(error), "".join(traceback.format_exception(error))])


def test_the_endpoint_resolves_from_the_argument_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert resolve_endpoint() == resolve_endpoint(None) == resolve_endpoint("", api_key="", api_key_env="")
    assert (resolve_endpoint().base_url, resolve_endpoint().api_key, resolve_endpoint().keyless) == (
        DEFAULT_BASE_URL, PLACEHOLDER_KEY, True)

    monkeypatch.setenv("OPENAI_BASE_URL", "http://env/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("MY_LLM_KEY", "sk-named")
    assert (resolve_endpoint().base_url, resolve_endpoint().api_key) == ("http://env/v1", "sk-env")
    assert resolve_endpoint("http://given/v1", api_key_env="MY_LLM_KEY").api_key == "sk-named"
    given = resolve_endpoint("http://given/v1", api_key="sk-given", api_key_env="MY_LLM_KEY")
    assert (given.base_url, given.api_key, given.key_from) == ("http://given/v1", "sk-given", "api_key")
    assert "sk-given" not in repr(given)
    with pytest.raises(MissingKeyError, match="the environment variable LLMTUNE_NO_KEY .* is not set"):
        resolve_endpoint(api_key_env="LLMTUNE_NO_KEY")


def test_create_works_without_a_key_against_a_keyless_local_server(openai_server: FakeOpenAI,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")

    response = create({"review": "great fun"}, **SENTIMENT)

    assert response.texts == ["positive"]
    assert openai_server.auth_headers == [f"Bearer {PLACEHOLDER_KEY}"]


def test_a_server_that_wants_a_key_says_none_was_sent(openai_server: FakeOpenAI,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    openai_server.fail_next(1, 401)

    with pytest.raises(CreateError, match=r"HTTP 401: .*; no API key was sent \(OPENAI_API_KEY is not set\): set "
                                          "it, or give api_key_env or api_key"):
        create({"review": "x"}, **SENTIMENT)


def test_create_sends_to_openai_base_url(openai_server: FakeOpenAI, other_server: FakeOpenAI,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", other_server.base_url)

    create({"review": "great fun"}, **SENTIMENT)
    create({"review": "great fun"}, **SENTIMENT, base_url=openai_server.base_url)  # a config's base_url comes first

    assert (other_server.requests, openai_server.requests) == (1, 1)


# --- create: sampled calls are sampled ------------------------------------------------------------------------


@pytest.mark.parametrize("sampling", [{"temperature": 0.123}, {"temperature": 0, "n": 3}, {}],
                         ids=["temperature>0", "n>1", "temperature-unset"])
def test_a_sampled_call_is_sent_every_time(openai_server: FakeOpenAI, sampling: dict[str, Any]) -> None:
    config = {**{k: v for k, v in SENTIMENT.items() if k != "temperature"}, **sampling}

    first = create({"review": "great fun"}, **config)
    second = create({"review": "great fun"}, **config)

    assert openai_server.requests == 2
    assert (first.cached, second.cached) == (False, False)
    assert usage_summary().cached_calls == 0


def test_a_deterministic_call_is_answered_from_memory(openai_server: FakeOpenAI) -> None:
    create({"review": "great fun"}, **SENTIMENT, n=1)
    second = create({"review": "great fun"}, **SENTIMENT, n=1)

    assert (openai_server.requests, second.cached) == (1, True)


def test_cache_true_answers_a_sampled_call_from_memory(openai_server: FakeOpenAI) -> None:
    config = {**SENTIMENT, "temperature": 0.123, "n": 3}

    first = create({"review": "great fun"}, **config, cache=True)
    second = create({"review": "great fun"}, **config, cache=True)

    assert openai_server.requests == 1
    assert (second.cached, second.texts) == (True, first.texts)


# --- create: AutoGen's config_list ----------------------------------------------------------------------------


def test_an_autogen_config_list_entry_sends_its_api_key(openai_server: FakeOpenAI, other_server: FakeOpenAI) -> None:
    entry = {"model": "gpt-4o-mini", "base_url": other_server.base_url, "api_key": AUTOGEN_KEY,
             "api_type": "openai", "api_version": "2024-02-01", "tags": ["mini", "cheap"]}

    response = create({"review": "great fun"}, **SENTIMENT, config_list=[entry])

    assert response.texts == ["positive"]
    assert other_server.auth_headers == [f"Bearer {AUTOGEN_KEY}"]
    assert openai_server.requests == 0
    assert set(other_server.bodies[0]) == {"model", "messages", "temperature", "max_tokens"}
    assert response.config["api_key"] == "***" and entry["api_key"] == AUTOGEN_KEY  # the caller's list untouched
    cached = create({"review": "great fun"}, **SENTIMENT, config_list=[entry])
    for text in (repr(response), str(response.config), repr(cached), *usage_summary().lines()):
        assert AUTOGEN_KEY not in text


def test_an_entry_with_its_own_key_replaces_the_shared_one(openai_server: FakeOpenAI,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_LLM_KEY", "sk-from-the-variable")

    create({"review": "great fun"}, **SENTIMENT, api_key_env="MY_LLM_KEY", config_list=[{"api_key": AUTOGEN_KEY}])
    create({"review": "a waste of time"}, **SENTIMENT, api_key=AUTOGEN_KEY, config_list=[{"api_key_env": "MY_LLM_KEY"}])

    assert openai_server.auth_headers == [f"Bearer {AUTOGEN_KEY}", "Bearer sk-from-the-variable"]


def test_a_key_a_server_echoes_appears_in_no_error(openai_server: FakeOpenAI) -> None:
    server = KeyEchoingServer().start()
    try:
        with pytest.raises(CreateError) as raised:
            create({"review": "x"}, **SENTIMENT, config_list=[{"base_url": server.base_url, "api_key": AUTOGEN_KEY}])
    finally:
        server.stop()

    assert server.auth_headers == [f"Bearer {AUTOGEN_KEY}"]  # it was sent, and echoed back
    assert "HTTP 401" in str(raised.value) and "Incorrect API key provided: Bearer ***" in str(raised.value)
    assert AUTOGEN_KEY not in everything_shown(raised.value)


@pytest.mark.parametrize(("entry", "message"), [
    ({"api_type": "azure", "api_key": AUTOGEN_KEY},
     r"config_list\[0\] has api_type='azure', but create calls OpenAI-compatible endpoints only \(api_type "
     r"'openai'\); leave such entries out, e.g. with config_list_from_json\(filter_dict="),
    ({"api_key": AUTOGEN_KEY, "api_key_env": "MY_LLM_KEY"},
     "config_list\\[0\\] has both api_key and api_key_env: give the key, or the name of the variable holding it"),
    ({"api_key": [AUTOGEN_KEY]}, r"config_list\[0\] has an api_key that is a list, but must be a string"),
])
def test_create_refuses_an_entry_it_cannot_use_without_showing_its_key(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(CreateError, match=message) as raised:
        create({"review": "x"}, **SENTIMENT, config_list=[entry])

    assert AUTOGEN_KEY not in everything_shown(raised.value)


# --- config_list_from_json ------------------------------------------------------------------------------------

OAI_CONFIG_LIST: list[dict[str, Any]] = [
    {"model": "gpt-4o-mini", "api_key": AUTOGEN_KEY, "tags": ["mini", "cheap"]},
    {"model": "gpt-4o", "api_key": AUTOGEN_KEY, "api_type": "openai"},
    {"model": "gpt-4", "api_key": AUTOGEN_KEY, "api_type": "azure", "api_version": "2024-02-01",
     "base_url": "https://example.openai.azure.com"},
]


def models(configs: list[dict[str, Any]]) -> list[str]:
    return [config["model"] for config in configs]


def test_config_list_from_json_reads_the_variable_holding_the_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAI_CONFIG_LIST", json.dumps(OAI_CONFIG_LIST))

    assert config_list_from_json() == OAI_CONFIG_LIST
    assert models(config_list_from_json(filter_dict={"model": ["gpt-4o", "gpt-4"]})) == ["gpt-4o", "gpt-4"]


def test_config_list_from_json_reads_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OAI_CONFIG_LIST", raising=False)
    (tmp_path / "OAI_CONFIG_LIST").write_text(json.dumps(OAI_CONFIG_LIST))
    (tmp_path / "models.json").write_text(json.dumps(OAI_CONFIG_LIST[:1]))

    assert config_list_from_json(file_location=tmp_path) == OAI_CONFIG_LIST
    assert config_list_from_json("models.json", file_location=str(tmp_path)) == OAI_CONFIG_LIST[:1]
    monkeypatch.setenv("MY_CONFIG_LIST", str(tmp_path / "models.json"))  # a variable naming the file
    assert config_list_from_json("MY_CONFIG_LIST") == OAI_CONFIG_LIST[:1]


def test_filter_dict_filters_as_autogen_does(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OAI_CONFIG_LIST", json.dumps(OAI_CONFIG_LIST))

    def kept(filter_dict: dict[str, Any]) -> list[str]:
        return models(config_list_from_json(filter_dict=filter_dict))

    assert kept({"tags": ["cheap"]}) == ["gpt-4o-mini"]  # a list field: any accepted item
    assert kept({"api_type": ["openai"]}) == ["gpt-4o"]  # without the field: no match ...
    assert kept({"api_type": ["openai", None]}) == ["gpt-4o-mini", "gpt-4o"]  # ... unless None is accepted
    assert kept({"api_type": {"openai", None}, "model": ["gpt-4o"]}) == ["gpt-4o"]  # every field must match
    assert kept({}) == models(OAI_CONFIG_LIST)
    with pytest.raises(LlmtuneError, match=r"filter_dict\['model'\] is 'gpt-4o', but must be a list or set of the "
                                           r"accepted values, e.g. \{'model': \['gpt-4o'\]\}"):
        kept({"model": "gpt-4o"})


def test_a_loaded_config_list_answers_through_create(openai_server: FakeOpenAI,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    entries = [{**entry, "base_url": openai_server.base_url} for entry in OAI_CONFIG_LIST]
    monkeypatch.setenv("OAI_CONFIG_LIST", json.dumps(entries))

    config_list = config_list_from_json(filter_dict={"api_type": ["openai", None]})
    response = create({"review": "great fun"}, prompt=SENTIMENT["prompt"], temperature=0, max_tokens=1,
                      config_list=config_list)

    assert (response.config_index, response.texts) == (0, ["positive"])
    assert openai_server.auth_headers == [f"Bearer {AUTOGEN_KEY}"]
    assert openai_server.bodies[0]["model"] == "gpt-4o-mini" and "tags" not in openai_server.bodies[0]


@pytest.mark.parametrize(("text", "problem"), [
    ('[{"model": "gpt-4o", "api_key": "SECRET",}]', " is not valid JSON (Expecting property name enclosed in double "
                                                  "quotes at line 1 column 42); it must hold a list such as [{"),
    ('{"model": "gpt-4o", "api_key": "SECRET"}', " holds an object, but must hold a list of configs such as [{"),
    ('[{"model": "gpt-4o", "api_key": "SECRET"}, "gpt-4"]', ": entry 1 is a string, but must be an object such as {"),
])
def test_a_bad_config_list_file_says_which_file_and_what_is_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  text: str, problem: str) -> None:
    monkeypatch.delenv("OAI_CONFIG_LIST", raising=False)
    (tmp_path / "OAI_CONFIG_LIST").write_text(text)

    with pytest.raises(LlmtuneError) as raised:
        config_list_from_json(file_location=tmp_path)

    assert str(raised.value).startswith(f"the config list file {tmp_path / 'OAI_CONFIG_LIST'}{problem}")
    assert "SECRET" not in str(raised.value)


def test_a_missing_config_list_says_where_it_looked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OAI_CONFIG_LIST", raising=False)

    with pytest.raises(LlmtuneError, match=r"no config list: the variable OAI_CONFIG_LIST is not set and there is no "
                                           r"file .*OAI_CONFIG_LIST; set OAI_CONFIG_LIST to a JSON list such as"):
        config_list_from_json(file_location=tmp_path)
    monkeypatch.setenv("OAI_CONFIG_LIST", str(tmp_path / "nowhere.json"))
    with pytest.raises(LlmtuneError, match=r"the variable OAI_CONFIG_LIST holds neither a JSON list nor the path of a "
                                           r"file \(there is no file .*nowhere.json\)"):
        config_list_from_json()
    monkeypatch.setenv("OAI_CONFIG_LIST", '[{"api_key": "SECRET"')
    with pytest.raises(LlmtuneError, match=r"the variable OAI_CONFIG_LIST is not valid JSON") as raised:
        config_list_from_json()
    assert "SECRET" not in str(raised.value)
