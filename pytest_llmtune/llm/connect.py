"""The session's connection to its endpoint, from its settings: the `Endpoint` the tune and the gate share and the
SDK client under it. No pytest here; the key is read from the environment and never written anywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_llmtune.llm.client import Endpoint, Recorded
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.resolve import resolve_endpoint
from pytest_llmtune.settings import EndpointSettings, Settings

if TYPE_CHECKING:
    import httpx2
    import openai

__all__ = ["make_client", "make_endpoint"]


def make_endpoint(settings: Settings, base_url: str | None = None, transport: httpx2.BaseTransport | None = None,
                  recorded: Recorded | None = None) -> Endpoint:
    """The endpoint at `base_url` (a local server's), else the ini's, else as `create` resolves it:
    OPENAI_BASE_URL, else OpenAI's. `transport` (the cassettes') carries its requests."""
    given = settings.endpoint
    url = resolve_endpoint(base_url or given.base_url).base_url
    return Endpoint(lambda: make_client(given, url, transport), base_url=url, concurrency=given.concurrency,
                    split_n=given.split_n, recorded=recorded,
                    default_model=settings.local.alias if settings.local.enabled else given.model,
                    prices=PriceTable.default().with_prices(given.prices, warn=False))


def make_client(settings: EndpointSettings, base_url: str | None,
                transport: httpx2.BaseTransport | None = None) -> openai.OpenAI:
    """The SDK's client. The key is OPENAI_API_KEY, else a placeholder (a keyless local server, a replay), as
    for `create`."""
    import openai  # ~0.4 s to import: only when a mode is on

    endpoint = resolve_endpoint(base_url)
    return openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=endpoint.api_key,
        max_retries=settings.max_retries,
        timeout=settings.timeout,
        http_client=openai.DefaultHttpxClient(transport=transport) if transport is not None else None,
    )
