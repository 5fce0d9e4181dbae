"""The live request's layers (llm/layers.py) over real HTTP to the suite's server: the budget's gate reserves a
request's worst case before it is sent and refuses one the budget cannot hold, sending nothing; the pacer hears
the endpoint's 429s; and the request's body is parsed once for all of them (llm/body.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx2
import pytest
from openai_server import FakeOpenAI

from pytest_llmtune.llm.body import NOT_JSON, parsed_body, request_body
from pytest_llmtune.llm.cost import PriceTable
from pytest_llmtune.llm.layers import BudgetGate, Paced
from pytest_llmtune.llm.pacing import Pacer
from pytest_llmtune.search.budget import Budget, BudgetSpent, Spending

BODY = {"model": "m", "messages": [{"role": "user", "content": "2 + 2 ="}], "max_tokens": 40, "n": 2}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    running = FakeOpenAI().start()
    yield running
    running.stop()


def post(transport: httpx2.BaseTransport, server: FakeOpenAI) -> httpx2.Response:
    with httpx2.Client(transport=transport) as client:
        return client.post(f"{server.base_url}/chat/completions", json=BODY)


def test_the_budget_gate_reserves_the_worst_case_and_refuses_past_the_budget(server: FakeOpenAI) -> None:
    spending = Spending(Budget.parse("1000 tokens", "optimization_budget"))
    gate = BudgetGate(httpx2.HTTPTransport(), lambda: spending, lambda: PriceTable(warn=False))

    response = post(gate, server)

    assert response.status_code == 200 and server.requests == 1
    assert spending.holding  # room for its worst case (the prompt's bytes and n x max_tokens) until it settles
    spending.settle(1000, 0.0)
    with pytest.raises(BudgetSpent, match="optimization budget of 1,000 tokens is spent"):
        post(gate, server)
    assert server.requests == 1  # the refused request never left


def test_the_pacer_hears_a_429_from_the_endpoint(server: FakeOpenAI) -> None:
    pacer = Pacer(4)
    server.fail_next(1, status=429, retry_after=0.05)

    throttled, answered = post(Paced(httpx2.HTTPTransport(), pacer), server), post(Paced(httpx2.HTTPTransport(),
                                                                                       pacer), server)

    assert (throttled.status_code, answered.status_code) == (429, 200)
    assert pacer.throttles == 1 and pacer.limit < 4  # concurrency went down
    assert pacer.in_flight == 0  # each request's slot was given back


def test_a_body_is_parsed_once_and_shared() -> None:
    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions", json=BODY)
    other = httpx2.Request("POST", "http://127.0.0.1:9/v1/files", content=b"\x00not json")

    first = parsed_body(request)

    assert first == BODY and parsed_body(request) is first and request_body(request) is first
    assert parsed_body(other) is NOT_JSON and request_body(other) == {}
    assert json.loads(request.read()) == BODY  # the body itself is untouched
