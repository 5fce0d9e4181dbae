"""What a call of the model answers: `create()` returns it, and a cascade's `accept(context, response)` judges it,
in the tune, the gate and the application alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Response", "TokenUsage"]


@dataclass(frozen=True)
class TokenUsage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Response:
    """One `create` answer. `cost` is 0 when `cached`; `config_index` is None without a config_list; `config`
    is the config that answered, with its `api_key`, if it had one, masked; `accepted`: what `filter_func` said of
    it (None without one; False when it rejected every alternative's answer and this is the last one's)."""

    texts: list[str]
    usage: TokenUsage
    cost: float
    config_index: int | None
    config: dict[str, Any]
    cached: bool
    raw: Any = field(repr=False, compare=False)
    accepted: bool | None = None

    @property
    def text(self) -> str:
        return self.texts[0] if self.texts else ""
