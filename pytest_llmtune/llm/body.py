"""A request's JSON body, parsed once and kept on the request: the cassette's key and the live layers
(llm/layers.py) read the same parse."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx2

__all__ = ["NOT_JSON", "parsed_body", "request_body"]

BODY = "llmtune.body"  # the parsed body, in the request's extensions
NOT_JSON = object()


def parsed_body(request: httpx2.Request) -> Any:
    """The request's body parsed as JSON, once per request (the cassette's key and the live layers share it);
    `NOT_JSON` when it is not JSON."""
    if BODY not in request.extensions:
        try:
            request.extensions[BODY] = json.loads(request.read())
        except ValueError:
            request.extensions[BODY] = NOT_JSON
    return request.extensions[BODY]


def request_body(request: httpx2.Request) -> Mapping[str, Any]:
    """The request's JSON body as a dict ({} when it is none)."""
    found = parsed_body(request)
    return found if isinstance(found, dict) else {}
