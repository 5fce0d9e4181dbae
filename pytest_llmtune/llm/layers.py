"""The layers of a live request, as transports under the cassettes (httpx's way of wrapping a request):

    RecordingTransport (store/cassette.py: replay, or record)
      -> BudgetGate (the optimization budget admits the request, room held for its worst case)
        -> Paced (the endpoint's rate limits, and backing off on 429)
          -> FailFast (llm/reach.py: a refused connection ends the endpoint for the session)
            -> the network

Only a request no recording answers reaches them, so replays are free and unpaced. The request's JSON body is
parsed once, by the first layer that reads it, and kept on the request (llm/body.py).
"""

from __future__ import annotations

from collections.abc import Callable

import httpx2

from pytest_llmtune.llm.body import request_body
from pytest_llmtune.llm.cost import PriceTable, worst_case_tokens
from pytest_llmtune.llm.pacing import Pacer
from pytest_llmtune.search.budget import Spending

__all__ = ["BudgetGate", "Paced"]


class BudgetGate(httpx2.BaseTransport):
    """The optimization budget's gate, where a request is known to go to the network: `spending()` (the current
    target's) admits it with its worst case, its prompt and n x max_tokens, priced."""

    def __init__(self, network: httpx2.BaseTransport, spending: Callable[[], Spending],
                 prices: Callable[[], PriceTable]) -> None:
        self.network, self.spending, self.prices = network, spending, prices

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        spending = self.spending()
        budget, worst = spending.budget, None
        if budget is not None:
            body = request_body(request)
            bound = worst_case_tokens(body)
            if bound is not None:
                worst = budget.measure(sum(bound), self.prices().cost(str(body.get("model", "")), *bound))
        spending.admit(worst)
        return self.network.handle_request(request)

    def close(self) -> None:
        self.network.close()


class Paced(httpx2.BaseTransport):
    """The pacer around one live request, counting what OpenAI counts toward its tokens per minute (the prompt's
    bytes over four, and n x max_tokens); its status and headers tell the pacer of a 429."""

    def __init__(self, network: httpx2.BaseTransport, pacer: Pacer) -> None:
        self.network, self.pacer = network, pacer

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        bound = worst_case_tokens(request_body(request))
        with self.pacer.call(bound[0] // 4 + bound[1] if bound else 0) as report:
            response = self.network.handle_request(request)
            response.read()  # the slot is held until the answer is in
            report(response.status_code, dict(response.headers))
        return response

    def close(self) -> None:
        self.network.close()
