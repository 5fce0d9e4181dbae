"""An OpenAI-compatible HTTP server for the test suite: deterministic, counting, slow or failing on request.

Its "model" answers two kinds of prompts, with errors that depend on the settings, so that tuning
has real signal to find:
- "Review: <text>" -> positive/negative, by a word list;
- "What is A + B?" or "A + B =" -> the sum.
It errs with probability 0.1 + 0.5 * temperature (+ 0.3 without "Examples" in the prompt), drawn
from a hash of the request, the sample header and the choice index: the same request gets the same
answer, a repeated sample a fresh one. `drift` adds to that probability: the model behind the name got worse.
Two families of names make a cascade's landscape: a "small-..." model answers the easy instances as any model does
and says "unsure" on most hard ones (wrong on the rest); a "large-..." model errs little on any.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POSITIVE = {"loved", "great", "fun", "wonderful", "best", "brilliant", "enjoyed", "masterpiece"}


HARD = 0.4  # the share of instances that a "small-" model cannot answer: unsure on most, wrong on the rest
UNSURE = 0.85  # (a "large-" model errs little on any; the other names keep the settings' error model)


def correct_answer(prompt: str) -> str:
    reviews = re.findall(r"Review: ([^\n]*)", prompt)
    if reviews:
        words = set(re.findall(r"[a-z]+", reviews[-1].lower()))
        return "positive" if words & POSITIVE else "negative"
    sums = re.findall(r"What is (\d+) \+ (\d+)", prompt) or re.findall(r"(\d+) \+ (\d+) =", prompt)
    if sums:
        a, b = sums[-1]
        return str(int(a) + int(b))
    return prompt.split()[-1] if prompt.split() else ""


def wrong_answer(answer: str) -> str:
    if answer.isdigit():
        return str(int(answer) + 1)
    return {"positive": "negative", "negative": "positive"}.get(answer, "unsure")


def draw(*parts: Any) -> float:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class Failure:
    """An injected fault: an HTTP error `status`, or a `kind` of broken answer: "malformed" (200, not JSON),
    "no_choices" (200, a completion with no choices), "truncated" (the connection closes mid-body), "reset" (closed
    before any answer), "slow" (answered after `delay` seconds: past a client's timeout)."""

    status: int
    retry_after: float | None = None
    kind: str = "status"
    delay: float = 0.0


@dataclass
class FakeOpenAI:
    """Start with `start()`; `base_url` is what the openai client needs."""

    latency: float = 0.0
    drift: float = 0.0
    requests: int = 0
    bodies: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    auth_headers: list[str] = field(default_factory=list)
    sample_headers: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    rate_limit: int = 0  # requests allowed per `window` seconds (0: none); more get a 429 with retry-after
    window: float = 60.0
    throttled: int = 0  # 429s served
    answered: list[float] = field(default_factory=list)  # when each request was let through (rate-limited runs)
    models: tuple[str, ...] = ()  # the models it serves (others get a 404, as OpenAI answers); empty: any name

    def start(self) -> FakeOpenAI:
        self._lock = threading.Lock()
        self._counted = threading.Condition(self._lock)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def wait_for_requests(self, count: int, timeout: float = 60.0) -> bool:
        """Block until `count` requests arrived (True), or `timeout` seconds passed (False)."""
        with self._counted:
            return self._counted.wait_for(lambda: self.requests >= count, timeout=timeout)

    def fail_next(self, count: int, status: int = 500, retry_after: float | None = None, kind: str = "status",
                  delay: float = 0.0) -> None:
        self.failures.extend(Failure(status, retry_after, kind, delay) for _ in range(count))

    def _over_limit(self) -> dict[str, str] | None:
        """With `rate_limit`: the headers of a 429 when the window is full, else None (and the request counts)."""
        if not self.rate_limit:
            return None
        now = time.monotonic()
        recent = [t for t in self.answered if t > now - self.window]
        if len(recent) >= self.rate_limit:
            wait = recent[0] + self.window - now
            return {"retry-after": f"{wait:.3f}", "x-ratelimit-reset-requests": f"{wait:.3f}s"}
        self.answered.append(now)
        return None

    def respond(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            self.requests += 1
            self._counted.notify_all()
            self.bodies.append(body)
            self.auth_headers.append(headers.get("authorization", ""))
            self.sample_headers.append(headers.get("x-llmtune-sample", "0"))
            failure = self.failures.pop(0) if self.failures else None
            if self.models and body.get("model") not in self.models:
                return 404, {"error": {"message": f"The model `{body.get('model')}` does not exist",
                                       "type": "invalid_request_error", "code": "model_not_found"}}, {}
            limited = self._over_limit()
            if limited is not None:
                self.throttled += 1
                return 429, {"error": {"message": "rate limit", "type": "requests"}}, limited
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency)
        finally:
            with self._lock:
                self.in_flight -= 1
        if failure is not None and failure.kind != "status":
            time.sleep(failure.delay)
            answer = complete(path, body, headers.get("x-llmtune-sample", "0"), self.drift)
            return 200, {**answer, "choices": []} if failure.kind == "no_choices" else answer, {"x-fault": failure.kind}
        if failure is not None:
            extra = {"retry-after": str(failure.retry_after)} if failure.retry_after is not None else {}
            return failure.status, {"error": {"message": f"injected {failure.status}", "type": "server_error"}}, extra
        return 200, complete(path, body, headers.get("x-llmtune-sample", "0"), self.drift), {}


def judgement(prompt: str, model: str) -> str | None:
    """A judge's reply to pytest-llmtune's judge prompts (llm/judge.py), or None for any other prompt: an answer
    meets the rubric when it holds a reference answer's first word. A "mute-" judge never grades; a "first-" judge
    always prefers answer A (position bias)."""
    def field(name: str) -> str:
        found = re.findall(rf"^{name}: (.*)$", prompt, re.MULTILINE)
        return found[-1].lower() if found else ""

    if not prompt.startswith(("You grade an answer", "You compare two answers")):
        return None
    references = [r.split()[0].lower() for r in re.findall(r"^Reference answer: (.*)$", prompt, re.MULTILINE) if r]
    if model.startswith("mute-"):
        return "Reason: it is hard to say.\nI would rather not."
    if prompt.startswith("You grade an answer"):
        meets = any(ref in field("Answer to grade") for ref in references)
        top = re.findall(r"to (\d+) \(fully meets it\)", prompt)  # the scale
        return f"Grade: {top[0] if meets else 1}\nReason: {'it matches' if meets else 'it misses'} the reference."
    if model.startswith("first-"):
        return "Winner: A\nReason: A reads better."
    a, b = (any(ref in field(f"Answer {x}") for ref in references) for x in "AB")
    return f"Winner: {'tie' if a == b else 'A' if a else 'B'}\nReason: by the reference."


def complete(path: str, body: dict[str, Any], sample: str, drift: float = 0.0) -> dict[str, Any]:
    chat = path.endswith("/chat/completions")
    prompt = "\n".join(m["content"] for m in body["messages"]) if chat else body["prompt"]
    judged = judgement(prompt, str(body.get("model", "")))
    if judged is not None:
        return _reply(body, chat, prompt, [judged])
    temperature = body.get("temperature", 1.0)
    p_error = min(0.95, 0.1 + 0.5 * temperature + (0.0 if "Examples" in prompt else 0.3) + drift)
    answer = correct_answer(prompt)
    model = str(body.get("model", ""))
    hard = draw(answer, prompt.split("\n")[-1]) < HARD  # the instance's own difficulty, whatever the config
    if model.startswith("large-"):
        p_error = min(0.95, 0.03 + 0.2 * temperature + drift)
    texts = []
    for index in range(body.get("n", 1)):
        wrong = draw(body, sample, index) < p_error
        unsure = model.startswith("small-") and hard and draw(body, sample, index, "unsure") < UNSURE
        words = ("unsure" if unsure else wrong_answer(answer) if wrong or (hard and model.startswith("small-"))
                 else answer).split() + ["because", "reasons"]
        texts.append(" ".join(words[: body.get("max_tokens", 16)]))
    return _reply(body, chat, prompt, texts)


def _reply(body: dict[str, Any], chat: bool, prompt: str, texts: list[str]) -> dict[str, Any]:
    completion_tokens = sum(len(t.split()) for t in texts)
    prompt_tokens = len(prompt.split())
    choices = [
        {"index": i, "finish_reason": "stop", "message": {"role": "assistant", "content": t}}
        if chat else {"index": i, "finish_reason": "stop", "text": t, "logprobs": None}
        for i, t in enumerate(texts)
    ]
    return {
        "id": "cmpl-fake", "object": "chat.completion" if chat else "text_completion", "created": 0,
        "model": body["model"], "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle's algorithm on, the client's delayed ACK stalls each
        # keep-alive response by ~40 ms, which the benchmarks would count as the plugin's overhead
        disable_nagle_algorithm = True

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]}, {})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length", 0))
            body = json.loads(self.rfile.read(length))
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(*server.respond(self.path, body, headers))

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            fault = headers.pop("x-fault", "")
            data = json.dumps(payload).encode()
            if fault == "malformed":
                data = b'{"id": "cmpl-1", "choices": [{"text": "oops'
            if fault == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if fault == "truncated":
                self.wfile.write(data[: len(data) // 2])
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            pass

    return Handler
