"""Pacing live requests: requests- and tokens-per-minute limits, and concurrency that adapts to 429s (AIMD).

Every live request passes `Pacer.call`: it waits while the endpoint asked the whole run to pause (a 429's
`retry-after`, `retry-after-ms` or `x-ratelimit-reset-*`), while the minute's requests or tokens are used up
(`rpm`, `tpm`: a sliding window of the last 60 s), and while as many requests are in flight as the current
concurrency allows. A 429 halves that concurrency (multiplicative decrease) and pauses every request until the
endpoint's reset; each run of successes as long as the concurrency raises it by one again (additive increase),
up to `--llm-concurrency`. So at a provider's limit the whole tune slows down instead of every slot hitting it.
Under pytest-xdist the workers on one host share each endpoint's pause through a file (`PauseFile`).
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

__all__ = ["Pacer", "Pacers", "PauseFile", "reset_seconds"]

WINDOW = 60.0  # seconds: what "per minute" counts over
EDGE = 0.25  # seconds more: a server counts a request when it arrives, after this side sent it
DEFAULT_PAUSE = 1.0  # seconds to pause after a 429 that says nothing of when to retry


def reset_seconds(headers: Mapping[str, str]) -> float | None:
    """When the endpoint says to retry: `retry-after-ms`, `retry-after` (seconds), or the later of OpenAI's
    `x-ratelimit-reset-requests` / `-tokens` ("1s", "6m0s", "250ms")."""
    lowered = {key.lower(): value for key, value in headers.items()}
    if "retry-after-ms" in lowered:
        with contextlib.suppress(ValueError):
            return float(lowered["retry-after-ms"]) / 1000
    if "retry-after" in lowered:
        with contextlib.suppress(ValueError):
            return float(lowered["retry-after"])
    resets = [_duration(lowered[key]) for key in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")
              if key in lowered]
    found = [seconds for seconds in resets if seconds is not None]
    return max(found) if found else None


def _duration(text: str) -> float | None:
    parts = re.findall(r"([\d.]+)(ms|h|m|s)", text.strip())
    if not parts:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


class PauseFile:
    """An endpoint's pause after a 429, shared by the processes of one host (pytest-xdist's workers): the wall-clock
    time until which to pause, in a file each pacer reads before a request and writes on a 429."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[float, float] = (-1.0, 0.0)  # (the file's mtime, the time it said): read on change only

    @classmethod
    def for_lane(cls, directory: Path, lane: str) -> PauseFile:
        return cls(directory / hashlib.sha256(lane.encode()).hexdigest()[:16])

    def remaining(self) -> float:
        """Seconds the endpoint asked every process to pause for, from now (0: none)."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return 0.0
        if mtime != self._seen[0]:
            try:
                self._seen = (mtime, float(self.path.read_text(encoding="utf-8") or 0))
            except (OSError, ValueError):
                return 0.0
        return max(0.0, self._seen[1] - time.time())

    def pause(self, seconds: float) -> None:
        until = time.time() + seconds
        if until <= time.time() + self.remaining():
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        with contextlib.suppress(OSError):  # a lost pause is a slower recovery, never a wrong answer
            tmp.write_text(repr(until), encoding="utf-8")
            os.replace(tmp, self.path)


class Pacer:
    """Thread-safe; `clock` and `sleep` are injectable for tests. `shared`: the pause other processes share."""

    def __init__(self, concurrency: int, *, rpm: int = 0, tpm: int = 0,
                 clock: Callable[[], float] = time.monotonic, shared: PauseFile | None = None) -> None:
        self.shared = shared
        self.most = concurrency
        self.limit = concurrency  # the adaptive concurrency
        self.rpm, self.tpm, self.clock = rpm, tpm, clock
        self.in_flight = 0
        self.paused_until = 0.0
        self.throttles = 0  # 429s seen
        self.lowest = concurrency  # the lowest the concurrency went
        self._successes = 0
        self._sent: collections.deque[tuple[float, int]] = collections.deque()  # (when, tokens) in the window
        self._cond = threading.Condition()

    @contextlib.contextmanager
    def call(self, tokens: int = 0) -> Iterator[Callable[[int, Mapping[str, str]], None]]:
        """Around one live request of about `tokens` tokens; report its status and headers with the yielded
        function."""
        self._enter(tokens)
        outcome: list[tuple[int, Mapping[str, str]]] = []
        try:
            yield lambda status, headers: outcome.append((status, headers))
        finally:
            self._leave(outcome[0] if outcome else None)

    def summary(self) -> str | None:
        """What the endpoint's limits did to the run, for its summary; None when they did nothing."""
        if not self.throttles:
            return None
        return (f"the endpoint answered {self.throttles} 429s (rate limits): concurrency went down to "
                f"{self.lowest} of {self.most} and back to {self.limit}; set llmtune_rpm / llmtune_tpm to pace "
                "requests before they are refused")

    @property
    def throttled(self) -> str | None:
        """Why requests are held back now, in words; None when they are not."""
        with self._cond:
            waiting = self.paused_until - self.clock()
            if waiting > 0:
                return f"throttled: 429, paused {waiting:.0f}s, concurrency {self.limit}/{self.most}"
            if self.limit < self.most:
                return f"throttled: concurrency {self.limit}/{self.most} after {self.throttles} 429s"
            return None

    def _enter(self, tokens: int) -> None:
        with self._cond:
            while (wait := self._wait(tokens)) > 0:
                self._cond.wait(timeout=min(wait, 0.5))
            self.in_flight += 1
            self._sent.append((self.clock(), tokens))

    def _wait(self, tokens: int) -> float:
        """Seconds until a request of `tokens` may go (0: now); an in-flight wait is polled."""
        now = self.clock()
        while self._sent and self._sent[0][0] <= now - WINDOW - EDGE:
            self._sent.popleft()
        waits = [self.paused_until - now, self.shared.remaining() if self.shared is not None else 0.0]
        if self.in_flight >= self.limit:
            waits.append(0.05)
        if self.rpm and len(self._sent) >= self.rpm:
            waits.append(self._sent[0][0] + WINDOW + EDGE - now)
        if self.tpm and self._sent and sum(t for _, t in self._sent) + tokens > self.tpm:
            waits.append(self._sent[0][0] + WINDOW + EDGE - now)
        return max(0.0, *waits)

    def _leave(self, outcome: tuple[int, Mapping[str, str]] | None) -> None:
        with self._cond:
            self.in_flight -= 1
            if outcome is not None and outcome[0] == 429:
                self.throttles += 1
                self.limit = max(1, self.limit // 2)
                self.lowest = min(self.lowest, self.limit)
                self._successes = 0
                pause = reset_seconds(outcome[1]) or DEFAULT_PAUSE
                self.paused_until = max(self.paused_until, self.clock() + pause)
                if self.shared is not None:
                    self.shared.pause(pause)
            elif outcome is not None and outcome[0] < 400:
                self._successes += 1
                if self._successes >= self.limit and self.limit < self.most:
                    self.limit += 1
                    self._successes = 0
            self._cond.notify_all()


class Pacers:
    """One pacer per endpoint: each its own limits, and a 429 slows that endpoint only. `throttled` and `summary`
    speak of all of them."""

    def __init__(self) -> None:
        self.by_name: dict[str, Pacer] = {}
        self._lock = threading.Lock()

    def get(self, name: str, concurrency: int, *, rpm: int = 0, tpm: int = 0,
            shared: PauseFile | None = None) -> Pacer:
        with self._lock:
            if name not in self.by_name:
                self.by_name[name] = Pacer(concurrency, rpm=rpm, tpm=tpm, shared=shared)
            return self.by_name[name]

    @property
    def throttled(self) -> str | None:
        found = [(name, words) for name, pacer in self.by_name.items() if (words := pacer.throttled)]
        if len(self.by_name) == 1:
            return found[0][1] if found else None
        return "; ".join(f"{name}: {words}" for name, words in found) or None

    def summary(self) -> str | None:
        found = [(name, words) for name, pacer in self.by_name.items() if (words := pacer.summary())]
        if len(self.by_name) == 1:
            return found[0][1] if found else None
        return "; ".join(f"{name}: {words}" for name, words in found) or None
