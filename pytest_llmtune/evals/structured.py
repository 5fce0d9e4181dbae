"""JSON answers: parse what a model wrote (bare, in a ```json fence, or inside prose) and check it against a schema.

    data = parse_json(llm(case)[0])                  # a failed assertion (a miss) when nothing parses
    return json_score(llm(case)[0], SCHEMA)          # {"json": 1.0, "schema": 0.0}

Schemas are checked with `jsonschema` (the reference validator, every draft; the `metrics` extra), imported on
first use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pytest_llmtune.evals.text import _import, _short

__all__ = ["json_score", "parse_json"]

_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def parse_json(text: str) -> Any:
    """The JSON value of the text: the whole text, else a fenced block, else the first `{...}` or `[...]` span
    that parses. Nothing parses: AssertionError with the parser's message and position."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        first = error
    for candidate in [*_FENCE.findall(text), *_spans(text)]:
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            continue
    raise AssertionError(f"not JSON: {first.msg} at line {first.lineno} column {first.colno}: {_short(text)}")


def json_score(text: str, schema: Mapping[str, Any] | None = None, *,
               at_least: float | None = None) -> dict[str, float]:
    """`{"json": 1.0}` when the text holds JSON (`parse_json`), and with a schema `"schema"`: 1.0 when it is valid.
    `at_least` applies to "schema" when a schema is given, else to "json". A schema that is itself invalid raises
    jsonschema's SchemaError: a defect of the test, not a miss."""
    validator = _validator(schema) if schema is not None else None
    try:
        data, problem = parse_json(text), None
    except AssertionError as error:
        data, problem = None, str(error)
    scores = {"json": float(problem is None)}
    if validator is not None:
        if problem is None:
            invalid = next(iter(validator.iter_errors(data)), None)
            if invalid is not None:
                where = "/".join(map(str, invalid.absolute_path)) or "(the root)"
                problem = f"schema: at {where}: {invalid.message}"
        scores["schema"] = float(problem is None)
    main = scores["schema" if validator is not None else "json"]
    if at_least is not None and main < at_least:
        raise AssertionError(f"{'schema' if validator is not None else 'json'} {main:.2f} < {at_least:.2f}: "
                             f"{problem}")
    return scores


def _validator(schema: Mapping[str, Any]) -> Any:
    validators = _import("jsonschema.validators")
    cls = validators.validator_for(schema)  # its $schema's draft, else the latest
    cls.check_schema(schema)
    return cls(schema)


def _spans(text: str) -> list[str]:
    """Each `{...}` or `[...]` span from an opening bracket to its balanced close, in order (strings respected)."""
    spans = []
    for start, char in enumerate(text):
        if char not in "{[":
            continue
        end = _close(text, start)
        if end is not None:
            spans.append(text[start:end + 1])
    return spans


def _close(text: str, start: int) -> int | None:
    depth, quoted, escaped = 0, False, False
    for i in range(start, len(text)):
        char = text[i]
        if quoted:
            escaped, quoted = (not escaped and char == "\\"), quoted and (escaped or char != '"')
            continue
        if char == '"':
            quoted = True
        elif char in "{[":
            depth += 1
        elif char in "}]":
            depth -= 1
            if depth == 0:
                return i
    return None
