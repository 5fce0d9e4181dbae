"""What a test body did under one config, seen from a wrapper around the body itself.

An evaluation counts only when the body ran: it returned (a pass, or a metric dict) or failed an assertion (a
miss). A body that never ran (skipped, a setup error, a coroutine nobody awaited) leaves no result, so it can never
be scored as a pass. The wrapper has the body's own kind (a coroutine function for an `async def`), so
pytest-asyncio, anyio or pytest itself treat it exactly as they treat the test.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmtune.records import BodyResult

__all__ = ["MISSES", "BodyResult", "observe"]

MISSES: tuple[type[BaseException], ...] = (AssertionError, pytest.fail.Exception)


def _miss_message(error: BaseException) -> str:
    return str(error).split("\n", 1)[0] or type(error).__name__


def observe(body: Callable[..., Any], record: Callable[[BodyResult], None]) -> Callable[..., Any]:
    """`body`, wrapped to `record` what it did; a failed assertion is recorded and not raised."""
    if inspect.iscoroutinefunction(body):

        @functools.wraps(body)
        async def observed_async(*args: Any, **kwargs: Any) -> None:
            try:
                returned = await body(*args, **kwargs)
            except MISSES as miss:
                record(BodyResult(miss=_miss_message(miss)))
                return
            record(BodyResult(returned=returned))

        return observed_async

    @functools.wraps(body)
    def observed(*args: Any, **kwargs: Any) -> None:
        try:
            returned = body(*args, **kwargs)
        except MISSES as miss:
            record(BodyResult(miss=_miss_message(miss)))
            return
        if inspect.isawaitable(returned):
            raise TypeError(f"the test body returned an awaitable ({type(returned).__name__}) that nothing awaits")
        record(BodyResult(returned=returned))

    return observed
