"""The network under the cassettes: an endpoint that refuses connections, or whose host has no address, is down
for the whole session. The first such request raises `EndpointUnreachable` at once (not an error the SDK retries:
a refused connection is an answer, not a hiccup), and every later one raises it before it is sent, so a forgotten
`--llm-local` costs one line and a fraction of a second, not a minute of retries and a traceback per instance.
"""

from __future__ import annotations

import errno
import socket

import httpx2

from pytest_llmtune.errors import LlmtuneError

__all__ = ["EndpointUnreachable", "FailFast"]

UNRESOLVED = ("Name or service not known", "Temporary failure in name resolution", "nodename nor servname")


class EndpointUnreachable(LlmtuneError):
    """Nothing listens at the endpoint, or its host cannot be found."""


DEFAULT_FIX = "start the endpoint's server, or point ini llmtune_base_url (or OPENAI_BASE_URL) at one that runs"


class FailFast(httpx2.BaseTransport):
    """One endpoint's network; `fix` says what to do when nothing answers there."""

    def __init__(self, network: httpx2.BaseTransport | None = None, fix: str = DEFAULT_FIX) -> None:
        self.network = network or httpx2.HTTPTransport()
        self.fix = fix
        self.down: str | None = None  # why the endpoint is unreachable, once a request found it so

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        if self.down is not None:
            raise EndpointUnreachable(self.down)
        try:
            return self.network.handle_request(request)
        except httpx2.ConnectError as error:
            problem = _unreachable(error, request)
            if problem is None:
                raise  # another connection error: the SDK's retries decide
            self.down = f"{problem}: {self.fix}"
            raise EndpointUnreachable(self.down) from None

    def close(self) -> None:
        self.network.close()


def _unreachable(error: httpx2.ConnectError, request: httpx2.Request) -> str | None:
    url = str(request.url)
    causes: list[BaseException] = []
    cause: BaseException | None = error
    while cause is not None and len(causes) < 10:
        causes.append(cause)
        cause = cause.__cause__ or cause.__context__
    if any(isinstance(c, ConnectionRefusedError) or getattr(c, "errno", None) == errno.ECONNREFUSED
           or "Connection refused" in str(c) for c in causes):
        return f"nothing listens at {url} (connection refused)"
    if any(isinstance(c, socket.gaierror) or any(words in str(c) for words in UNRESOLVED) for c in causes):
        return f"the host of {url} has no address (not found by DNS)"
    return None
