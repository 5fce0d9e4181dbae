"""What a search found: its candidates' configs, their trials ranked, the finalists' held-out scores, and the
winner; and brackets merged into one result."""

from __future__ import annotations

from dataclasses import dataclass, field

from pytest_llmtune.search.evaluation import Config, Failure
from pytest_llmtune.search.halving import Rung, SuccessiveHalving, Trial, significantly_worse
from pytest_llmtune.search.scores import Scores
from pytest_llmtune.usage import Usage

__all__ = ["Confirmation", "HeldOut", "SearchResult", "merge"]


@dataclass(kw_only=True)
class HeldOut(Scores):
    """A finalist on the instances the search never saw; `error` says why some have no result."""

    error: str | None = None


@dataclass(kw_only=True)
class Confirmation(Scores):
    """The winner again on every instance, with samples of its own; `error` says why it is incomplete."""

    error: str | None = None


@dataclass
class SearchResult:
    configs: list[Config]  # candidate number -> its config
    ranked: list[Trial]
    halving: SuccessiveHalving
    usage: Usage = field(default_factory=Usage)  # the configs' own requests
    judge: Usage = field(default_factory=Usage)  # `llm.judge`'s requests, for the same evaluations
    ungraded: int = 0  # judge replies without a grade
    passed: dict[tuple[int, int], bool] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)  # the first error of each candidate that raised one
    stopped: str | None = None  # why the search ended early (the optimization budget)
    held_out: dict[int, HeldOut] = field(default_factory=dict)  # finalist's candidate number -> its held-out scores
    finished: str | None = None  # how the leader was finished after the budget stopped the search
    select: str = "best"  # or "cheapest": the cheapest complete config not significantly worse than the best
    merged: list[list[Rung]] = field(default_factory=list)  # each merged bracket's rungs, in order
    cascades: list[str] = field(default_factory=list)  # what composing cascades evaluated, or why it stopped

    @property
    def brackets(self) -> list[list[Rung]]:
        """Each bracket's rungs (configs x instances), in the order they ran."""
        return self.merged or [self.halving.rungs]

    @property
    def complete(self) -> list[Trial]:
        """The candidates scored on every instance, best first."""
        return [t for t in self.ranked if t.dropped is None and len(t.metrics) == self.halving.n_instances]

    @property
    def winner(self) -> Trial | None:
        """The best candidate scored on every instance; with select="cheapest", the cheapest of those the paired
        comparison with the best on the same instances cannot call worse."""
        complete = self.complete
        if not complete:
            return None
        best = complete[0]
        if self.select != "cheapest":
            return best
        tied = [t for t in complete if not significantly_worse(t, best, self.halving.direction)]
        return min(tied, key=lambda t: (t.cost_per_instance, t.tokens_per_instance, complete.index(t)))


def merge(results: list[SearchResult]) -> SearchResult:
    """Brackets as one result: candidates and trials renumbered, ranked together (all brackets share one plan)."""
    if len(results) == 1:
        return results[0]
    merged = SearchResult([], [], results[0].halving, stopped=results[-1].stopped, select=results[0].select,
                          merged=[rungs for result in results for rungs in result.brackets])
    for result in results:
        offset = len(merged.configs)
        merged.configs += result.configs
        for trial in result.halving.trials:
            trial.index += offset
            merged.ranked.append(trial)
        merged.usage.merge(result.usage)
        merged.judge.merge(result.judge)
        merged.ungraded += result.ungraded
        merged.failures += [Failure(f.candidate + offset, f.instance, f.error) for f in result.failures]
    merged.ranked = merged.halving.rank(merged.ranked)
    return merged
