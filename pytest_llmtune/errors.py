"""Errors a user can act on: each message says what happened and what to run next."""

from __future__ import annotations

__all__ = ["LlmtuneError", "MissingRecordingError", "TemplateError"]


class LlmtuneError(Exception):
    """Base of the errors raised by pytest-llmtune."""


class TemplateError(LlmtuneError):
    """A prompt or message template asked for a field the instance does not have."""


class MissingRecordingError(LlmtuneError):
    """A replay-only run met a request that no cassette holds."""
