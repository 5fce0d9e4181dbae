"""Requests, tokens and dollars, with new spending and replays counted apart. Pure data: the search core,
the request path and the reports all count with these."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Tally", "Usage"]


@dataclass
class Tally:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0  # dollars

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cost += other.cost


@dataclass
class Usage:
    """Requests, tokens and dollars; live requests (new spending) and replayed ones (free) are counted apart."""

    live: Tally = field(default_factory=Tally)
    replay: Tally = field(default_factory=Tally)
    fresh: int = 0  # responses obtained in this session (sent, or replayed from this session's recordings)

    @property
    def requests(self) -> int:
        return self.live.requests

    @property
    def replayed(self) -> int:
        return self.replay.requests

    @property
    def prompt_tokens(self) -> int:
        return self.live.prompt_tokens + self.replay.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.live.completion_tokens + self.replay.completion_tokens

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost(self) -> float:
        """What these requests cost at list price, whether paid now or replayed."""
        return self.live.cost + self.replay.cost

    def merge(self, other: Usage) -> None:
        self.live.add(other.live)
        self.replay.add(other.replay)
        self.fresh += other.fresh

    def record(self, prompt_tokens: int, completion_tokens: int, cost: float, *, replayed: bool,
               fresh: bool | None = None) -> None:
        """One response; `fresh` defaults to "not replayed"."""
        (self.replay if replayed else self.live).add(Tally(1, prompt_tokens, completion_tokens, cost))
        self.fresh += int(not replayed if fresh is None else fresh)
