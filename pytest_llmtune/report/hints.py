"""The commands our messages name, as they must be run: with the flag the target's endpoint needs."""

from __future__ import annotations

import re

__all__ = ["with_flags"]

# a command that calls the endpoint: a tune, or a gate that records or runs live (a replay needs no endpoint)
COMMAND = re.compile(r"`pytest (?![^`]*--llm-local)--llm-(?:tune|test(?= --llm-(?:record|live)))"
                     r"(?: --llm-(?:record|live|prune))*")


def with_flags(text: str, flag: str) -> str:
    """Each command `text` names (`pytest --llm-tune ...`), with the flag the target's endpoint needs
    (`--llm-local`): a hint is a command that works as printed."""
    return COMMAND.sub(lambda found: f"{found.group()} {flag}", text) if flag else text
