"""AutoGen's OAI_CONFIG_LIST for `create`: the same JSON list, read from the same places, filtered the same way.

    from pytest_llmtune import config_list_from_json, create
    response = create(context, **config, config_list=config_list_from_json(filter_dict={"model": ["gpt-4o"]}))

The entries' keys stay in memory: nothing here writes, logs or shows one (messages never quote the JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pytest_llmtune.errors import LlmtuneError

__all__ = ["config_list_from_json"]

EXAMPLE = '[{"model": "gpt-4o-mini", "api_key": "sk-..."}, {"model": "gpt-4o", "base_url": "http://localhost:8080/v1"}]'
JSON_KINDS = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number",
              bool: "true or false", type(None): "null"}


def config_list_from_json(env_or_file: str = "OAI_CONFIG_LIST", file_location: str | Path = "",
                          filter_dict: Mapping[str, Collection[Any]] | None = None) -> list[dict[str, Any]]:
    """The list of configs, as AutoGen's `config_list_from_json` reads it, for `create(config_list=...)`.

    The variable `env_or_file`, when set, holds the JSON list itself or the path of a file holding it; when
    it is not set, `env_or_file` names the file, in the folder `file_location` (default: the current one).
    `filter_dict` keeps the entries whose every named field has one of the accepted values: a field that is a
    list (AutoGen's `tags`) matches when any of its items is accepted; an entry without the field matches
    when None is accepted. Raises `LlmtuneError` naming the variable or file and what is wrong with it.
    """
    text, source = _read(env_or_file, Path(file_location))
    return _filtered(_parse(text, source), filter_dict or {})


def _read(env_or_file: str, file_location: Path) -> tuple[str, str]:
    """The JSON text, and where it came from, for messages (never the text itself: it may hold keys)."""
    value = os.environ.get(env_or_file, "").strip()
    if value and not value.startswith(("[", "{")):
        path = Path(value)
        if not path.is_file():
            raise LlmtuneError(f"the variable {env_or_file} holds neither a JSON list nor the path of a file "
                               f"(there is no file {path}); set it to a list such as {EXAMPLE}, or to its file")
        return _read_file(path, f"the config list file {path} (named by {env_or_file})")
    if value:
        return value, f"the variable {env_or_file}"
    path = file_location / env_or_file
    if not path.is_file():
        raise LlmtuneError(f"no config list: the variable {env_or_file} is not set and there is no file {path}; "
                           f"set {env_or_file} to a JSON list such as {EXAMPLE} (or to its file's path), or "
                           "pass file_location=, the folder that holds the file")
    return _read_file(path, f"the config list file {path}")


def _read_file(path: Path, source: str) -> tuple[str, str]:
    try:
        return path.read_text(encoding="utf-8"), source
    except (OSError, UnicodeDecodeError) as error:
        raise LlmtuneError(f"{source} could not be read: {error}") from None


def _parse(text: str, source: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:  # its message names the place, never the text
        raise LlmtuneError(f"{source} is not valid JSON ({error.msg} at line {error.lineno} column "
                           f"{error.colno}); it must hold a list such as {EXAMPLE}") from None
    if not isinstance(data, list):
        raise LlmtuneError(f"{source} holds {_kind(data)}, but must hold a list of configs such as {EXAMPLE}")
    for index, entry in enumerate(data):
        if not isinstance(entry, dict):
            raise LlmtuneError(f"{source}: entry {index} is {_kind(entry)}, but must be an object such as "
                               '{"model": "gpt-4o-mini", "api_key": "sk-..."}')
    return data


def _kind(value: Any) -> str:
    return JSON_KINDS.get(type(value), type(value).__name__)


def _filtered(configs: list[dict[str, Any]], filter_dict: Mapping[str, Collection[Any]]) -> list[dict[str, Any]]:
    for field, accepted in filter_dict.items():
        if isinstance(accepted, (str, bytes)) or not isinstance(accepted, Collection):
            raise LlmtuneError(f"filter_dict[{field!r}] is {accepted!r}, but must be a list or set of the accepted "
                               f"values, e.g. {{{field!r}: [{accepted!r}]}}")
    return [config for config in configs
            if all(_accepts(accepted, config.get(field)) for field, accepted in filter_dict.items())]


def _accepts(accepted: Collection[Any], value: Any) -> bool:
    if isinstance(value, list):
        return any(item in accepted for item in value)
    return value in accepted
