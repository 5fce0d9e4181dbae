"""The lockfile: per target, the winning config, its score and the fingerprints that say when it is stale.

JSON with sorted keys, written atomically, and not rewritten when nothing changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.store.atomic import write_atomically

__all__ = ["LOCK_VERSION", "SCORE_DIGITS", "LockfileError", "read", "stale_reasons", "write_target"]

LOCK_VERSION = 1
SCORE_DIGITS = 6  # scores are locked, and compared, at this precision
FINGERPRINTS = {"space": "its search space", "instances": "its instances", "source": "its test source"}


class LockfileError(LlmtuneError):
    """A lockfile that cannot be used; it is left untouched."""


def read(path: Path) -> dict[str, dict[str, Any]]:
    """The targets of the lockfile at `path`; none if it does not exist."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    fix = f"restore it with `git checkout -- {path.name}` or delete it and run `pytest --llm-tune`"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise LockfileError(f"{path} is not valid JSON ({error}); {fix}") from None
    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
        raise LockfileError(f"{path} has no \"targets\" table; {fix}")
    if data.get("version") != LOCK_VERSION:
        raise LockfileError(
            f"{path} has version {data.get('version')!r}, this pytest-llmtune reads version {LOCK_VERSION}; {fix}"
        )
    targets: dict[str, dict[str, Any]] = data["targets"]
    return targets


def write_target(path: Path, name: str, entry: Mapping[str, Any]) -> bool:
    """Put `entry` under `name`, keeping the other targets; False if the file already said exactly this."""
    targets = read(path)
    targets[name] = dict(entry)
    text = json.dumps({"version": LOCK_VERSION, "targets": targets}, indent=2, sort_keys=True) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    write_atomically(path, text)
    return True


def stale_reasons(entry: Mapping[str, Any], fingerprints: Mapping[str, str]) -> list[str]:
    """What changed since the target was locked, in words; empty when the lock still holds."""
    locked = entry.get("fingerprints", {})
    return [f"{words} changed" for key, words in FINGERPRINTS.items() if locked.get(key) != fingerprints.get(key)]
