"""search/keys.py: which keys a config may hold. Its tables of request fields are pinned to the openai SDK this
project installs: a new SDK that adds or drops a body field fails here, not as a key refused or sent by mistake."""

from __future__ import annotations

import inspect

import pytest

from pytest_llmtune.errors import TemplateError
from pytest_llmtune.llm.client import render_request
from pytest_llmtune.search.keys import API_FIELDS, OURS, SESSION_KEYS, template_names

# what `create` takes besides the body's fields: the template, the client's options, streaming (SESSION_KEYS)
NOT_BODY_FIELDS = {"self", "messages", "prompt", "extra_body", "extra_headers", "extra_query", "timeout", "stream",
                   "stream_options"}


@pytest.mark.parametrize(("api", "resource"), [("chat", "openai.resources.chat.completions:Completions"),
                                               ("completions", "openai.resources.completions:Completions")])
def test_the_request_fields_are_the_sdks_create_parameters(api: str, resource: str) -> None:
    import importlib

    module, name = resource.split(":")
    create = getattr(importlib.import_module(module), name).create

    assert set(inspect.signature(create).parameters) - NOT_BODY_FIELDS == API_FIELDS[api]


def test_session_keys_and_ours_are_no_request_field() -> None:
    fields = set().union(*API_FIELDS.values())
    assert not fields & set(SESSION_KEYS) and not fields & OURS


@pytest.mark.parametrize(("template", "names"), [
    ("Q ({style}): {x.y} {z[0]} {{literal}}", {"style", "x", "z"}),
    ([{"role": "system", "content": "{tone}"}, {"role": "user", "content": "{q}"}], {"tone", "q"}),
])
def test_template_names_are_the_fields_a_template_reads(template: object, names: set[str]) -> None:
    assert template_names(template) == frozenset(names)


def few_shot(context: dict[str, object]) -> str:
    return "Q: 1 + 1 = 2\n" * int(str(context["shots"])) + "Q: {x} =".format(**context)


def test_a_callable_templates_names_are_read_from_its_source() -> None:
    assert {"shots", "x"} <= (template_names(few_shot) or set())


def test_a_request_renders_template_variables_and_sends_extra_body_beside_the_fields() -> None:
    config = {"api": "completions", "model": "m", "prompt": few_shot, "shots": 2, "temperature": 0.5,
              "extra_body": {"top_k": 40}}

    api, params = render_request(config, {"x": "2 + 2"})

    assert api == "completions"
    assert params == {"prompt": "Q: 1 + 1 = 2\nQ: 1 + 1 = 2\nQ: 2 + 2 =", "model": "m", "temperature": 0.5,
                      "top_k": 40}


@pytest.mark.parametrize(("config", "message"), [
    ({"prompt": "{x}", "model": "m", "temprature": 1}, "did you mean 'temperature'"),
    ({"prompt": "{x}", "model": "m", "stream": True}, "the tune reads whole answers"),
    ({"prompt": "{x}", "model": "m", "suffix": "."}, "a request field of api='completions' only"),
    ({"prompt": "{x} {style}", "model": "m", "style": "a"}, None),
    ({"prompt": "{x} {style}", "model": "m", "style": "a", "extra_body": {"model": "n"}}, "sends itself"),
])
def test_a_request_refuses_what_the_space_refuses(config: dict[str, object], message: str | None) -> None:
    if message is None:
        assert render_request(config, {"x": "1"})[1]["messages"][0]["content"] == "1 a"
        with pytest.raises(TemplateError, match="both a template variable of the config and a field of this"):
            render_request(config, {"x": "1", "style": "b"})
        return
    with pytest.raises(TemplateError, match=message):
        render_request(config, {"x": "1"})
