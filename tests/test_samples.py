"""Samples are reused across n: n is sent as single-sample requests (as with --llm-local or llmtune_split_n)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai_server import FakeOpenAI

from pytest_llmtune.llm.client import LLM, SEED_SPREAD, Endpoint, sample_requests, seed_offset
from pytest_llmtune.store.cassette import Cassettes

CONFIG = {"model": "m", "prompt": "Review: {r}", "temperature": 0.8}

pytestmark = pytest.mark.filterwarnings("ignore::pytest_llmtune.llm.cost.UnknownPriceWarning")  # model "m"


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def endpoint(server: FakeOpenAI, tmp_path: Path) -> Iterator[Endpoint]:
    cassettes = Cassettes(tmp_path, record=True)
    http_client = openai.DefaultHttpxClient(transport=cassettes.transport())
    endpoint = Endpoint(openai.OpenAI(base_url=server.base_url, api_key="sk-x", http_client=http_client), split_n=True)
    with cassettes.use("test_x.py::test_x"):
        yield endpoint
    cassettes.stop()
    endpoint.close()


def texts(endpoint: Endpoint, n: int, **config: object) -> list[str]:
    return LLM({**CONFIG, "n": n, **config}, endpoint)(r="great fun")


def test_n_is_sent_as_single_sample_requests(endpoint: Endpoint, server: FakeOpenAI) -> None:
    assert len(texts(endpoint, 5)) == 5

    assert server.requests == 5
    assert all("n" not in body for body in server.bodies)
    assert sorted(server.sample_headers) == ["0", "1", "2", "3", "4"]


def test_a_smaller_n_reuses_the_samples_drawn(endpoint: Endpoint, server: FakeOpenAI) -> None:
    five = texts(endpoint, 5)

    three = texts(endpoint, 3)

    assert three == five[:3]
    assert server.requests == 5


def test_a_larger_n_pays_only_for_the_extra_samples(endpoint: Endpoint, server: FakeOpenAI) -> None:
    texts(endpoint, 3)

    seven = texts(endpoint, 7)

    assert len(seven) == 7
    assert server.requests == 7


def test_seeded_samples_get_seed_plus_k_plus_the_requests_own_offset(endpoint: Endpoint, server: FakeOpenAI) -> None:
    texts(endpoint, 3, seed=7)

    offset = seed_offset(server.bodies[0])
    assert 0 < offset < SEED_SPREAD
    assert sorted(body["seed"] for body in server.bodies) == [7 + offset, 8 + offset, 9 + offset]


def test_two_instances_never_share_a_seed(endpoint: Endpoint, server: FakeOpenAI) -> None:
    """One seed for every instance draws the same random numbers for each: their outcomes are not independent."""
    params = {"model": "m", "prompt": "Review: {review}", "temperature": 0.7, "seed": 7, "n": 2}
    first = sample_requests({**params, "prompt": "Review: great"}, split_n=True)[0]
    second = sample_requests({**params, "prompt": "Review: dull"}, split_n=True)[0]
    assert {body["seed"] for body, _ in first}.isdisjoint(body["seed"] for body, _ in second)
    again = sample_requests({**params, "prompt": "Review: great"}, split_n=True)[0]
    assert again == first  # the same request, the same seeds: a tune is repeatable
    shared = sample_requests({**params, "prompt": "Review: dull"}, split_n=True, spread=False)[0]
    assert [body["seed"] for body, _ in shared] == [7, 8]  # an older lock's recordings replay


def test_greedy_decoding_is_requested_once_for_any_n(endpoint: Endpoint, server: FakeOpenAI) -> None:
    result = texts(endpoint, 4, temperature=0)

    assert server.requests == 1
    assert len(result) == 4 and len(set(result)) == 1


def test_token_counts_add_up_over_the_samples(endpoint: Endpoint, server: FakeOpenAI) -> None:
    llm = LLM({**CONFIG, "n": 3}, endpoint)

    llm(r="great fun")

    assert llm.usage.requests == 3
    assert llm.usage.completion_tokens == 3 * len(["positive", "because", "reasons"])
    assert llm.usage.prompt_tokens == 3 * len(["Review:", "great", "fun"])


def test_without_split_n_goes_in_one_request(server: FakeOpenAI, tmp_path: Path) -> None:
    endpoint = Endpoint(openai.OpenAI(base_url=server.base_url, api_key="sk-x"))

    result = texts(endpoint, 3)

    endpoint.close()
    assert len(result) == 3
    assert server.requests == 1 and server.bodies[0]["n"] == 3
