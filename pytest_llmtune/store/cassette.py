"""The response cache: cassettes in vcrpy's JSON format, one file per target, recorded by an HTTP transport.

The plugin owns the only OpenAI client that tuning and gating use, so it records at the client's own transport
(`http_client=`): no global patching, nothing else in a test is touched, and each target's requests go to its
cassette. A request is matched on method, the API's path (not the endpoint's host, port or base path), the
`X-Llmtune-Sample` header and the canonical JSON body, through a dict index: replay is linear in the number of
recordings. A recording's `uri` is the request's path only: cassettes hold model names, not places. The files keep
vcrpy's cassette format (`{"interactions": [{"request": ..., "response": ...}], "version": 1}`), so vcrpy itself replays
them (tests/test_cassette.py checks it with `vcr.use_cassette`). Credentials and other headers are never written;
failed responses (4xx, 5xx) are never recorded.

A cassette notes which of its recordings the session replayed or recorded: `pytest --llm-test --llm-prune` cuts
it to those (`Cassette.prune`), since a tune keeps every response it paid for.

On a pytest-xdist worker a cassette writes nothing: `Cassettes(send=...)` hands each new recording to the worker's
outbox (session/distribute.py), and the controller journals it (`Cassette.add_many`) and saves the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2

from pytest_llmtune.errors import LlmtuneError, MissingRecordingError
from pytest_llmtune.llm.body import NOT_JSON, parsed_body
from pytest_llmtune.llm.client import API_PATHS, FRESH, REPLAYED_HEADER, SAMPLE_HEADER, Recording
from pytest_llmtune.store.atomic import append_durably, locked_directory, read_json, set_aside, write_atomically

__all__ = ["CassetteError", "Cassettes", "Pruned", "RecordingTransport", "request_key", "size_words"]

FORMAT_VERSION = 1  # vcrpy's cassette format version
KEPT_REQUEST_HEADERS = {"content-type", SAMPLE_HEADER.lower()}
KEPT_RESPONSE_HEADERS = {"content-type"}

Send = Callable[[str, str, dict[str, Any]], None]  # (target, request key, interaction): a worker's new recording


class CassetteError(LlmtuneError):
    """A cassette file that cannot be read; it is left untouched. `damaged`: unreadable (a recording run sets it
    aside); else readable but not by this version (upgrade)."""

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


def request_key(method: str, uri: str, headers: dict[str, Any], body: bytes | str | None) -> str:
    """The key of a recorded request: its method, path, sample number and canonical JSON body."""
    raw = body.encode() if isinstance(body, str) else (body or b"")
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = NOT_JSON
    return _request_key(method, uri, headers, raw, parsed)


def _request_key(method: str, uri: str, headers: Mapping[str, Any], raw: bytes, parsed: Any) -> str:
    canonical = raw if parsed is NOT_JSON else json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()
    sample = next((str(_first(v)) for k, v in headers.items() if k.lower() == SAMPLE_HEADER.lower()), "0")
    return _key(method, urlsplit(uri).path, sample, canonical)


def _key(method: str, path: str, sample: str, canonical: bytes) -> str:
    return f"{method.upper()} {api_path(path)} {sample} {hashlib.sha256(canonical).hexdigest()}"


def api_path(path: str) -> str:
    """The API's own path of a request (`/chat/completions`, `/completions`), whatever the endpoint's base path
    (`/v1`, `/openai/v1`): a recording is matched on the model and the body, not on where the model was served."""
    return next((api for api in API_PATHS.values() if path.endswith(api)), path)  # /chat/completions first


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


class Cassette:
    """One target's recordings: vcrpy-format interactions, indexed by `request_key`, safe to use from threads."""

    def __init__(self, path: Path, send: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.path = path
        self.send = send  # a pytest-xdist worker's: new recordings go to the controller, nothing to a file
        self.interactions: dict[str, dict[str, Any]] = {}
        self.dirty = False
        self.lock = threading.Lock()
        self.used: set[str] = set()  # keys replayed or recorded in this session: what --llm-prune keeps
        self.missing: set[str] = set()  # keys of requests that found no recording (the SDK may retry one)
        self.new: set[str] = set()  # keys recorded in this session: a replay of one is no replay of the lock's

    @classmethod
    def load(cls, path: Path, send: Callable[[str, dict[str, Any]], None] | None = None) -> Cassette:
        """The file's recordings, and those of its journal: responses a run recorded and did not fold into the
        file (it was killed, or is still running in another process)."""
        cassette = cls(path, send)
        with locked_directory(path.parent, create=False):
            cassette.interactions = read_file(path)
            journaled = read_journal(journal_path(path))
        for key, interaction in journaled.items():
            if key not in cassette.interactions:
                cassette.interactions[key] = interaction
                cassette.dirty = True  # the next save folds them into the file
        return cassette

    def find(self, key: str) -> dict[str, Any] | None:
        found = self.interactions.get(key)
        if found is not None:
            with self.lock:
                self.used.add(key)
        return found

    def add(self, key: str, interaction: dict[str, Any]) -> None:
        """A new recording: appended to the journal and fsync'd before the caller uses the response, so a run
        killed at any moment has lost at most the requests in flight."""
        with self.lock:
            self.used.add(key)
            if key in self.interactions:
                return
            self.interactions[key] = interaction
            self.new.add(key)
            if self.send is not None:  # sent before the caller uses the response, as the journal is written
                self.send(key, interaction)
                return
            self.dirty = True
            with locked_directory(self.path.parent):
                append_durably(journal_path(self.path), journal_lines([(key, interaction)]))

    def add_many(self, recorded: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Recordings a pytest-xdist worker sent: journalled (one fsync) before the controller goes on. How many
        were new."""
        with self.lock:
            fresh = [(key, interaction) for key, interaction in dict(recorded).items() if key not in self.interactions]
            if not fresh:
                return 0
            self.interactions.update(fresh)
            self.dirty = True
            with locked_directory(self.path.parent):
                append_durably(journal_path(self.path), journal_lines(fresh))
        return len(fresh)

    def save(self) -> None:
        """Fold the journal into the file: the file's recordings, the journal's (this run's and any other
        process's) and this run's, sorted by request key, written atomically; then the journal goes."""
        with self.lock:
            if not self.dirty or self.send is not None:
                return
            with locked_directory(self.path.parent):
                self.merge(read_file(self.path))
                self.merge(read_journal(journal_path(self.path)))
                write_atomically(self.path, self._text())
                journal_path(self.path).unlink(missing_ok=True)
            self.dirty = False

    def merge(self, interactions: Mapping[str, dict[str, Any]]) -> None:
        for key, interaction in interactions.items():
            self.interactions.setdefault(key, interaction)

    def prune(self) -> Pruned:
        """Cut the file to the recordings this session replayed or recorded, written as `save` writes it.

        Left as it is when a request found no recording (the session did not replay all it needed) or when
        every recording was used.
        """
        self.save()  # first what this session recorded: the size before pruning includes it
        size = self.path.stat().st_size if self.path.exists() else 0
        with self.lock:
            total, missing = len(self.interactions), len(self.missing)
            if missing or len(self.used) == total:
                return Pruned(total, total, size, size, missing)
            self.interactions = {key: self.interactions[key] for key in self.used}
            text = self._text()
            with locked_directory(self.path.parent):
                write_atomically(self.path, text)
        return Pruned(total, len(self.used), size, len(text.encode("utf-8")))

    def _text(self) -> str:
        interactions = [self.interactions[key] for key in sorted(self.interactions)]
        return json.dumps({"interactions": interactions, "version": FORMAT_VERSION}, indent=1, sort_keys=True,
                          ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class Pruned:
    """What `Cassette.prune` did: recordings and file sizes (bytes) before and after; with `missing` requests
    that found no recording, nothing was removed."""

    recordings: int
    kept: int
    size: int
    kept_size: int
    missing: int = 0

    def words(self, shown: Path | str) -> str:
        if self.missing:
            requests = "1 request" if self.missing == 1 else f"{self.missing} requests"
            return (f"not pruned {shown}: {requests} found no recording; record with "
                    "`pytest --llm-test --llm-record --llm-prune`")
        if self.kept == self.recordings:
            return f"not pruned {shown}: the gate replays all {self.recordings:,} recordings"
        return (f"pruned {shown}: {self.recordings:,} -> {self.kept:,} recordings "
                f"({size_words(self.size)} -> {size_words(self.kept_size)})")


def size_words(size: int) -> str:
    """A file size in decimal units, two or three significant digits: 812 B, 52 kB, 1.6 MB."""
    for unit, scale in (("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


def journal_lines(recorded: Sequence[tuple[str, dict[str, Any]]]) -> str:
    return "".join(json.dumps({"key": key, "interaction": interaction}, sort_keys=True, ensure_ascii=False) + "\n"
                   for key, interaction in recorded)


def journal_path(path: Path) -> Path:
    """Where recordings go first, one JSON line each (`.test_x.json.journal` beside `test_x.json`)."""
    return path.with_name(f".{path.name}.journal")


def read_file(path: Path) -> dict[str, dict[str, Any]]:
    """A cassette file's recordings by request key; none when it does not exist. A damaged or unknown file is a
    CassetteError naming the file, what is wrong and what fixes it."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise damaged(path, str(error)) from None
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise CassetteError(f"{path} is in vcrpy's cassette format version {version}; this pytest-llmtune reads "
                            f"version {FORMAT_VERSION}: upgrade with `pip install -U pytest-llmtune`")
    if version != FORMAT_VERSION or not isinstance(data.get("interactions"), list):
        raise damaged(path, 'no "version": 1 and "interactions" list')
    interactions = {}
    for number, interaction in enumerate(data["interactions"]):
        try:
            request = interaction["request"]
            interaction["response"]["status"]["code"]  # noqa: B018 - a response without a status is unreadable
            key = request_key(request["method"], request["uri"], request.get("headers", {}), request["body"])
        except (KeyError, TypeError, AttributeError):
            raise damaged(path, f"interaction {number} lacks its request, or its response's status") from None
        interactions[key] = interaction
    return interactions


def damaged(path: Path, problem: str) -> CassetteError:
    return CassetteError(f"{path} is not a readable cassette ({problem}). It was left as it is: restore it with "
                         f"`git checkout -- {path}`, or run `pytest --llm-tune` (or `--llm-test --llm-record`), "
                         "which keeps it as <name>.corrupt-<time> and records its responses again", damaged=True)


def read_journal(path: Path) -> dict[str, dict[str, Any]]:
    """The journal's recordings; a line that does not parse (the torn last write of a killed run) is skipped."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return {}
    interactions = {}
    for line in lines:
        try:
            entry = json.loads(line)
            interactions[str(entry["key"])] = entry["interaction"]
        except (ValueError, KeyError, TypeError):
            continue
    return interactions


class RecordingTransport(httpx2.BaseTransport):
    """The openai client's transport: replays from the current cassette, or sends (when recording) and records.

    With no cassette in use (`Cassettes.use`), a request goes to `network` (the live layers, then the network).
    """

    def __init__(self, cassettes: Cassettes, network: httpx2.BaseTransport | None = None) -> None:
        self.cassettes = cassettes
        self.network = network or httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        cassette = self.cassettes.current
        if cassette is None:
            return self.network.handle_request(request)
        body = request.read()
        headers = dict(request.headers.items())
        key = _request_key(request.method, str(request.url), headers, body, parsed_body(request))  # parsed once
        found = cassette.find(key)
        if found is not None:
            return _replayed(found["response"], request, fresh=key in cassette.new)
        if not self.cassettes.record:
            with cassette.lock:
                cassette.missing.add(key)
            raise MissingRecordingError(
                f"no recording of {request.method} {request.url.path} in {cassette.path}.\n"
                "Record the missing responses with `pytest --llm-test --llm-record` "
                "(calls the endpoint; needs its URL and key)"
            )
        response = self.network.handle_request(request)  # the live request's layers: llm/layers.py
        content = response.read()
        response.close()
        broken = _not_a_completion(request, response.status_code, content)
        if broken is not None:  # a 502 the SDK retries, and the search reports if it persists; never recorded
            return httpx2.Response(502, json={"error": {"message": broken, "type": "llmtune_broken_answer"}},
                                   request=request)
        if response.status_code < 400:  # a failure is retried next time, never replayed
            cassette.add(key, _interaction(request, headers, body, response, content))
        return httpx2.Response(response.status_code, headers=response.headers, content=content, request=request,
                               extensions=response.extensions)

    def close(self) -> None:
        self.network.close()


def _not_a_completion(request: httpx2.Request, status: int, content: bytes) -> str | None:
    """Why a 200 from a completions endpoint is no answer (not JSON, no choices), or None: such a body is never
    recorded, nor scored as the model's answer."""
    if status >= 400 or not request.url.path.endswith("/completions"):
        return None
    try:
        data = json.loads(content)
    except ValueError:
        return f"{request.url.host} answered 200 with a body that is not JSON ({len(content)} bytes); not recorded"
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list) or not data["choices"]:
        return f"{request.url.host} answered 200 with no choices; not recorded"
    return None


def _interaction(request: httpx2.Request, headers: dict[str, str], body: bytes, response: httpx2.Response,
                 content: bytes) -> dict[str, Any]:
    """One vcrpy interaction; only content-type and the sample number are kept (never a key)."""
    return {
        "request": {
            "body": body.decode("utf-8", errors="replace"),
            "headers": {k: [v] for k, v in headers.items() if k.lower() in KEPT_REQUEST_HEADERS},
            "method": request.method,
            "uri": request.url.path,  # the path only: a cassette holds no host, port, query or URL
        },
        "response": {
            "body": {"string": content.decode("utf-8", errors="replace")},
            "headers": {k: [v] for k, v in response.headers.items() if k.lower() in KEPT_RESPONSE_HEADERS},
            "status": {"code": response.status_code, "message": response.reason_phrase},
        },
    }


def _replayed(recorded: dict[str, Any], request: httpx2.Request, *, fresh: bool) -> httpx2.Response:
    headers = [(k, str(v)) for k, values in recorded.get("headers", {}).items()
               for v in (values if isinstance(values, list) else [values])]
    body = recorded["body"]
    content = body["string"] if isinstance(body, dict) else body
    return httpx2.Response(int(recorded["status"]["code"]),
                           headers=[*headers, (REPLAYED_HEADER, FRESH if fresh else "1")],
                           content=content.encode() if isinstance(content, str) else content, request=request)


class Cassettes:
    """One cassette per target under `directory`; `record=False` replays only and never calls out. With `send` (a
    pytest-xdist worker), new recordings go to `send` and no file is written."""

    def __init__(self, directory: Path, *, record: bool, send: Send | None = None) -> None:
        self.directory = directory
        self.record = record
        self.send = send
        self.current: Cassette | None = None
        self.set_aside: list[str] = []  # damaged cassettes a recording run kept aside, in words
        self._cassettes: dict[str, Cassette] = {}
        self._lock = threading.Lock()

    def transport(self, network: httpx2.BaseTransport | None = None) -> RecordingTransport:
        """The transport to give the openai client (`http_client=httpx2.Client(transport=...)`)."""
        return RecordingTransport(self, network)

    def recorded(self, path: str, sample: int, body: Mapping[str, Any]) -> Recording | None:
        """The recorded response body of a POST of this JSON `body` to `path`, in the cassette in use, if any, and
        whether this session recorded it."""
        cassette = self.current
        if cassette is None:
            return None
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        key = _key("POST", path, str(sample), canonical)
        found = cassette.find(key)
        if found is None or found["response"]["status"]["code"] != 200:
            return None
        recorded = found["response"]["body"]
        text = recorded.get("string") if isinstance(recorded, dict) else recorded
        return Recording(text, key in cassette.new) if isinstance(text, str) else None

    def path_for(self, target: str) -> Path:
        module, _, function = target.partition("::")
        return self.directory / module.removesuffix(".py") / f"{function or 'test'}.json"

    @contextlib.contextmanager
    def use(self, target: str) -> Iterator[None]:
        """Route the requests made inside to `target`'s cassette."""
        previous = self.current
        self.current = self._load(target)
        try:
            yield
        finally:
            self.current = previous

    def _load(self, target: str) -> Cassette:
        with self._lock:
            if target not in self._cassettes:
                self._cassettes[target] = self._read(self.path_for(target), target)
            return self._cassettes[target]

    def _read(self, path: Path, target: str) -> Cassette:
        """The cassette at `path`. A damaged one stops a replay; a recording run (the user asked to record) keeps
        it aside as `<name>.corrupt-<time>` and starts a new one, saying so in `set_aside` (not on a pytest-xdist
        worker, which writes nothing: the message says how)."""
        send = self.send
        try:
            return Cassette.load(path, None if send is None else lambda key, interaction: send(target, key,
                                                                                              interaction))
        except CassetteError as error:
            if send is not None and error.damaged:
                raise CassetteError(f"{error} (a pytest-xdist worker keeps nothing aside: run without -n once)",
                                    damaged=True) from None
            if not (self.record and error.damaged):
                raise
            with locked_directory(path.parent):
                aside = set_aside(path)
            what = str(error).split(" It was left")[0].rstrip(".")
            self.set_aside.append(f"warning: {what}: kept as {aside.name}; its responses are requested again")
            return Cassette.load(path)

    def save(self) -> None:
        """Write what this run recorded. A replay-only run writes nothing: a journal a killed run left is
        replayed from, and folded in by the next run that records."""
        if not self.record:
            return
        for cassette in list(self._cassettes.values()):
            cassette.save()

    def stop(self) -> None:
        self.save()

    def prune(self, target: str) -> Pruned:
        """Cut `target`'s cassette to the recordings this session replayed or recorded (`Cassette.prune`)."""
        return self._load(target).prune()

    def recordings(self, target: str) -> int:
        return len(self._load(target).interactions)

    def add_many(self, target: str, recorded: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """A pytest-xdist worker's recordings for `target`, journalled at once (`Cassette.add_many`)."""
        return self._load(target).add_many(recorded)

    def save_target(self, target: str) -> None:
        self._load(target).save()
