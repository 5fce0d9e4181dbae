"""The `llm` callable: fills a config's template from an instance and calls an OpenAI-compatible endpoint.

No pytest here: the same code serves the fixture and application code.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import inspect
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from pytest_llmtune.errors import TemplateError
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.judge import Judge
from pytest_llmtune.llm.response import Response, TokenUsage
from pytest_llmtune.search.budget import Spending
from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.judge_config import JudgeConfig
from pytest_llmtune.search.keys import (
    API_FIELDS,
    OURS,
    SESSION_KEYS,
    template_names,
    unknown_key_words,
    wrong_api_words,
)
from pytest_llmtune.usage import Usage

if TYPE_CHECKING:
    import openai

__all__ = ["API_PATHS", "FRESH", "LLM", "Endpoint", "Lane", "Recorded", "Recording", "Reply", "render_request",
           "sample_requests", "send", "texts_of"]



class Recording(NamedTuple):
    text: str  # the response body
    fresh: bool  # recorded in this session: not a response the lock was scored on


Recorded = Callable[[str, int, Mapping[str, Any]], "Recording | None"]  # (path, sample, JSON body) -> recording

REPLAYED_HEADER = "x-llmtune-replayed"  # set on responses played back from a cassette (cassette.py): "1", or
FRESH = "new"  # when this session recorded it
SAMPLE_HEADER = "X-Llmtune-Sample"  # tells apart repeated identical requests within one evaluation
API_PATHS = {"chat": "/chat/completions", "completions": "/completions"}  # under an endpoint's base URL
SEED_SPREAD = 2**30  # seed offsets are below it: a seed stays a 31-bit int (llama.cpp's is a uint32)


@dataclass(frozen=True)
class Reply:
    texts: list[str]
    prompt_tokens: int
    completion_tokens: int
    replayed: bool
    cost: float = 0.0
    fresh: bool = True  # obtained in this session: sent now, or replayed from a recording this session made

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Lane:
    """One endpoint's share of the requests: its client (its URL and its key, made on the first request that needs
    the SDK) and its slots, at most `concurrency` requests in flight."""

    def __init__(self, client: openai.OpenAI | Callable[[], openai.OpenAI], *, base_url: str | None = None,
                 concurrency: int = 8, key_from: str = "OPENAI_API_KEY", chat: bool = True) -> None:
        """`key_from`: where its key comes from, for messages (a variable's name; never the key). `chat`: whether
        its models take chat requests (a local base model without a chat template takes completions only)."""
        self.key_from, self.chat = key_from, chat
        self._client: openai.OpenAI | None = None if callable(client) else client
        self._make_client: Callable[[], openai.OpenAI] | None = client if callable(client) else None
        self.base_url = base_url or str(self.client.base_url)
        self.concurrency = concurrency
        self.slots = threading.Semaphore(concurrency)
        self._client_lock = threading.Lock()

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            with self._client_lock:
                if self._client is None and self._make_client is not None:
                    self._client = self._make_client()
        assert self._client is not None
        return self._client

    def close(self) -> None:
        if self._client is not None and self._make_client is not None:
            self._client.close()


class Endpoint:
    """The session's way to the models: one OpenAI client per endpoint, shared by every evaluation, each with at
    most its `concurrency` requests in flight, none sent twice.

    `routes` maps a model to the lane of its own endpoint (the ini llmtune_endpoints table, llm/routes.py); any
    other model goes to the default lane (`client`). A second thread asking for a request that is in flight waits
    for it; the cassette then holds the response and plays it back. With `split_n`, a request for n samples is
    sent as n single-sample requests (sample k with seed + k when a seed is set): a config that differs only by a
    larger n pays only for the extra samples, a smaller n reuses those drawn, n may exceed a server's slots, and
    each response's usage counts its one sample (llama-server under-counts completion tokens when n > 1).
    """

    def __init__(self, client: openai.OpenAI | Callable[[], openai.OpenAI], *, base_url: str | None = None,
                 concurrency: int = 8, split_n: bool = False, default_model: str | None = None,
                 prices: PriceTable | None = None, spending: Spending | None = None,
                 recorded: Recorded | None = None, routes: Mapping[str, Lane] | None = None,
                 refuses: Mapping[str, tuple[str, ...]] | None = None) -> None:
        """`client` may be a function that makes it, on the first request that needs the SDK (a replay from
        `recorded` does not: a replay-only run never imports openai); `base_url` is then required. `refuses`:
        per model, the request fields its provider does not take."""
        self.default = Lane(client, base_url=base_url, concurrency=concurrency)
        self.routes = dict(routes or {})
        self.refuses = dict(refuses or {})
        self.recorded = recorded  # a recording's response body, looked up before the SDK builds a request
        self.split_n = split_n
        self.default_model = default_model
        self.prices = prices or PriceTable.default()
        self.spending = spending or Spending(None)
        self.usage = Usage()
        self.judge_usage = Usage()  # of `usage`: what `llm.judge` asked (llm/judge.py)
        self._usage_lock = threading.Lock()
        lanes = {id(lane): lane for lane in [self.default, *self.routes.values()]}.values()
        self._fanout = cf.ThreadPoolExecutor(max_workers=sum(lane.concurrency for lane in lanes),
                                             thread_name_prefix="llmtune-sample")
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return self.default.base_url

    @property
    def client(self) -> openai.OpenAI:
        return self.default.client

    def lane(self, model: Any) -> Lane:
        """The lane of the model's endpoint."""
        return self.routes.get(str(model), self.default) if self.routes else self.default

    def complete(self, api: str, params: dict[str, Any], sample: int = 0) -> Reply:
        key = json.dumps([api, params, sample], sort_keys=True, default=str)
        with self._locks_lock:
            lock = self._locks[key]
        lane = self.lane(params.get("model"))
        if api == "chat" and not lane.chat:
            raise TemplateError(f"the model {params.get('model')!r} has no chat template (its GGUF holds none), so "
                                "it takes completions only: give its configs api='completions' and a prompt (in a "
                                "space, a group: choice([{\"model\": ..., \"api\": \"completions\", ...}, ...]))")
        refused = [field for field in self.refuses.get(str(params.get("model")), ()) if field in params
                   and (field != "n" or params[field] != 1)]  # split n is sent as single samples, without n
        if refused:
            raise TemplateError(f"the endpoint of {params.get('model')!r} does not take {refused[0]!r} (refuses= on "
                                "its line in ini llmtune_endpoints): leave it out of that model's configs")
        with lock, lane.slots:
            try:
                reply = self._send(lane, api, params, sample)
            except BaseException:
                self.spending.release()  # the room BudgetGate (llm/layers.py) held for a live request, if it did
                raise
        if reply.replayed:
            self.spending.release()
        else:
            self.spending.settle(reply.tokens, reply.cost)  # charges and frees the reservation at once
        with self._usage_lock:
            self.usage.record(reply.prompt_tokens, reply.completion_tokens, reply.cost, replayed=reply.replayed,
                              fresh=reply.fresh)
        return reply

    def judged(self, reply: Reply) -> None:
        """Count a reply of `llm.judge` apart too (it is in `usage` already)."""
        with self._usage_lock:
            self.judge_usage.record(reply.prompt_tokens, reply.completion_tokens, reply.cost,
                                    replayed=reply.replayed, fresh=reply.fresh)

    def complete_many(self, api: str, requests: list[tuple[dict[str, Any], int]]) -> list[Reply]:
        """Several (params, sample) requests at once, in order."""
        if len(requests) == 1:
            return [self.complete(api, *requests[0])]
        return list(self._fanout.map(lambda request: self.complete(api, *request), requests))

    def close(self) -> None:
        self._fanout.shutdown(wait=True)
        for lane in {id(lane): lane for lane in [self.default, *self.routes.values()]}.values():
            lane.close()

    def _send(self, lane: Lane, api: str, params: dict[str, Any], sample: int) -> Reply:
        found = self._replay(api, params, sample)
        if found is not None:
            return found
        response, headers = send(lane.client, api, params, sample=sample)
        prompt_tokens = response.usage.prompt_tokens if response.usage else 0
        completion_tokens = response.usage.completion_tokens if response.usage else 0
        replayed = headers.get(REPLAYED_HEADER)
        return Reply(
            texts=texts_of(response, api),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            replayed=replayed in ("1", FRESH),
            cost=self.prices.cost(str(params.get("model", "")), prompt_tokens, completion_tokens),
            fresh=replayed != "1",
        )

    def _replay(self, api: str, params: dict[str, Any], sample: int) -> Reply | None:
        """The fast path of replay: the recording of the body the SDK would send, read without the SDK.

        Replaying through the SDK and the transport gives the same reply at about four times the cost; any
        request this lookup does not find (a body the SDK would shape differently) still takes that path.
        """
        if self.recorded is None:
            return None
        # the SDK sends the fields it names and `extra_body` as one JSON object: `params`; recordings are matched
        # on the API's path, whatever the endpoint's base path
        recording = self.recorded(API_PATHS[api], sample, params)
        if recording is None:
            return None
        try:
            data = json.loads(recording.text)
            choices = sorted(data["choices"], key=lambda c: c["index"])
            texts = [(c["message"].get("content") or "") if api == "chat" else c["text"] for c in choices]
            usage = data.get("usage") or {}
            prompt_tokens = int(usage.get("prompt_tokens", 0))
            completion_tokens = int(usage.get("completion_tokens", 0))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None  # the SDK's parser decides what to make of it
        return Reply(texts=texts, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, replayed=True,
                     cost=self.prices.cost(str(params.get("model", "")), prompt_tokens, completion_tokens),
                     fresh=recording.fresh)


def send(client: openai.OpenAI, api: str, params: dict[str, Any], *, sample: int = 0,
         timeout: float | None = None) -> tuple[Any, Mapping[str, str]]:
    """The one request path of the tune, the gate and `create`: the parsed response and its HTTP headers.

    `api` is "chat" or "completions"; fields the SDK does not name go in `extra_body`; `sample` (sample k of
    an identical request) is sent as a header, so that recordings tell the samples apart.
    """
    resource: Any = client.chat.completions if api == "chat" else client.completions
    known, extra = _split(params, resource.create)
    options: dict[str, Any] = {"extra_headers": {SAMPLE_HEADER: str(sample)}} if sample else {}
    if timeout is not None:
        options["timeout"] = timeout
    raw = resource.with_raw_response.create(**known, extra_body=extra or None, **options)
    return raw.parse(), raw.headers


def texts_of(response: Any, api: str) -> list[str]:
    choices = sorted(response.choices, key=lambda c: c.index)
    return [(c.message.content or "") if api == "chat" else c.text for c in choices]


def sample_requests(params: Mapping[str, Any], *, split_n: bool, first: int = 0, seeded: bool = True,
                    spread: bool = True) -> tuple[list[tuple[dict[str, Any], int]], int]:
    """The (request, sample number) pairs that draw a config's n samples, and how many samples each text is.

    Without `split_n`, one request asks for n. With it, n single-sample requests, so samples are reused across n and
    llama-server counts tokens right; each sampled one carries a seed (the config's seed + k, or k when it has
    none), so that a server that honours seeds gives the same sample again: a tune is repeatable, and a tune
    interrupted and resumed locks what an uninterrupted one locks (`seeded=False`: a config without a seed is sent
    without one, as locks before `"seeded"` were recorded, so an older lock still replays). At temperature 0 one request
    serves every sample (its text stands for n). `first` numbers the samples of the k-th identical call in one
    evaluation.

    `spread`: a seed also gets an offset from the request's own content (`seed_offset`), so that two instances never
    share a seed. One seed for every instance draws the same random numbers for each: on SmolLM2 and Gemma 3 at
    temperature 0.6, the seeds 7, 1007, 2007 and 3007 scored 0.63 / 0.38 / 0.60 / 0.62 and 0.82 / 0.38 / 0.70 /
    0.82 on the same 60 countries, a spread no interval over independent instances allows. False: as locks
    before `"spread_seeds"` were recorded, so an older lock still replays.
    """
    offset = seed_offset(params) if spread else 0
    if not split_n:
        return [(_nth_sample(dict(params), first, offset), first)], 1
    n = int(params.get("n", 1))
    single = {key: value for key, value in params.items() if key != "n"}
    if single.get("temperature") == 0:
        return [(single, first)], n
    seed = single.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        if not seeded:
            return [(single, first + k) for k in range(n)], 1
        seed = 0
    return [({**single, "seed": seed + offset + first + k}, first + k) for k in range(n)], 1


def seed_offset(params: Mapping[str, Any]) -> int:
    """A number from the request without its seed and n (the prompt, the model, the settings): the same request
    gets the same one, two instances' requests different ones."""
    content = json.dumps({k: v for k, v in params.items() if k not in ("seed", "n")}, sort_keys=True, default=str)
    return int(hashlib.sha256(content.encode()).hexdigest()[:8], 16) % SEED_SPREAD


_SIGNATURES: dict[Any, set[str]] = {}


def _split(params: Mapping[str, Any], create: Callable[..., Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The fields the SDK's `create` takes by name, and the rest for `extra_body` (e.g. llama.cpp's top_k)."""
    names = _SIGNATURES.setdefault(create.__func__, set(inspect.signature(create).parameters))  # type: ignore[attr-defined]
    known = {k: v for k, v in params.items() if k in names}
    return known, {k: v for k, v in params.items() if k not in names}


def render(template: Any, context: Mapping[str, Any]) -> Any:
    if callable(template):
        return template(dict(context))
    try:
        return template.format_map(context)
    except KeyError as error:
        fields = ", ".join(sorted(map(str, context))) or "none"
        raise TemplateError(
            f"the template {template!r} needs the field {error.args[0]!r}; this instance has: {fields}. "
            "Pass it to llm(...) or write literal braces as {{ }}"
        ) from None


def render_request(config: Mapping[str, Any], context: Mapping[str, Any],
                   instance: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """The API ("chat" or "completions") and the request body's fields for one instance, in a stable order.

    Demonstrations (search/demos.py) are rendered where the template names them, or as chat turns before the last
    user message; neither `instance` (the fields of the instance evaluated, when the session knows them) nor the
    context is ever shown as one of them.

    The config's keys are sorted as search/keys.py says: request fields of the API are sent, `extra_body`'s fields
    are sent as they are, template variables are rendered into the template and never sent; any other key is a
    TemplateError (as the space refuses it at collection).
    """
    api = config.get("api", "chat")
    if api not in API_FIELDS:
        raise TemplateError(f"api is {api!r}, but must be 'chat' or 'completions'")
    fields = API_FIELDS[api]
    template = config.get("messages", config.get("prompt"))
    variables = {key: Demonstrations.decode(value) if Demonstrations.encoded(value) else value  # a config list's
                 for key, value in config.items() if key not in OURS and key not in fields}  # JSON holds them so
    _check_variables(variables, template, api, context)
    turns: list[dict[str, str]] = []
    for key, value in variables.items():
        if isinstance(value, Demonstrations):
            shown = value.shown(*([instance] if instance else []), context)  # never the input's own answer
            if value.as_turns:
                turns += value.turns(shown)
            variables[key] = "" if value.as_turns else value.text(shown)
    context = {**context, **variables}
    params = {k: v for k, v in sorted(config.items()) if k in fields}
    params.update(sorted(_extra_body(config.get("extra_body"), params).items()))
    if "messages" in config:
        messages = config["messages"]
        rendered = render(messages, context) if callable(messages) else [
            {"role": m["role"], "content": render(m["content"], context)} for m in messages
        ]
        if api == "completions":
            raise TemplateError("api='completions' takes a 'prompt', not 'messages'")
        return api, {"messages": _with_turns(rendered, turns), **params}
    prompt = render(config["prompt"], context)
    if api == "completions":
        if turns:
            raise TemplateError("demonstrations as chat turns (user=, assistant=) need api='chat'; for a "
                                "completions prompt give demos(format=...)")
        return api, {"prompt": prompt, **params}
    return api, {"messages": _with_turns([{"role": "user", "content": prompt}], turns), **params}


def _with_turns(messages: list[dict[str, Any]], turns: list[dict[str, str]]) -> list[dict[str, Any]]:
    """The demonstrations' turns before the last user message."""
    if not turns:
        return messages
    last = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=len(messages))
    return [*messages[:last], *turns, *messages[last:]]


def _check_variables(variables: Mapping[str, Any], template: Any, api: str, context: Mapping[str, Any]) -> None:
    """Template variables are keys the template uses, and no instance field of the same name."""
    if not variables:
        return
    names = template_names(template)
    for key in variables:
        if key in SESSION_KEYS:
            raise TemplateError(f"{key!r} is not a request field: {SESSION_KEYS[key]}")
        if any(key in found for found in API_FIELDS.values()):
            raise TemplateError(wrong_api_words(key, [api]))
        if isinstance(variables[key], Demonstrations) and variables[key].as_turns:
            continue  # chat turns: no template names them
        if names is None or key not in names:
            raise TemplateError(unknown_key_words(key, [api], names))
        if key in context:
            raise TemplateError(f"{key!r} is both a template variable of the config and a field of this instance "
                                "(its parameters, or a keyword of llm(...)): rename one")


def _extra_body(extra: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The server's own fields, sent beside the SDK's; never one the SDK sends itself."""
    if extra is None:
        return {}
    if not isinstance(extra, Mapping):
        raise TemplateError(f"extra_body is {extra!r}, but must be a dict of the server's own fields")
    clash = sorted(set(extra) & (set(params) | OURS))
    if clash:
        raise TemplateError(f"extra_body holds {clash[0]!r}, which the request sends itself: give it once")
    return dict(extra)


def _nth_sample(params: dict[str, Any], sample: int, offset: int = 0) -> dict[str, Any]:
    """Sample k of a seeded request uses seed + offset + k, so that its samples differ and each is reproducible."""
    if (sample or offset) and isinstance(params.get("seed"), int) and not isinstance(params["seed"], bool):
        return {**params, "seed": params["seed"] + offset + sample}
    return params


class LLM:
    """`llm(context=None, **fields) -> list[str]`: the n texts for one instance under `config`.

    With `accept` (a target's `cascade=`): each call runs `stages` in order until `accept(context, response)` takes
    an answer (the last stage's counts when none is taken); `accepted` and `answered` record, per call, whether the
    answer counted was taken and which stage gave it. A single config is a cascade of one stage: its answer is
    judged too, which is what lets the search compose cascades from single configs' results."""

    def __init__(self, config: Mapping[str, Any], endpoint: Endpoint, *, split_n: bool | None = None,
                 first_sample: int = 0, seeded: bool = True, spread: bool = True,
                 stages: Sequence[Mapping[str, Any]] = (),
                 accept: Callable[[Mapping[str, Any], Response], Any] | None = None,
                 judge: JudgeConfig | None = None) -> None:
        """`first_sample` numbers this evaluation's samples from there: a repeated evaluation (`--llm-repeat`)
        draws samples of its own (with a seed in the config, seed + its number). `judge`: the config of `llm.judge`
        (llm/judge.py), whose usage `judge_usage` counts apart from the config's own."""
        self.config = dict(config)
        self.stages = [dict(stage) for stage in stages] or [self.config]
        self.accept = accept
        self.first_sample = first_sample
        self.endpoint = endpoint
        self.split_n = endpoint.split_n if split_n is None else split_n  # a lock replays as it was recorded
        self.seeded = seeded  # split samples carry seeds (False: an older lock's recordings have none)
        self.spread = spread  # seeds differ between instances (False: an older lock's recordings share them)
        self.instance: Mapping[str, Any] | None = None  # the fields of the instance evaluated: never a demonstration
        self.usage = Usage()
        self.answers: list[str] = []  # every text served, in order: the first one is the instance's answer
        self.accepted: list[bool] = []  # with accept: per call, whether the answer counted was taken
        self.answered: list[int] = []  # with accept: per call, the stage whose answer counted (from 0)
        self.judge_config = judge
        self.judge_usage = Usage()  # the judge's requests: not the config's own cost
        self.ungraded = 0  # judge replies without a grade (each a miss)
        self._seen: Counter[str] = Counter()

    @property
    def judge(self) -> Judge:
        """`llm.judge(rubric, answer, ...)` and `llm.judge.pairwise(rubric, a, b, ...)`."""
        return Judge(self)

    def ask_judge(self, api: str, params: dict[str, Any]) -> str:
        """One judge request (temperature 0: the same request, the same reply), through the endpoint."""
        reply = self.endpoint.complete(api, params)
        self.judge_usage.record(reply.prompt_tokens, reply.completion_tokens, reply.cost, replayed=reply.replayed,
                                fresh=reply.fresh)
        self.endpoint.judged(reply)
        return reply.texts[0] if reply.texts else ""

    def __call__(self, context: Mapping[str, Any] | None = None, **fields: Any) -> list[str]:
        merged = {**(context or {}), **fields}
        if self.accept is None:
            texts = self._call(self.config, merged)[0]
            self.answers += texts
            return texts
        if self.accepted:
            raise CascadeError("a target with cascade= calls llm() once per instance: a cascade's result on an "
                               "instance is its first accepted answer, which one call has; make one call, or tune "
                               "each call as a target of its own")
        for number, stage in enumerate(self.stages):
            texts, response = self._call(stage, merged, number)
            taken = self._judge(merged, response, number)
            if taken or number == len(self.stages) - 1:
                self.accepted.append(taken)
                self.answered.append(number)
                self.answers += texts
                return texts
        raise AssertionError("a cascade has stages")

    def _call(self, config: Mapping[str, Any], merged: Mapping[str, Any],
              stage: int = 0) -> tuple[list[str], Response]:
        """One stage's request. Its samples are numbered per stage (`stage` in the key), as when the stage runs
        alone: a later stage that differs only in n from an earlier one draws what it drew alone, so a cascade's
        end-to-end run gives what its composition from the stages' own runs said."""
        api, params = render_request(config, merged, self.instance)
        if "model" not in params:
            if not self.endpoint.default_model:
                raise TemplateError('the config has no "model": add one to the space or set the ini llmtune_model')
            params = {"model": self.endpoint.default_model, **params}
        key = json.dumps([stage, api, {k: v for k, v in params.items() if k != "n" or not self.split_n}],
                         sort_keys=True, default=str)
        first = self.first_sample + self._seen[key]  # the k-th identical call in this evaluation: samples of its own
        requests, repeat = sample_requests(params, split_n=self.split_n, first=first, seeded=self.seeded,
                                           spread=self.spread)
        self._seen[key] += len(requests)
        replies = self.endpoint.complete_many(api, requests)
        for reply in replies:
            self.usage.record(reply.prompt_tokens, reply.completion_tokens, reply.cost, replayed=reply.replayed,
                              fresh=reply.fresh)
        texts = [text for reply in replies for text in reply.texts] * repeat
        usage = TokenUsage(sum(r.prompt_tokens for r in replies), sum(r.completion_tokens for r in replies))
        response = Response(texts, usage, sum(r.cost for r in replies), stage if len(self.stages) > 1 else None,
                            dict(config), cached=False, raw=None)
        return texts, response

    def _judge(self, context: Mapping[str, Any], response: Response, number: int) -> bool:
        assert self.accept is not None
        try:
            return bool(self.accept(context, response))
        except Exception as error:  # noqa: BLE001 - said with the stage, never taken for a rejection
            where = f"stage {number + 1} of the cascade" if len(self.stages) > 1 else "the config"
            raise CascadeError(f"accept raised on {where} ({_short(response.config)}): {type(error).__name__}: "
                               f"{error}; fix accept (the application's create(filter_func=accept) would raise it "
                               "too) and tune again") from error

    def __repr__(self) -> str:
        return f"LLM({self.config!r})"


class CascadeError(TemplateError):
    """A cascade that cannot be run as it was tuned: `accept` raised, or a call more than the one per instance."""


def _short(config: Mapping[str, Any]) -> str:
    shown = [f"{key}={config[key]!r}" for key in ("model", "temperature", "n", "max_tokens") if key in config]
    return ", ".join(shown) or "its defaults"
