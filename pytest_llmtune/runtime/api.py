"""The runtime API for application code: `create` calls, with a target's locked config (see `locked_config`).

    from pytest_llmtune import create, locked
    response = create({"review": text}, **locked("test_sentiment.py::test_sentiment"))

`create` tries alternatives in order (AutoGen's `config_list` entries as they are), retries with backoff, answers
identical deterministic requests from memory, and counts what the process spent. A key given as `api_key` stays in
memory: it is masked in every response, message and repr. No pytest here; openai is imported on the first call.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from tabulate import tabulate

from pytest_llmtune.errors import LlmtuneError, TemplateError
from pytest_llmtune.llm.client import render_request, sample_requests, send, texts_of
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.resolve import (
    KEY_VARIABLE,
    PLACEHOLDER_KEY,
    MissingKeyError,
    ResolvedEndpoint,
    resolve_endpoint,
)
from pytest_llmtune.llm.response import Response, TokenUsage
from pytest_llmtune.llm.retry import DEFAULT_RETRY_TIMEOUT, RetryFailed, with_retries
from pytest_llmtune.llm.routes import EndpointTable, TableError

if TYPE_CHECKING:
    import openai

__all__ = ["CACHE_SIZE", "CreateError", "ModelUsage", "Response", "TokenUsage", "UsageSummary", "clear_cache",
           "create", "reset_usage", "set_cache_size", "usage_summary"]

# Keys that steer `create` and never reach the request body. `timeout` caps one attempt, within retry_timeout.
# AutoGen's config_list keys are among them: `api_version` is Azure's (which create refuses), `tags` only select.
CACHE_SIZE = 1000  # responses create() keeps in memory by default (set_cache_size)
RUNTIME_KEYS = frozenset({"base_url", "api_key", "api_key_env", "api_type", "api_version", "tags", "retry_timeout",
                          "cache", "price", "timeout", "split_n", "endpoints"})
KEY_FIELDS = ("api_key", "api_key_env")  # an alternative that names either replaces both of the shared config's
OPENAI_API_TYPES = (None, "openai", "open_ai")  # AutoGen's spellings of an OpenAI-compatible endpoint
MASK = "***"  # what responses and messages show instead of a key


class CreateError(LlmtuneError):
    """No alternative answered; the message names each one and why it failed."""


# --- responses and usage ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelUsage:
    """`calls` reached the endpoint and cost `cost`; `cached_calls` were answered from memory, saving `cached_cost`."""

    calls: int = 0
    cached_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cached_cost: float = 0.0

    def __add__(self, other: ModelUsage) -> ModelUsage:
        return ModelUsage(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(ModelUsage)))


@dataclass(frozen=True)
class UsageSummary(ModelUsage):
    """The process's totals, and the same counts per model."""

    models: dict[str, ModelUsage] = field(default_factory=dict)

    @classmethod
    def of(cls, models: Mapping[str, ModelUsage]) -> UsageSummary:
        return cls(**asdict(sum(models.values(), ModelUsage())), models=dict(sorted(models.items())))

    def lines(self) -> list[str]:
        """Printable lines: a headline, then a table with a row per model."""
        head = (f"llmtune: {self.calls} LLM calls ({self.cached_calls} more from the cache), ${self.cost:.6f} spent, "
                f"${self.cached_cost:.6f} saved by the cache")
        rows = [[model, u.calls, u.cached_calls, u.prompt_tokens, u.completion_tokens, u.cost, u.cached_cost]
                for model, u in self.models.items()]
        headers = ["model", "calls", "cached", "prompt tokens", "completion tokens", "cost $", "saved $"]
        return [head, *tabulate(rows, headers, floatfmt=".6f").splitlines()] if rows else [head]


class _Process:
    """What one process shares between threads: clients, the response cache, the usage counts and prices."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.clients: dict[tuple[str | None, str], openai.OpenAI] = {}
        self.cache: OrderedDict[str, Response] = OrderedDict()  # least recently used first
        self.cache_size = CACHE_SIZE
        self.request_locks: OrderedDict[str, threading.Lock] = OrderedDict()
        self.usage: dict[str, ModelUsage] = {}
        self.prices = PriceTable.default()  # one table, so an unknown model warns once per process

    def client(self, base_url: str | None, api_key: str) -> openai.OpenAI:
        import openai

        with self.lock:  # one client per endpoint and key, so connections are reused
            if (base_url, api_key) not in self.clients:
                self.clients[base_url, api_key] = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
            return self.clients[base_url, api_key]

    def request_lock(self, key: str) -> threading.Lock:
        with self.lock:
            if key not in self.request_locks:
                self.request_locks[key] = threading.Lock()
            self.request_locks.move_to_end(key)
            while len(self.request_locks) > max(self.cache_size, 1):  # a lock evicted while held costs at most
                self.request_locks.popitem(last=False)  # one duplicate request, never a wrong answer
            return self.request_locks[key]

    def cached(self, key: str) -> Response | None:
        with self.lock:
            found = self.cache.get(key)
            if found is not None:
                self.cache.move_to_end(key)
            return found

    def keep(self, key: str, response: Response) -> None:
        with self.lock:
            self.cache[key] = response
            self.cache.move_to_end(key)
            while len(self.cache) > self.cache_size:
                self.cache.popitem(last=False)

    def count(self, model: str, usage: ModelUsage) -> None:
        with self.lock:
            self.usage[model] = self.usage.get(model, ModelUsage()) + usage


_PROCESS = _Process()


def usage_summary() -> UsageSummary:
    """What this process's `create` calls used since it started or since `reset_usage()`."""
    with _PROCESS.lock:
        return UsageSummary.of(_PROCESS.usage)


def reset_usage() -> None:
    """Start counting usage from zero (the cache is kept)."""
    with _PROCESS.lock:
        _PROCESS.usage.clear()


def set_cache_size(entries: int) -> None:
    """Keep at most `entries` responses in `create`'s memory (default 1,000), the least recently used going
    first; 0 turns the cache off."""
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        raise ValueError(f"set_cache_size({entries!r}): give a count of responses >= 0, e.g. 1000")
    with _PROCESS.lock:
        _PROCESS.cache_size = entries
        while len(_PROCESS.cache) > entries:
            _PROCESS.cache.popitem(last=False)


def clear_cache() -> None:
    """Forget every cached response: the next identical request is sent again."""
    with _PROCESS.lock:
        _PROCESS.cache.clear()
        _PROCESS.request_locks.clear()


# --- create -------------------------------------------------------------------------------------------------


def create(
    context: Mapping[str, Any] | None = None,
    *,
    config_list: Sequence[Mapping[str, Any]] | None = None,
    filter_func: Callable[[Mapping[str, Any], Response], bool] | None = None,
    **config: Any,
) -> Response:
    """Fill the config's `prompt` or `messages` from `context`, call the endpoint, and return its `Response`.

    `config` holds request fields (model, temperature, n, ...) and runtime keys, never sent: `base_url`
    (default: OPENAI_BASE_URL, else OpenAI's); the key, as `api_key` (the key itself: kept in memory, masked
    wherever it would show) or `api_key_env` (the name of the variable holding it), else OPENAI_API_KEY, else
    none, for a keyless local server; `api_type` ("openai": AutoGen's other types are refused), `api_version`
    and `tags` (AutoGen's, ignored); `endpoints`, the project's endpoint table (`endpoint_table()`, the ini
    llmtune_endpoints the tune used): a config without a `base_url` goes to its model's endpoint with the key in
    the variable the table names, as the tune's requests did; `retry_timeout`, the seconds one alternative may
    take, retries included (default 60); `timeout`, the seconds one attempt may take; `cache`; `price`, (dollars
    per 1K input tokens, per 1K output tokens) instead of the built-in table.

    `cache` (default None): a deterministic call (temperature 0 and n 1) made before in this process is answered
    from memory; a sampled one (any other temperature, unset included: the API's default is 1; or n > 1; a seed
    changes nothing) is sent each time, for a fresh sample. `cache=True` answers sampled calls from memory too;
    `cache=False` answers none.

    Each entry of `config_list` (AutoGen's as they are: see `config_list_from_json`) is merged over `config` and
    tried in order until one answers and `filter_func(context, response)` accepts it; 429, 5xx and connection
    errors are retried first. When `filter_func` rejects the last alternative's answer too, that answer is returned
    with `accepted=False` (as AutoGen does, and as a tuned cascade's last stage answers). Raises `CreateError`
    naming every alternative and why it failed when none answered.
    """
    if config_list is not None and not config_list:
        raise CreateError("config_list is empty: give at least one alternative, or leave it out")
    alternatives = [_merged(config, alternative) for alternative in config_list] if config_list else [dict(config)]
    for index, alternative in enumerate(alternatives):
        _check_runtime_keys(alternative, f"config_list[{index}]" if config_list else "the config")
    context = context or {}
    failures: list[tuple[dict[str, Any], RetryFailed]] = []
    for index, merged in enumerate(alternatives):
        try:
            response = _answer(merged, context, index if config_list else None)
        except RetryFailed as failure:
            failures.append((merged, failure))
            continue
        if filter_func is None:
            return response
        if filter_func(context, response):
            return replace(response, accepted=True)
        if index == len(alternatives) - 1:  # AutoGen's rule, and a tuned cascade's: the last stage's answer counts
            return replace(response, accepted=False)
        failures.append((merged, RetryFailed("filter_func rejected the response")))
    raise _all_failed(failures, listed=config_list is not None)


def _merged(config: Mapping[str, Any], alternative: Mapping[str, Any]) -> dict[str, Any]:
    """`alternative` over `config`; an alternative that names its key replaces the shared one, in either form."""
    own_key = any(name in alternative for name in KEY_FIELDS)
    return {**{k: v for k, v in config.items() if not (own_key and k in KEY_FIELDS)}, **alternative}


def _check_runtime_keys(config: Mapping[str, Any], where: str) -> None:
    retry_timeout = config.get("retry_timeout", DEFAULT_RETRY_TIMEOUT)
    if isinstance(retry_timeout, bool) or not isinstance(retry_timeout, (int, float)) or retry_timeout <= 0:
        raise CreateError(f"retry_timeout is {retry_timeout!r}, but must be a number of seconds > 0")
    price = config.get("price")
    if price is not None and not (isinstance(price, (tuple, list)) and len(price) == 2
                                  and all(isinstance(p, (int, float)) and p >= 0 for p in price)):
        raise CreateError(f"price is {price!r}, but must be (dollars per 1K input tokens, per 1K output tokens), "
                          "e.g. price=(0.00015, 0.0006)")
    endpoints = config.get("endpoints")
    if endpoints is not None and not isinstance(endpoints, EndpointTable):
        raise CreateError(f"endpoints is a {type(endpoints).__name__}, but must be the table endpoint_table() reads")
    if config.get("cache") not in (None, True, False):
        raise CreateError(f"cache is {config['cache']!r}, but must be True, False or None (None: only "
                          "deterministic calls, temperature 0 and n 1, are answered from memory)")
    _check_key_fields(config, where)


def _check_key_fields(config: Mapping[str, Any], where: str) -> None:
    """The AutoGen fields: an OpenAI-compatible endpoint, and one key. Messages name the key's type, never it."""
    if config.get("api_type") not in OPENAI_API_TYPES:
        raise CreateError(f"{where} has api_type={config['api_type']!r}, but create calls OpenAI-compatible "
                          "endpoints only (api_type 'openai'); leave such entries out, e.g. with "
                          "config_list_from_json(filter_dict={'api_type': ['openai', None]})")
    if all(name in config for name in KEY_FIELDS):
        raise CreateError(f"{where} has both api_key and api_key_env: give the key, or the name of the variable "
                          "holding it, not both")
    key = config.get("api_key")
    if key is not None and not isinstance(key, str):
        raise CreateError(f"{where} has an api_key that is a {type(key).__name__}, but must be a string")


def _all_failed(failures: list[tuple[dict[str, Any], RetryFailed]], listed: bool) -> CreateError:
    lines = [f"{f'config_list[{i}]' if listed else 'the config'} ({_describe(config)}): {failure.reason}"
             for i, (config, failure) in enumerate(failures)]
    error = CreateError("no LLM config answered:\n  " + "\n  ".join(lines))
    error.__cause__ = next((failure.cause for _, failure in reversed(failures) if failure.cause), None)
    return error


def _describe(config: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={config[key]!r}" for key in ("model", "base_url", "api_key_env") if key in config)


def _answer(config: dict[str, Any], context: Mapping[str, Any], index: int | None) -> Response:
    api, params = render_request({k: v for k, v in config.items() if k not in RUNTIME_KEYS}, context)
    if "model" not in params:
        raise TemplateError('the config has no "model": add one, e.g. create(context, model="gpt-4o-mini", ...)')
    endpoint = _endpoint(config)
    client = _PROCESS.client(endpoint.base_url, endpoint.api_key)
    try:
        if not _answers_from_memory(config, params):
            return _fetch(client, api, params, config, index)
        key = json.dumps([str(client.base_url), api, params], sort_keys=True, default=str)
        with _PROCESS.request_lock(key):  # an identical request in flight in another thread is sent once
            found = _PROCESS.cached(key)
            if found is not None:
                return _from_cache(found, config, index)
            response = _fetch(client, api, params, config, index)
            _PROCESS.keep(key, response)
            return response
    except RetryFailed as failure:
        raise _without_key(failure, endpoint) from None


def _answers_from_memory(config: Mapping[str, Any], params: Mapping[str, Any]) -> bool:
    """`cache` when given; else only a deterministic call: a sampled one asks the endpoint for a fresh sample."""
    if config.get("cache") is not None:
        return bool(config["cache"])
    return bool(params.get("temperature", 1) == 0 and params.get("n", 1) == 1)  # unset temperature: the API's 1


def _endpoint(config: Mapping[str, Any]) -> ResolvedEndpoint:
    table, routed = config.get("endpoints"), None
    if table is not None and not config.get("base_url"):
        try:
            routed = table.route(str(config.get("model")))
        except TableError as error:
            raise CreateError(str(error)) from None
    if routed is not None and (config.get("api_key") or config.get("api_key_env")):
        raise CreateError(f"the config gives a key ({'api_key' if config.get('api_key') else 'api_key_env'}) but no "
                          f"base_url, and the endpoint table routes {routed.model!r} to {routed.base_url}: a key "
                          "reaches only its own endpoint, so give the base_url it belongs to, or leave the key to "
                          "the table (its line names the variable)")
    if routed is not None and routed.local:
        raise CreateError(f"the model {routed.model!r} is served by the local server (ini llmtune_endpoints): "
                          "pass base_url= of its server (`python -m pytest_llmtune.local serve` prints it)")
    try:
        if routed is not None:
            if routed.key_env is None:  # a table's endpoint without a key variable gets no key, never another's
                return resolve_endpoint(routed.base_url, api_key=PLACEHOLDER_KEY)
            return resolve_endpoint(routed.base_url, api_key_env=routed.key_env)
        default = table.base_url if table is not None else None  # the ini's llmtune_base_url, as the tune's
        return resolve_endpoint(config.get("base_url") or default or None, api_key=config.get("api_key") or None,
                                api_key_env=config.get("api_key_env") or None)
    except MissingKeyError as error:
        raise RetryFailed(str(error)) from None  # the next alternative may have its key


def _without_key(failure: RetryFailed, endpoint: ResolvedEndpoint) -> RetryFailed:
    """The failure with the key masked (a server may echo it) and, when none was sent but one was wanted, the fix."""
    reason = failure.reason.replace(endpoint.api_key, MASK)
    if endpoint.keyless and getattr(failure.cause, "status_code", None) == 401:
        reason += f"; no API key was sent ({KEY_VARIABLE} is not set): set it, or give api_key_env or api_key"
    cause = failure.cause if endpoint.api_key not in str(failure.cause) else None
    return RetryFailed(reason, cause)


def _shown(config: dict[str, Any]) -> dict[str, Any]:
    """The config as a `Response` holds it: the key masked."""
    return {**config, "api_key": MASK} if config.get("api_key") else config


def _from_cache(response: Response, config: dict[str, Any], index: int | None) -> Response:
    model = str(response.config["model"])
    saved = _cost(model, response.usage, config.get("price"))
    _PROCESS.count(model, ModelUsage(cached_calls=1, cached_cost=saved))
    return replace(response, cost=0.0, cached=True, config=_shown(config), config_index=index)


def _fetch(client: openai.OpenAI, api: str, params: dict[str, Any], config: dict[str, Any],
           index: int | None) -> Response:
    requests, repeat = sample_requests(params, split_n=bool(config.get("split_n")))
    raws = [_send_with_retries(client, api, one, sample, config) for one, sample in requests]
    texts = [text for raw in raws for text in texts_of(raw, api)] * repeat
    usage = TokenUsage(sum(raw.usage.prompt_tokens for raw in raws if raw.usage),
                       sum(raw.usage.completion_tokens for raw in raws if raw.usage))
    cost = _cost(str(params["model"]), usage, config.get("price"))
    _PROCESS.count(str(params["model"]),
                   ModelUsage(len(raws), 0, usage.prompt_tokens, usage.completion_tokens, cost))
    return Response(texts, usage, cost, index, _shown(config), cached=False,
                    raw=raws[0] if len(raws) == 1 else raws)


def _send_with_retries(client: openai.OpenAI, api: str, params: dict[str, Any], sample: int,
                       config: Mapping[str, Any]) -> Any:
    """The request path the tune uses (`send`), with `create`'s retries (`retry_timeout`, `Retry-After`)."""
    return with_retries(lambda timeout: send(client, api, params, sample=sample, timeout=timeout)[0], config)


def _cost(model: str, usage: TokenUsage, price: Any) -> float:
    if price is None:
        return _PROCESS.prices.cost(model, usage.prompt_tokens, usage.completion_tokens)
    per_1k_in, per_1k_out = price
    return (usage.prompt_tokens * float(per_1k_in) + usage.completion_tokens * float(per_1k_out)) / 1000
