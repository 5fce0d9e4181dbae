"""The response cache: vcrpy cassettes, one JSON file per target. The only module that imports vcrpy.

vcrpy patches HTTP clients globally, so one set of patches stays on for the whole session and a
switchboard routes each request to the cassette of the target being evaluated. Requests are matched
on method, path (not host or port), the `X-Llmtune-Sample` header and the canonical JSON body,
through a dict index: replay is linear in the number of recordings, where vcrpy's own `body`
matcher compares every pair. Credentials and other headers are never written; failed responses
(4xx, 5xx) are never recorded.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from vcr.cassette import Cassette
from vcr.patch import PATCHER_NAMES, CassettePatcherBuilder
from vcr.persisters.filesystem import FilesystemPersister
from vcr.record_mode import RecordMode
from vcr.request import Request
from vcr.serialize import serialize

from pytest_llmtune.errors import LlmtuneError, MissingRecordingError
from pytest_llmtune.llm.client import REPLAYED_HEADER, SAMPLE_HEADER
from pytest_llmtune.store.atomic import write_atomically

__all__ = ["CassetteError", "Cassettes", "request_key"]

KEPT_REQUEST_HEADERS = {"content-type", SAMPLE_HEADER.lower()}
KEPT_RESPONSE_HEADERS = {"content-type"}
PATCHED = ("httpx", "httpx2")  # the openai SDK's transports; other HTTP clients in a test are left alone


class CassetteError(LlmtuneError):
    """A cassette file that cannot be read; it is left untouched."""


def request_key(request: Request) -> str:
    body = request.body or b""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except ValueError:
        canonical = body if isinstance(body, bytes) else str(body).encode()
    sample = request.headers.get(SAMPLE_HEADER, "0")
    digest = hashlib.sha256(canonical).hexdigest()
    return f"{request.method} {request.parsed_uri.path} {sample} {digest}"


def _scrub_request(request: Request) -> Request:
    clean = copy.copy(request)
    clean.headers = {k: v for k, v in request.headers.items() if k.lower() in KEPT_REQUEST_HEADERS}
    return clean


def _scrub_response(response: dict[str, Any]) -> dict[str, Any] | None:
    if response["status"]["code"] >= 400:
        return None  # a failure is retried next time, never replayed
    headers = {k: v for k, v in response["headers"].items() if k.lower() in KEPT_RESPONSE_HEADERS}
    return {**response, "headers": headers}


class _JsonSerializer:
    """vcrpy's JSON format with sorted keys, so cassettes diff well."""

    @staticmethod
    def serialize(data: Any) -> str:
        return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"

    @staticmethod
    def deserialize(text: str) -> Any:
        return json.loads(text)


class _AtomicPersister(FilesystemPersister):  # type: ignore[misc]
    """Writes a temp file and renames it: an interrupted save never leaves half a cassette."""

    @classmethod
    def load_cassette(cls, cassette_path: Any, serializer: Any) -> Any:
        # vcrpy treats a file it cannot decode as empty, and recording would then overwrite it
        try:
            Path(cassette_path).read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            raise ValueError(f"not UTF-8: {error}") from None
        except FileNotFoundError:
            pass
        return super().load_cassette(cassette_path, serializer)

    @staticmethod
    def save_cassette(cassette_path: Any, cassette_dict: Any, serializer: Any) -> None:
        write_atomically(Path(cassette_path), serialize(cassette_dict, serializer))


class _IndexedCassette(Cassette):  # type: ignore[misc]
    """A cassette with a dict index on `request_key`, safe to record into from many threads."""

    def __init__(self, **kwargs: Any) -> None:
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()
        super().__init__(**kwargs)

    def append(self, request: Request, raw_response: dict[str, Any]) -> None:
        response = _scrub_response(raw_response)
        if response is None:
            return
        request = _scrub_request(request)
        key = request_key(request)
        with self._lock:
            if key in self._index:
                return
            self._index[key] = len(self.data)
            self.data.append((request, response))
            self.dirty = True

    def can_play_response_for(self, request: Request) -> bool:
        if request_key(request) in self._index:
            return True
        if self.write_protected:
            raise MissingRecordingError(
                f"no recording of {request.method} {request.parsed_uri.path} in {self._path}.\n"
                "Record the missing responses with: pytest --llm-test --llm-record "
                "(calls the endpoint; needs its URL and key)"
            )
        return False

    def play_response(self, request: Request) -> dict[str, Any]:
        response = self.data[self._index[request_key(request)]][1]
        return {**response, "headers": {**response["headers"], REPLAYED_HEADER: ["1"]}}

    def _as_dict(self) -> dict[str, Any]:
        pairs = sorted(self.data, key=lambda pair: request_key(pair[0]))
        # vcrpy's serializer turns bodies to str in place: hand it copies, keep bytes for replay
        return {"requests": [req for req, _ in pairs],
                "responses": [{**resp, "body": dict(resp["body"])} for _, resp in pairs]}

    def save(self) -> None:
        with self._lock:
            if self.dirty:
                self._save()


class _Switchboard:
    """What vcrpy's patches talk to: the cassette of the target being evaluated, or nothing."""

    custom_patches = ()
    skip_patchers = tuple(name for name in PATCHER_NAMES if name not in PATCHED)
    _path = "pytest-llmtune"

    def __init__(self, before_live: Callable[[], None]) -> None:
        self.current: _IndexedCassette | None = None
        self.before_live = before_live

    @property
    def write_protected(self) -> bool:
        return self.current is not None and self.current.write_protected

    def can_play_response_for(self, request: Request) -> bool:
        if self.current is None:
            return False
        if self.current.can_play_response_for(request):
            return True
        self.before_live()  # e.g. the optimization budget's gate: it may refuse to send
        return False

    def filter_request(self, request: Request) -> Request:
        return request

    def play_response(self, request: Request) -> Any:
        assert self.current is not None
        return self.current.play_response(request)

    def append(self, request: Request, response: dict[str, Any]) -> None:
        if self.current is not None:
            self.current.append(request, response)


class Cassettes:
    """One cassette per target under `directory`; `record=False` replays only and never calls out."""

    def __init__(self, directory: Path, *, record: bool, before_live: Callable[[], None] = lambda: None) -> None:
        self.directory = directory
        self.record_mode = RecordMode.NEW_EPISODES if record else RecordMode.NONE
        self._cassettes: dict[str, _IndexedCassette] = {}
        self._switchboard = _Switchboard(before_live)
        self._patches = contextlib.ExitStack()

    def path_for(self, target: str) -> Path:
        module, _, function = target.partition("::")
        return self.directory / module.removesuffix(".py") / f"{function or 'test'}.json"

    def start(self) -> None:
        for patcher in CassettePatcherBuilder(self._switchboard).build():
            self._patches.enter_context(patcher)

    def stop(self) -> None:
        try:
            self.save()
        finally:
            self._patches.close()

    @contextlib.contextmanager
    def use(self, target: str) -> Iterator[None]:
        """Route the requests made inside to `target`'s cassette."""
        previous = self._switchboard.current
        self._switchboard.current = self._load(target)
        try:
            yield
        finally:
            self._switchboard.current = previous

    def _load(self, target: str) -> _IndexedCassette:
        if target not in self._cassettes:
            path = self.path_for(target)
            try:
                cassette = _IndexedCassette.load(
                    path=str(path), serializer=_JsonSerializer, persister=_AtomicPersister,
                    record_mode=self.record_mode, allow_playback_repeats=True,
                )
            except (ValueError, KeyError, TypeError) as error:
                raise CassetteError(
                    f"{path} is not a readable cassette ({error}). It was left as it is: restore it with "
                    f"`git checkout -- {path}`, or delete it to record its responses again."
                ) from None
            self._cassettes[target] = cassette
        return self._cassettes[target]

    def save(self) -> None:
        for cassette in self._cassettes.values():
            cassette.save()

    def recordings(self, target: str) -> int:
        return len(self._load(target).data)

