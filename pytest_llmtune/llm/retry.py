"""Retries for `create`: exponential backoff with jitter that honours Retry-After, within a time limit."""

from __future__ import annotations

import email.utils
import itertools
import random
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import openai

__all__ = ["RetryFailed", "explain", "parse_retry_after", "with_retries"]

DEFAULT_RETRY_TIMEOUT = 60.0
FIRST_BACKOFF, MAX_BACKOFF = 0.25, 8.0  # seconds; doubled per attempt, then jittered down by up to half


class RetryFailed(Exception):
    """One alternative failed for good: `reason` says why, `error` is what the SDK raised."""

    def __init__(self, reason: str, cause: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason, self.cause = reason, cause


def with_retries(send: Callable[[float], Any], config: Mapping[str, Any]) -> Any:
    """`send(timeout)` until it answers, retrying 429, 5xx and connection errors within `retry_timeout` seconds."""
    import openai

    limit = float(config.get("retry_timeout", DEFAULT_RETRY_TIMEOUT))
    start = time.monotonic()
    for attempt in itertools.count(1):
        remaining = max(0.01, limit - (time.monotonic() - start))  # a sleep may overrun: never a negative timeout
        try:
            return send(min(remaining, float(config.get("timeout", remaining))))
        except openai.OpenAIError as error:
            wait = retry_wait(error, attempt)
            if wait is None:
                raise RetryFailed(f"{explain(error)} (not retried)", error) from error
            elapsed = time.monotonic() - start
            if elapsed + wait >= limit:
                raise RetryFailed(f"{explain(error)}; gave up after {attempt} attempt(s) in {elapsed:.1f} s: the next "
                              f"would start past retry_timeout={limit:g} s", error) from error
            time.sleep(wait)
    raise AssertionError("unreachable")  # pragma: no cover


def retry_wait(error: openai.OpenAIError, attempt: int) -> float | None:
    """Seconds to wait before the next attempt; None when this error is not worth retrying."""
    import openai

    if isinstance(error, openai.APIStatusError):
        if error.status_code != 429 and error.status_code < 500:
            return None
        after = parse_retry_after(error.response.headers.get("retry-after"))
        if after is not None:
            return after
    elif not isinstance(error, openai.APIConnectionError):
        return None
    return min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header in seconds from `now`: delay-seconds or an HTTP-date; None if absent or unreadable."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def explain(error: openai.OpenAIError) -> str:
    status = getattr(error, "status_code", None)
    return f"HTTP {status}: {error}" if status is not None else f"{type(error).__name__}: {error}"
