"""Prices: dollars per 1K input and output tokens, built in for OpenAI's models, overridable per project and call."""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["MESSAGE_OVERHEAD", "PRICES", "PRICES_DATE", "PriceTable", "UnknownPriceWarning", "parse_price_lines",
           "unknown_price_words", "worst_case_tokens"]

# OpenAI's list prices on PRICES_DATE (https://openai.com/api/pricing), dollars per 1K tokens (input, output).
# Prices change: override them with the ini llmtune_prices, or create(price=...).
PRICES_DATE = "2025-08-07"
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (0.00125, 0.01),
    "gpt-5-mini": (0.00025, 0.002),
    "gpt-5-nano": (0.00005, 0.0004),
    "gpt-4.1": (0.002, 0.008),
    "gpt-4.1-mini": (0.0004, 0.0016),
    "gpt-4.1-nano": (0.0001, 0.0004),
    "gpt-4o": (0.0025, 0.01),
    "gpt-4o-mini": (0.00015, 0.0006),
    "o1": (0.015, 0.06),
    "o3": (0.002, 0.008),
    "o3-mini": (0.0011, 0.0044),
    "o4-mini": (0.0011, 0.0044),
    "gpt-4-turbo": (0.01, 0.03),
    "gpt-4": (0.03, 0.06),
    "gpt-3.5-turbo": (0.0005, 0.0015),
    "gpt-3.5-turbo-instruct": (0.0015, 0.002),
    "davinci-002": (0.002, 0.002),
    "babbage-002": (0.0004, 0.0004),
    "smollm2": (0.0, 0.0),  # the local model (--llm-local): free
}


class UnknownPriceWarning(UserWarning):
    """A model without a price: its cost counts as 0."""


@dataclass
class PriceTable:
    prices: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(PRICES))
    warn: bool = True  # False where the caller reports `unknown` itself (the pytest modes, in their summary)
    unknown: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def default(cls) -> PriceTable:
        return cls()

    def with_prices(self, overrides: Mapping[str, tuple[float, float]], *, warn: bool = True) -> PriceTable:
        return PriceTable({**self.prices, **overrides}, warn=warn)

    def price(self, model: str) -> tuple[float, float] | None:
        """The model's price; a dated snapshot (gpt-4o-mini-2024-07-18) takes its family's (gpt-4o-mini)."""
        if model in self.prices:
            return self.prices[model]
        families = [name for name in self.prices if model.startswith(name + "-")]
        return self.prices[max(families, key=len)] if families else None

    def cost(self, model: str, prompt_tokens: int, completion_tokens: int) -> float:
        """Dollars; an unknown model costs 0, with one warning that says how to set its price."""
        price = self.price(model)
        if price is None:
            self._warn_once(model)
            return 0.0
        return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1000

    def _warn_once(self, model: str) -> None:
        with self._lock:
            if model in self.unknown:
                return
            self.unknown.add(model)
        if self.warn:
            warnings.warn(UnknownPriceWarning(unknown_price_words(model)), stacklevel=3)


MESSAGE_OVERHEAD = 8  # tokens a chat message costs beyond its text (role and separators), at most


def worst_case_tokens(body: Mapping[str, Any]) -> tuple[int, int] | None:
    """A request's most prompt and completion tokens: a token covers at least one byte of text (byte-level BPE),
    so the prompt's UTF-8 bytes bound its tokens; the completion is n x max_tokens. None without max_tokens: no
    bound."""
    most = body.get("max_completion_tokens", body.get("max_tokens"))
    if not isinstance(most, int):
        return None
    n = body.get("n", 1) if isinstance(body.get("n", 1), int) else 1
    messages = body.get("messages")
    if isinstance(messages, list):
        prompt = sum(len(json.dumps(m.get("content", ""), ensure_ascii=False).encode()) + MESSAGE_OVERHEAD
                     for m in messages if isinstance(m, Mapping))
    else:
        prompt = len(json.dumps(body.get("prompt", ""), ensure_ascii=False).encode())
    return prompt, n * most


def unknown_price_words(model: str) -> str:
    return (f"no price for model {model!r} (the built-in table holds OpenAI's prices of {PRICES_DATE}): its cost "
            f"counts as 0, and a budget in dollars does not see it. Price it in the ini: llmtune_prices = {model} "
            "<dollars per 1K input tokens> <dollars per 1K output tokens>; in create(): price=(input_per_1k, "
            "output_per_1k); or give the budget in tokens")


def parse_price_lines(lines: Iterable[str]) -> dict[str, tuple[float, float]]:
    """`model input_per_1k output_per_1k` lines, as the ini llmtune_prices gives them."""
    prices = {}
    for line in lines:
        parts = line.split()
        if not parts:
            continue
        try:
            model, price_in, price_out = parts
            prices[model] = (float(price_in), float(price_out))
        except ValueError:
            raise ValueError(f"llmtune_prices line {line!r}: write `model input_per_1k output_per_1k`, "
                             "e.g. `my-model 0.0005 0.0015`") from None
    return prices
