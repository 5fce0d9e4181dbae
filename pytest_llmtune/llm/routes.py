"""Which endpoint serves which model: the ini `llmtune_endpoints` table, one line per model,

    MODEL  BASE_URL  [API_KEY_ENV]  [concurrency=N]  [rpm=N]  [tpm=N]  [refuses=FIELD,FIELD]

`local` as BASE_URL is the local server (`--llm-local`). API_KEY_ENV names the environment variable that holds
the endpoint's key: the key itself is read when a client is made, held in memory by that client only, and sent to
that endpoint only. A model not listed goes to `llmtune_base_url` (else OPENAI_BASE_URL, else OpenAI's), unless
`llmtune_endpoints_only` says the table is complete. `refuses=` names request fields the provider does not take
(e.g. `refuses=n,logprobs`): a space that could send one to that model is refused before any request. The same
table serves the plugin and application code (`endpoint_table()` reads it from the ini file without pytest). No
pytest here; nothing here writes anywhere.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomllib

from pytest_llmtune.errors import LlmtuneError

__all__ = ["LOCAL", "EndpointTable", "Route", "TableError", "endpoint_table", "ini_lines", "ini_settings",
           "parse_endpoints"]

LOCAL = "local"  # the BASE_URL of a model the local server serves
OPTIONS = ("concurrency", "rpm", "tpm", "refuses")
VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a request field's name
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")  # an environment variable's name, as the table takes it: in capitals
KEY_LIKE = re.compile(r"^(sk-|sk_|gsk_|xai-|AIza|hf_)|^[A-Za-z0-9_\-]{32,}$")  # what an API key itself looks like
EXAMPLE = "gpt-4o-mini https://api.openai.com/v1 OPENAI_API_KEY concurrency=4 rpm=500"


class TableError(LlmtuneError):
    """A line of the endpoint table that cannot be read, or a model the table does not route."""


@dataclass(frozen=True)
class Route:
    """One model's endpoint; the key is named, never held."""

    model: str
    base_url: str  # or LOCAL
    key_env: str | None = None  # None: OPENAI_API_KEY, else no key (a keyless server)
    concurrency: int | None = None  # requests in flight at once; None: --llm-concurrency
    rpm: int = 0  # requests per minute (0: no limit)
    tpm: int = 0  # tokens per minute
    refuses: tuple[str, ...] = ()  # request fields the provider does not take (n: more than one sample)

    @property
    def local(self) -> bool:
        return self.base_url == LOCAL

    @property
    def lane(self) -> tuple[str, str | None]:
        """What one client serves: models at the same URL with the same key share its slots and limits."""
        return self.base_url, self.key_env


@dataclass(frozen=True)
class EndpointTable:
    routes: tuple[Route, ...] = ()
    only: bool = False  # every model a request names must be listed
    base_url: str | None = None  # where an unlisted model goes (the ini's llmtune_base_url), for application code

    def route(self, model: str | None) -> Route | None:
        """The model's route, or None: the default endpoint. Raises `TableError` for an unlisted model when the
        table is complete."""
        found = next((route for route in self.routes if route.model == model), None)
        if found is None and self.only:
            listed = ", ".join(route.model for route in self.routes) or "none"
            raise TableError(f"the model {model!r} has no line in ini llmtune_endpoints (llmtune_endpoints_only is "
                             f"true; listed: {listed}): add a line `{model} BASE_URL [API_KEY_ENV]`, or take the "
                             "model out of the space")
        return found

    def route_or_none(self, model: str) -> Route | None:
        """The model's line, if it has one (a complete table refuses nothing here)."""
        return next((route for route in self.routes if route.model == model), None)

    def __bool__(self) -> bool:
        return bool(self.routes) or self.only


def parse_endpoints(lines: Iterable[str], only: bool = False) -> EndpointTable:
    """The table from its ini lines. Raises `TableError` naming the line (any word that may be a key masked) and
    what is wrong with it."""
    routes: list[Route] = []
    for line in lines:
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        routes.append(_route(words, routes))
    for route in routes:  # models at one URL with one key share one client, its slots and its limits
        first = next(r for r in routes if r.lane == route.lane)
        if (route.concurrency, route.rpm, route.tpm) != (first.concurrency, first.rpm, first.tpm):
            raise TableError(f"ini llmtune_endpoints: {first.model!r} and {route.model!r} share an endpoint "
                             f"({route.base_url}, the same key), and so its slots and limits, but their lines give "
                             "it different concurrency, rpm or tpm: give them the same (or give it on one line and "
                             "repeat it on the other)")
    return EndpointTable(tuple(routes), only)


def _shown(words: Sequence[str]) -> str:
    """A line as messages show it: the model, the URL, options, and a variable's name; any other word masked."""
    return " ".join(word if index == 0 or len(word) <= 8 or word.partition("=")[0] in OPTIONS
                    or ENV_NAME.fullmatch(word) or (index == 1 and not KEY_LIKE.search(word))
                    else _masked(word) for index, word in enumerate(words))


def _route(words: Sequence[str], before: Sequence[Route]) -> Route:
    def wrong(what: str) -> TableError:
        return TableError(f"ini llmtune_endpoints line `{_shown(words)}`: {what}; write `MODEL BASE_URL "
                          f"[API_KEY_ENV] [concurrency=N] [rpm=N] [tpm=N] [refuses=FIELD,...]`, e.g. `{EXAMPLE}` "
                          "(BASE_URL `local`: the local server)")

    if len(words) < 2:
        raise wrong("no BASE_URL")
    model, url, rest = words[0], words[1], words[2:]
    if any(route.model == model for route in before):
        raise wrong(f"the model {model!r} has a line already")
    if url != LOCAL:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            shown = _masked(url) if KEY_LIKE.search(url) else repr(url)
            raise TableError(f"ini llmtune_endpoints: the line of {model!r}: {shown} is not an http(s) URL "
                             "nor `local`; write `MODEL BASE_URL [API_KEY_ENV]`, e.g. `" + EXAMPLE + "`")
        if "@" in parts.netloc or parts.query or parts.fragment:
            raise TableError(f"ini llmtune_endpoints: the URL of {model!r} holds a user, password, query or "
                             "fragment, which can carry a key: a key never goes in a file; give the URL without "
                             "them and name the variable that holds the key after it")
    key_env, options, refuses = None, dict[str, int](), tuple[str, ...]()
    for word in rest:
        name, equals, value = word.partition("=")
        if equals and name in OPTIONS:
            if name == "refuses":
                refuses = tuple(field for field in value.split(",") if field)
                if not refuses or not all(VARIABLE.fullmatch(field) for field in refuses):
                    raise wrong(f"refuses={value!r} must name request fields, e.g. refuses=n,logprobs")
                continue
            if not value.isdigit() or (name == "concurrency" and int(value) < 1):
                raise wrong(f"{name}={value!r} must be a whole number" + (" >= 1" if name == "concurrency" else ""))
            options[name] = int(value)
        elif equals and VARIABLE.fullmatch(name):
            raise wrong(f"unknown option {name!r} (options: {', '.join(OPTIONS)})")
        elif key_env is None and url != LOCAL:
            if KEY_LIKE.search(word) or not ENV_NAME.fullmatch(word):
                raise TableError(f"ini llmtune_endpoints: the line of {model!r} holds {_masked(word)} where the "
                                 "name of an environment variable belongs (capitals, digits and _); a key never "
                                 f"goes in a file: `export MY_KEY=...` in the environment and write `{model} {url} "
                                 "MY_KEY`")
            key_env = word
        else:
            shown = word if ENV_NAME.fullmatch(word) else _masked(word)
            raise wrong(f"{shown} is not an option (the local server needs no key)" if url == LOCAL
                        else f"{shown} is not an option")
    return Route(model, url.rstrip("/"), key_env, options.get("concurrency"), options.get("rpm", 0),
                 options.get("tpm", 0), refuses)


def _masked(word: str) -> str:
    """A word that may be a key, never shown whole."""
    return f"`{word[:3]}...` ({len(word)} characters)" if len(word) > 8 else repr(word)


INI_FILES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg")


def endpoint_table(start: str | Path | None = None) -> EndpointTable:
    """The endpoint table of the project, for application code: the ini file pytest would read (the first of
    pytest.ini, .pytest.ini, pyproject.toml with [tool.pytest.ini_options], tox.ini or setup.cfg with a pytest
    section, from `start`, default the current folder, upwards), with the models of llmtune_local_models as `local`
    routes and llmtune_base_url for the others. An empty table when there is none."""
    found = ini_settings(start)
    table = parse_endpoints(ini_lines(found.get("llmtune_endpoints", "")),
                            _true(found.get("llmtune_endpoints_only", "false")))
    local = [Route(words[0], LOCAL) for line in ini_lines(found.get("llmtune_local_models", ""))
             if (words := line.split("#", 1)[0].split()) and table.route_or_none(words[0]) is None]
    return EndpointTable((*table.routes, *local), table.only, str(found.get("llmtune_base_url", "")) or None)


def ini_settings(start: str | Path | None = None) -> Mapping[str, Any]:
    """The pytest section of the ini file pytest would read from `start` (default the current folder), with the
    folder that holds it under the key `rootdir`; empty when there is none."""
    folder = Path(start or os.getcwd()).resolve()
    for directory in (folder, *folder.parents):
        for name in INI_FILES:
            section = _pytest_section(directory / name)
            if section is not None:
                return {**section, "rootdir": directory}
    return {}


def _pytest_section(path: Path) -> Mapping[str, Any] | None:
    if not path.is_file():
        return None
    if path.suffix == ".toml":
        options = tomllib.loads(path.read_text()).get("tool", {}).get("pytest", {}).get("ini_options")
        return options if isinstance(options, dict) else None
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(path)
    section = "pytest" if path.name.endswith("pytest.ini") or path.name == "tox.ini" else "tool:pytest"
    if parser.has_section(section):
        return dict(parser[section])
    return {} if path.name.endswith("pytest.ini") else None  # pytest.ini is the ini file even when empty


def ini_lines(value: Any) -> list[str]:
    """An ini `linelist` as pytest reads it: a TOML list, or the lines of an ini value."""
    return [str(line) for line in value] if isinstance(value, list) else str(value).splitlines()


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes", "on")
