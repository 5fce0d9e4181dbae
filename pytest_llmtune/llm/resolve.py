"""Which endpoint a request goes to, and with which key: one answer for the plugin and for `create`.

The base URL is the one given (the ini's, a local server's, a `create` config's), else OPENAI_BASE_URL, else
OpenAI's. The key is the one given (a `create` config's `api_key`, held in memory only), else the variable a
config names (`api_key_env`), else OPENAI_API_KEY, else a placeholder: a keyless local server and a replay
need no key, and a server that wants one refuses the placeholder with a 401 that says so.
No pytest here; nothing here writes a key anywhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from pytest_llmtune.errors import LlmtuneError

__all__ = ["DEFAULT_BASE_URL", "KEY_VARIABLE", "PLACEHOLDER_KEY", "ResolvedEndpoint", "MissingKeyError",
           "resolve_endpoint"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the SDK's, when nothing else names one
KEY_VARIABLE = "OPENAI_API_KEY"
PLACEHOLDER_KEY = "llmtune-no-key"  # lets replay and keyless local servers work; never written anywhere


class MissingKeyError(LlmtuneError):
    """A config named the variable holding its key, and that variable is not set."""


@dataclass(frozen=True)
class ResolvedEndpoint:
    """Where requests go and the key they carry; the key never shows in a repr."""

    base_url: str
    api_key: str = field(repr=False)
    key_from: str  # where the key came from, for messages: "api_key", a variable's name, or "no key"

    @property
    def keyless(self) -> bool:
        return self.api_key == PLACEHOLDER_KEY


def resolve_endpoint(base_url: str | None = None, *, api_key: str | None = None,
                     api_key_env: str | None = None) -> ResolvedEndpoint:
    """The endpoint and key to use; precedence (first that is set): the argument, the variable it names,
    OPENAI_BASE_URL / OPENAI_API_KEY, the default (OpenAI's URL, the placeholder key).

    Raises `MissingKeyError` when `api_key_env` names a variable that is not set: naming one says a key is needed.
    """
    url = base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    if api_key:
        return ResolvedEndpoint(url, api_key, "api_key")
    if api_key_env:
        named = os.environ.get(api_key_env)
        if not named:
            raise MissingKeyError(f"the environment variable {api_key_env} (its API key) is not set")
        return ResolvedEndpoint(url, named, api_key_env)
    default = os.environ.get(KEY_VARIABLE)
    return ResolvedEndpoint(url, default, KEY_VARIABLE) if default else ResolvedEndpoint(url, PLACEHOLDER_KEY, "no key")
