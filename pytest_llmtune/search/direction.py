"""Which way is better: a metric to maximise or to minimise. The sign lives here and nowhere else."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MODES", "Direction"]

MODES = ("max", "min")


@dataclass(frozen=True)
class Direction:
    mode: str  # "max" or "min", as `@llm_eval(mode=...)` says

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"The value of `mode` is {self.mode!r}, but must be 'max' or 'min'")

    @property
    def sign(self) -> int:
        """+1 when higher is better, -1 when lower is: `sign * score` is higher for the better score."""
        return 1 if self.mode == "max" else -1

    def ahead(self, score: float) -> float:
        """A sort key that puts the better scores first (ascending)."""
        return -self.sign * score

    def beats(self, score: float, reference: float, tolerance: float = 0.0) -> bool:
        """Whether `score` is no worse than `reference` less `tolerance`."""
        return self.sign * (score - reference) >= -tolerance - 1e-12

    def gain(self, new: float, old: float) -> float:
        """How much better `new` is than `old` (negative: worse)."""
        return self.sign * (new - old)
