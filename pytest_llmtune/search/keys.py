"""What each key of a config is: a request field of its API, one of ours, a template variable, or a mistake.

One answer for a space at collection (space.py) and for every request (`render_request`, which the tune, the gate
and `create` share), so that a key the tool cannot honour is refused, never tuned, sent or locked as if it mattered:
- a request field of the config's API (openai's `chat.completions.create` or `completions.create`) is sent;
- ours: `api`, the template (`prompt` or `messages`) and `extra_body`, whose fields (a server's own, such as
  llama.cpp's `top_k`) are sent as they are;
- a template variable: a key the template uses (`{shots}` in a str template, a name a callable template reads) is
  tuned and rendered into the prompt, never sent;
- anything else is refused, with the closest known name, as are the keys of the session (an endpoint, a key, a
  timeout) that a request cannot carry.
"""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import re
import string
import textwrap
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from pytest_llmtune.search.demos import Demos
from pytest_llmtune.search.domains import Choice, InvalidSpaceError

__all__ = ["API_FIELDS", "OURS", "SESSION_KEYS", "TEMPLATES", "check_keys", "template_names", "unknown_key_words",
           "wrong_api_words"]

# The body fields of openai 3.x's `create` methods (tests/test_keys.py checks them against the SDK's signatures):
# every parameter but the template, the client's own options (extra_*, timeout) and streaming (SESSION_KEYS).
API_FIELDS: dict[str, frozenset[str]] = {
    "chat": frozenset({
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "metadata", "modalities", "model", "moderation", "n",
        "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_options",
        "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier",
        "stop", "store", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity",
        "web_search_options",
    }),
    "completions": frozenset({
        "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "model", "n",
        "presence_penalty", "seed", "stop", "suffix", "temperature", "top_p", "user",
    }),
}
TEMPLATES = ("prompt", "messages")
OURS = frozenset({"api", *TEMPLATES, "extra_body"})

_ONE_ENDPOINT = ("a config names its model, and the model picks its endpoint: give each model its line "
                 "`MODEL BASE_URL [API_KEY_ENV]` in ini llmtune_endpoints (the key in the variable named, never in "
                 "a file), and tune \"model\"; a lock holds model names, not places")
_CREATE_ONLY = "a setting of create(), not a request field: the tune and the gate never send it"
# Keys a request cannot carry, and what to do instead.
SESSION_KEYS: dict[str, str] = {
    **dict.fromkeys(("base_url", "api_key", "api_key_env", "api_type", "api_version", "organization", "project"),
                    _ONE_ENDPOINT),
    "timeout": "it changes no answer: the session's request timeout is ini llmtune_timeout",
    "retry_timeout": "it changes no answer: retries are ini llmtune_max_retries",
    "stream": "the tune reads whole answers (a streamed answer is the same text): leave it out of the space; the "
              "application may stream",
    "stream_options": "the tune reads whole answers: leave it out of the space",
    "extra_headers": "headers are not part of the request body that recordings are matched on: leave it out",
    "extra_query": "a query is not part of the request body that recordings are matched on: leave it out",
    "split_n": "how n samples are drawn is the session's: ini llmtune_split_n",
    "price": "prices are the session's: ini llmtune_prices",
    **dict.fromkeys(("cache", "tags"), _CREATE_ONLY),
}


def unknown_key_words(key: str, apis: Collection[str], names: Collection[str] | None) -> str:
    """Why `key` is refused: what it is not, and the closest name it may have meant."""
    fields = set().union(*(API_FIELDS.get(api, frozenset()) for api in apis))
    known = sorted(fields | OURS | set(names or ()))
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    guess = f"did you mean {close[0]!r}? Or, for " if close else "For "
    which = " or ".join(f"api={api!r}" for api in sorted(apis))
    uses = ("nor a name its template uses" if names is not None else
            "and its callable template's source cannot be read to tell whether it uses it")
    return (f"{key!r} is not a request field of {which}, {uses}, nor one of pytest-llmtune's keys "
            f"({', '.join(sorted(OURS))}): {guess}a field of your server's own (e.g. llama.cpp's top_k), write "
            f'"extra_body": {{"{key}": ...}}')


def wrong_api_words(key: str, apis: Iterable[str]) -> str:
    """`key` is a field of another API than one this config may use."""
    own = [api for api in sorted(API_FIELDS) if key in API_FIELDS[api]]
    others = [api for api in sorted(apis) if key not in API_FIELDS.get(api, frozenset())]
    return (f"{key!r} is a request field of api={own[0]!r} only, but this config may use api={others[0]!r}: put "
            f'them in one option of a group, e.g. choice([{{"api": "{own[0]}", "{key}": ...}}, ...])')


def template_names(template: Any) -> frozenset[str] | None:
    """The names a template may read: the fields of a str template (`{shots}`), of each message's content, or of a
    callable's source (its string constants, and the fields of those that are templates). None when a callable's
    source cannot be read."""
    if isinstance(template, str):
        return _fields_of(template)
    if callable(template):
        return _callable_names(template)
    if isinstance(template, list):
        found: set[str] = set()
        for message in template:
            content = message.get("content") if isinstance(message, Mapping) else None
            if isinstance(content, str):
                found |= _fields_of(content)
        return frozenset(found)
    return frozenset()


@functools.lru_cache(maxsize=4096)
def _fields_of(text: str) -> frozenset[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:  # a stray brace: render says so, with the instance's fields
        return frozenset()
    return frozenset(match.group() for _, field, _, _ in parsed if field
                     for match in [re.match(r"[^.\[]+", field)] if match)


@functools.lru_cache(maxsize=1024)
def _callable_names(function: Callable[..., Any]) -> frozenset[str] | None:
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return None
    constants = [node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)
                 and isinstance(node.value, str)]
    return frozenset(constants).union(*(_fields_of(text) for text in constants))


def check_keys(shape: Mapping[str, tuple[Any, str]]) -> None:
    """Raise InvalidSpaceError for a key of one config shape (key -> its value or domain, and where the space gives
    it) that a request cannot honour: see the module's docstring."""
    __tracebackhide__ = True
    apis = _options(shape["api"][0]) if "api" in shape else ["chat"]
    names: set[str] = set()
    readable = True
    for template in (t for key in TEMPLATES if key in shape for t in _options(shape[key][0])):
        found = template_names(template)
        readable = readable and found is not None
        names |= found or set()
    for key, (value, where) in shape.items():
        if any(isinstance(option, Demos) for option in _options(value)):
            _check_demos(key, value, apis, names, readable, where)
            continue
        if key == "extra_body":
            _check_extra_body(value, apis, where)
        if key in OURS:
            continue
        if key in SESSION_KEYS:
            raise InvalidSpaceError(f"{where}: {key!r} cannot be tuned: {SESSION_KEYS[key]}")
        carried = [key in API_FIELDS.get(str(api), frozenset()) for api in apis]
        if all(carried):
            continue
        if any(key in fields for fields in API_FIELDS.values()):
            raise InvalidSpaceError(f"{where}: {wrong_api_words(key, map(str, apis))}")
        if key not in names:
            known = names if readable else None
            raise InvalidSpaceError(f"{where}: {unknown_key_words(key, list(map(str, apis)), known)}")


def _check_demos(key: str, value: Any, apis: list[Any], names: set[str], readable: bool, where: str) -> None:
    """demos() is a template variable: text where a str template names it (format=), or chat turns (user=,
    assistant=), which a completions prompt cannot hold."""
    __tracebackhide__ = True
    if key in OURS or any(key in fields for fields in API_FIELDS.values()) or key in SESSION_KEYS:
        raise InvalidSpaceError(f"{where}: demos() is a template variable, not the request field {key!r}: give it "
                                'a key of its own, e.g. "demos": demos(...), and put {demos} in the template')
    for option in _options(value):
        if not isinstance(option, Demos):
            raise InvalidSpaceError(f"{where}: choose between demos() with demos(k=...) or a pool, not between "
                                    f"demos() and {option!r}")
        if option.as_turns and any(str(api) != "chat" for api in apis):
            raise InvalidSpaceError(f"{where}: demos(user=..., assistant=...) become chat turns, but this config "
                                    "may use api='completions': give format=... and put {" + key + "} in the prompt")
        if not option.as_turns and readable and key not in names:
            raise InvalidSpaceError(
                f"{where}: no template names {{{key}}}, so the demonstrations would be tuned but never shown: put "
                f"{{{key}}} in the prompt or a message where they go, e.g. \"{{{key}}}Q: {{question}}\\nA:\", or "
                "give user=... and assistant=... (instead of format=) for chat turns")


def _check_extra_body(value: Any, apis: list[Any], where: str) -> None:
    __tracebackhide__ = True
    for option in _options(value):
        if not isinstance(option, Mapping) or not all(isinstance(name, str) for name in option):
            raise InvalidSpaceError(f"{where}: extra_body is {option!r}, but must be a dict of the server's own "
                                    'fields, e.g. {"top_k": randint(1, 50)}')
        for name in option:
            if any(name in API_FIELDS.get(str(api), frozenset()) for api in apis) or name in OURS:
                raise InvalidSpaceError(f"{where}: extra_body holds {name!r}, a request field the SDK sends itself: "
                                        "give it at the top of the space")


def _options(value: Any) -> list[Any]:
    return list(value.options) if isinstance(value, Choice) else [value]
