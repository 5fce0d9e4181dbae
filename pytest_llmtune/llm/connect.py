"""The session's connection to its endpoints, from its settings: the `Endpoint` the tune and the gate share, one
lane a model's endpoint (the ini llmtune_endpoints table, llm/routes.py), and the SDK client of each. No pytest
here; each key is read from the environment when its client is made, and never written anywhere."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.llm.client import Endpoint, Lane, Recorded
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.local import LocalModel, has_chat_template
from pytest_llmtune.llm.resolve import PLACEHOLDER_KEY, resolve_endpoint
from pytest_llmtune.llm.routes import LOCAL, Route
from pytest_llmtune.settings import EndpointSettings, Settings

if TYPE_CHECKING:
    import httpx2
    import openai

__all__ = ["TransportFor", "lane_name", "make_client", "make_endpoint", "route_name"]

TransportFor = Callable[["Route | None"], "httpx2.BaseTransport"]  # the transport of the default endpoint or a route


def route_name(route: Route | None) -> str:
    """How messages name an endpoint: its URL (never its key), or the local model's name."""
    return "the default endpoint" if route is None else f"local {route.model}" if route.local else route.base_url


def lane_name(route: Route | None) -> str:
    """The lane a route's requests take: models at one URL with one key share it (its client, slots, pacer)."""
    if route is None or route.local:
        return route_name(route)
    return f"{route.base_url} ({route.key_env or 'no key'})"


StartLocal = Callable[[LocalModel], str]  # starts a local model's server (once), returns its base URL


def make_endpoint(settings: Settings, base_url: str | None = None, transport: httpx2.BaseTransport | None = None,
                  recorded: Recorded | None = None, transport_for: TransportFor | None = None,
                  start_local: StartLocal | None = None, chat: bool = True) -> Endpoint:
    """The endpoints: the default one at `base_url` (a local server's), else the ini's, else as `create` resolves
    it (OPENAI_BASE_URL, else OpenAI's), and one lane per endpoint of the table, models at the same URL with the
    same key sharing it. `transport_for(route)` (the cassettes' over the live layers) carries each lane's requests;
    without it, `transport` carries the default endpoint's. A `local` route is the local server at `base_url`; a
    model of llmtune_local_models has a lane of its own, whose server `start_local` starts on its first request
    (under --llm-local). `chat`: whether the default endpoint's model takes chat requests."""
    given = settings.endpoint
    url = resolve_endpoint(base_url or given.base_url).base_url
    local = settings.local.enabled and base_url is not None
    default_transport = transport_for(None) if transport_for is not None else transport
    lanes: dict[tuple[str, str | None], Lane] = {}
    routes, served_locally = {}, []
    for route in given.table.routes:
        if route.local and local:
            served_locally.append(route.model)  # the default lane: the local server's
        elif route.local:
            routes[route.model] = _unserved(route, given)
        else:
            if route.lane not in lanes:
                routed = transport_for(route) if transport_for is not None else None
                lanes[route.lane] = Lane(_client_for(given, route, routed), base_url=route.base_url,
                                         concurrency=route.concurrency or given.concurrency,
                                         key_from=route.key_env or "no key")
            routes[route.model] = lanes[route.lane]
    for model in settings.local.models:
        route = Route(model.name, LOCAL)
        routed = transport_for(route) if transport_for is not None else None
        routes[model.name] = (_local_lane(model, start_local, given, routed) if settings.local.enabled
                              and start_local is not None else _unserved(route, given))
    endpoint = Endpoint(lambda: make_client(given, url, default_transport, keyless=local), base_url=url,
                        concurrency=given.concurrency, split_n=given.split_n, recorded=recorded,
                        default_model=settings.local.alias if settings.local.enabled else given.model,
                        prices=PriceTable.default().with_prices(given.prices, warn=False), routes=routes,
                        refuses={route.model: route.refuses for route in given.table.routes if route.refuses})
    if local:
        endpoint.default.key_from = "no key"  # the local server needs none, and gets none
    endpoint.routes.update(dict.fromkeys(served_locally, endpoint.default))
    endpoint.default.chat = chat
    return endpoint


def _local_lane(model: LocalModel, start: StartLocal, given: EndpointSettings,
                transport: httpx2.BaseTransport | None) -> Lane:
    """A local model's lane: its server starts on the first request that needs it (a replay needs none)."""
    def make() -> openai.OpenAI:
        url = start(model)
        lane.base_url = url
        lane.chat = has_chat_template(model.path())  # the spaces that name it were checked before any request
        return make_client(given, url, transport, keyless=True)
    lane = Lane(make, base_url=f"local:{model.name}", concurrency=given.concurrency, key_from="no key")
    return lane


def _client_for(given: EndpointSettings, route: Route,
                transport: httpx2.BaseTransport | None) -> Callable[[], openai.OpenAI]:
    def make() -> openai.OpenAI:
        return make_client(given, route.base_url, transport, key_env=route.key_env, keyless=route.key_env is None)
    return make


def _unserved(route: Route, given: EndpointSettings) -> Lane:
    def refuse() -> openai.OpenAI:
        raise LlmtuneError(f"the model {route.model!r} is served by the local server (ini llmtune_endpoints): "
                           "add --llm-local")
    return Lane(refuse, base_url=LOCAL_URL, concurrency=given.concurrency)


LOCAL_URL = "http://127.0.0.1/v1"  # stands for the local server's URL until it is started


def make_client(settings: EndpointSettings, base_url: str | None,
                transport: httpx2.BaseTransport | None = None, *, key_env: str | None = None,
                keyless: bool = False) -> openai.OpenAI:
    """The SDK's client. The key is the variable `key_env` names; else, for the default endpoint, OPENAI_API_KEY;
    else a placeholder (a keyless local server, a replay). `keyless`: a table's endpoint with no key variable gets
    the placeholder, never OPENAI_API_KEY (a key reaches only its own endpoint)."""
    import openai  # ~0.4 s to import: only when a mode is on

    endpoint = resolve_endpoint(base_url, api_key_env=key_env)
    return openai.OpenAI(
        base_url=endpoint.base_url,
        api_key=PLACEHOLDER_KEY if keyless else endpoint.api_key,
        max_retries=settings.max_retries,
        timeout=settings.timeout,
        http_client=openai.DefaultHttpxClient(transport=transport) if transport is not None else None,
    )
