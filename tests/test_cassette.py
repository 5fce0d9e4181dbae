"""Cassettes and the LLM client against the local OpenAI-compatible server: record, replay, never leak."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import openai
import pytest
from openai_server import FakeOpenAI

from conftest import API_KEY
from pytest_llmtune.errors import MissingRecordingError
from pytest_llmtune.llm.client import LLM, Endpoint
from pytest_llmtune.store.cassette import CassetteError, Cassettes

TARGET = "test_reviews.py::test_sentiment"
CONFIG = {"model": "m", "prompt": "Review: {review}", "temperature": 0.9}
REVIEWS = ["great fun", "dull", "a masterpiece"]

pytestmark = pytest.mark.filterwarnings("ignore::pytest_llmtune.llm.cost.UnknownPriceWarning")  # model "m"


def endpoint(server: FakeOpenAI, cassettes: Cassettes) -> Endpoint:
    """A client whose requests go through the cassettes' recording transport, as the plugin's does."""
    http_client = openai.DefaultHttpxClient(transport=cassettes.transport())
    return Endpoint(openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0, http_client=http_client))


@contextmanager
def cassettes_in(directory: Path, *, record: bool) -> Iterator[Cassettes]:
    cassettes = Cassettes(directory, record=record)
    try:
        yield cassettes
    finally:
        cassettes.stop()


def ask(llm: LLM, cassettes: Cassettes, reviews: list[str], target: str = TARGET) -> list[list[str]]:
    with cassettes.use(target):
        return [llm(review=review) for review in reviews]


def record(directory: Path, server: FakeOpenAI, reviews: list[str] = REVIEWS) -> list[list[str]]:
    with cassettes_in(directory, record=True) as cassettes:
        return ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, reviews)


def interactions(path: Path) -> list[dict[str, object]]:
    return json.loads(path.read_text())["interactions"]  # type: ignore[no-any-return]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def test_replay_without_record_makes_no_requests(tmp_path: Path, server: FakeOpenAI) -> None:
    recorded = record(tmp_path, server)
    requests = server.requests

    with cassettes_in(tmp_path, record=False) as cassettes:
        llm = LLM(CONFIG, endpoint(server, cassettes))
        replayed = ask(llm, cassettes, REVIEWS)

    assert replayed == recorded
    assert server.requests == requests == 3
    assert (llm.usage.requests, llm.usage.replayed) == (0, 3)
    assert llm.usage.tokens > 0  # replayed usage still counts tokens


def test_replay_works_after_the_server_moved_to_another_port(tmp_path: Path, server: FakeOpenAI) -> None:
    recorded = record(tmp_path, server)
    moved = FakeOpenAI().start()
    try:
        with cassettes_in(tmp_path, record=False) as cassettes:
            replayed = ask(LLM(CONFIG, endpoint(moved, cassettes)), cassettes, REVIEWS)
    finally:
        moved.stop()

    assert moved.base_url != server.base_url
    assert replayed == recorded
    assert moved.requests == 0


def test_a_request_with_no_recording_raises_with_the_record_hint(tmp_path: Path, server: FakeOpenAI) -> None:
    record(tmp_path, server, ["great fun"])

    with cassettes_in(tmp_path, record=False) as cassettes, pytest.raises(MissingRecordingError) as raised:
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["never recorded"])

    assert "no recording of POST /v1/chat/completions" in str(raised.value)
    assert "pytest --llm-test --llm-record" in str(raised.value)
    assert server.requests == 1


def test_replay_without_any_cassette_makes_no_request(tmp_path: Path, server: FakeOpenAI) -> None:
    with cassettes_in(tmp_path, record=False) as cassettes, pytest.raises(MissingRecordingError):
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"])

    assert server.requests == 0
    assert list(tmp_path.iterdir()) == []


def test_identical_calls_in_one_llm_get_distinct_samples(tmp_path: Path, server: FakeOpenAI) -> None:
    with cassettes_in(tmp_path, record=True) as cassettes:
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun", "great fun"])

    assert server.sample_headers == ["0", "1"]
    assert cassettes.recordings(TARGET) == 2


def test_a_second_llm_replays_the_samples_of_the_first(tmp_path: Path, server: FakeOpenAI) -> None:
    with cassettes_in(tmp_path, record=True) as cassettes:
        second = LLM(CONFIG, endpoint(server, cassettes))
        first_texts = ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun", "great fun"])
        second_texts = ask(second, cassettes, ["great fun", "great fun"])

    assert second_texts == first_texts
    assert server.requests == 2
    assert (second.usage.requests, second.usage.replayed) == (0, 2)


def test_saved_cassette_is_the_same_whatever_the_request_order(tmp_path: Path, server: FakeOpenAI) -> None:
    record(tmp_path / "forward", server, REVIEWS)
    record(tmp_path / "backward", server, REVIEWS[::-1])
    relative = Path("test_reviews", "test_sentiment.json")

    assert (tmp_path / "forward" / relative).read_bytes() == (tmp_path / "backward" / relative).read_bytes()


def test_the_saved_cassette_has_sorted_keys(tmp_path: Path, server: FakeOpenAI) -> None:
    record(tmp_path, server)
    text = Cassettes(tmp_path, record=False).path_for(TARGET).read_text()

    assert text == json.dumps(json.loads(text), indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def test_the_saved_cassette_holds_no_credentials(tmp_path: Path, server: FakeOpenAI) -> None:
    record(tmp_path, server)
    text = Cassettes(tmp_path, record=False).path_for(TARGET).read_text()

    assert server.auth_headers[0] == f"Bearer {API_KEY}"
    assert API_KEY not in text
    assert "authorization" not in text.lower()
    assert "bearer" not in text.lower()


def test_a_save_mid_run_keeps_recordings_replayable(tmp_path: Path, server: FakeOpenAI) -> None:
    with cassettes_in(tmp_path, record=True) as cassettes:
        recorded = ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, REVIEWS)
        cassettes.save()
        replayed = ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, REVIEWS)

    assert replayed == recorded
    assert server.requests == 3


def test_failed_responses_are_not_recorded(tmp_path: Path, server: FakeOpenAI) -> None:
    server.fail_next(1, status=500)

    with cassettes_in(tmp_path, record=True) as cassettes:
        llm = LLM(CONFIG, endpoint(server, cassettes))
        with pytest.raises(openai.InternalServerError):
            ask(llm, cassettes, ["great fun"])
        failed_recordings = cassettes.recordings(TARGET)
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"])  # a fresh LLM: sample 0 again

    assert failed_recordings == 0
    assert server.requests == 2
    saved = interactions(cassettes.path_for(TARGET))
    assert [i["response"]["status"]["code"] for i in saved] == [200]  # type: ignore[index]


def test_concurrent_recording_from_8_threads_loses_nothing(tmp_path: Path, server: FakeOpenAI) -> None:
    reviews = [f"review number {n}" for n in range(32)]

    with (
        cassettes_in(tmp_path, record=True) as cassettes,
        cassettes.use(TARGET),
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        shared = endpoint(server, cassettes)
        recorded = list(pool.map(lambda review: LLM(CONFIG, shared)(review=review), reviews))

    assert server.requests == 32
    assert len(interactions(cassettes.path_for(TARGET))) == 32
    with cassettes_in(tmp_path, record=False) as replay:
        assert ask(LLM(CONFIG, endpoint(server, replay)), replay, reviews) == recorded
    assert server.requests == 32


def test_each_target_gets_its_own_cassette(tmp_path: Path, server: FakeOpenAI) -> None:
    with cassettes_in(tmp_path, record=True) as cassettes:
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"], target="tests/test_a.py::test_x")
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"], target="tests/test_b.py::test_y")

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.json")) == [
        "tests/test_a/test_x.json", "tests/test_b/test_y.json"
    ]
    assert server.requests == 2


def test_a_corrupt_cassette_stops_a_replay_and_is_left_untouched(tmp_path: Path, server: FakeOpenAI) -> None:
    path = Cassettes(tmp_path, record=False).path_for(TARGET)
    path.parent.mkdir(parents=True)
    path.write_text('{"interactions": [')

    with cassettes_in(tmp_path, record=False) as cassettes, pytest.raises(CassetteError) as raised:
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"])

    assert f"{path} is not a readable cassette (not JSON: " in str(raised.value)
    assert f"restore it with `git checkout -- {path}`, or run `pytest --llm-tune`" in str(raised.value)
    assert path.read_text() == '{"interactions": ['
    assert server.requests == 0


def test_a_recording_run_keeps_a_corrupt_cassette_aside_and_records_anew(tmp_path: Path, server: FakeOpenAI) -> None:
    path = Cassettes(tmp_path, record=True).path_for(TARGET)
    path.parent.mkdir(parents=True)
    path.write_text('{"interactions": [')

    with cassettes_in(tmp_path, record=True) as cassettes:
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"])

    [aside] = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-")]
    assert aside.read_text() == '{"interactions": [' and server.requests == 1
    assert len(json.loads(path.read_text())["interactions"]) == 1
    assert cassettes.set_aside == [f"warning: {path} is not a readable cassette (not JSON: Expecting value: line 1 "
                                   f"column 19 (char 18)): kept as {aside.name}; its responses are requested again"]


def test_a_cassette_that_is_not_utf8_raises_and_is_left_untouched(tmp_path: Path, server: FakeOpenAI) -> None:
    path = Cassettes(tmp_path, record=True).path_for(TARGET)
    path.parent.mkdir(parents=True)
    path.write_bytes(b'\xff\xfe{"interactions": [')

    with cassettes_in(tmp_path, record=False) as cassettes, pytest.raises(CassetteError, match="not UTF-8"):
        ask(LLM(CONFIG, endpoint(server, cassettes)), cassettes, ["great fun"])

    assert path.read_bytes() == b'\xff\xfe{"interactions": ['


def test_the_files_are_vcrpy_cassettes_that_vcrpy_replays(tmp_path: Path, server: FakeOpenAI) -> None:
    """The format contract: vcrpy's public `use_cassette` replays what the recording transport wrote."""
    import vcr

    recorded = record(tmp_path, server)
    requests = server.requests
    path = Cassettes(tmp_path, record=False).path_for(TARGET)
    client = openai.OpenAI(base_url=server.base_url, api_key=API_KEY, max_retries=0)

    with vcr.use_cassette(str(path), record_mode="none", match_on=["method", "path", "body"],
                          serializer="json") as cassette:
        replayed = [LLM(CONFIG, Endpoint(client))(review=review) for review in REVIEWS]

    assert replayed == recorded
    assert cassette.play_count == 3
    assert server.requests == requests
