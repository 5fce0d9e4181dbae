"""A gate's verdict in words: the score against its lock and threshold, what decided, and what to run; and its
junit properties. Pure text from the core's `Judgement`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.records import Verdict
from pytest_llmtune.search.drift import Drift
from pytest_llmtune.search.evaluation import EvaluationError
from pytest_llmtune.search.judge import LOWER, THRESHOLD, WORSE, Judgement
from pytest_llmtune.search.spec import EvalSpec

__all__ = ["Gate", "gate_error_words", "judgement_words", "worse_words"]


@dataclass(frozen=True)
class Gate:
    """A gated target's score against its lock and threshold."""

    metric: str
    score: float
    interval: tuple[float, float] | None
    instances: int
    misses: int  # instances whose assertion failed (with a metric dict, the metric's value is no miss)
    others: Mapping[str, float]
    threshold: float | None
    locked: float
    drift: Drift
    cost: float
    tokens: int
    how: str = ""  # "live", "re-scored" or "" (replayed)
    repeat: int = 1  # samples per instance
    passed: bool = True

    def words(self) -> str:
        bounds = f" [95% CI {self.interval[0]:.2f}, {self.interval[1]:.2f}]" if self.interval else ""
        others = "".join(f", {name} {value:.3f}" for name, value in sorted(self.others.items()))
        samples = f" x {self.repeat} samples" if self.repeat > 1 else ""
        how = f"{self.how} " if self.how else ""
        return (f"{how}{self.metric} {self.score:.3f}{bounds} on {self.instances} instances{samples} ({self.misses} "
                f"failed an assertion{others}); locked {self.locked:.3f}; {self.drift.words()}")

    @classmethod
    def of(cls, judgement: Judgement, spec: EvalSpec, locked: float, *, repeat: int = 1, how: str = "") -> Gate:
        return cls(metric=spec.metric_name, score=judgement.score, interval=judgement.interval,
                   instances=judgement.instances, misses=judgement.misses, others=judgement.others,
                   threshold=spec.threshold, locked=locked, drift=judgement.drift, cost=judgement.cost,
                   tokens=judgement.tokens, how=how, repeat=repeat, passed=judgement.passed)

    def verdict(self, judgement: str) -> Verdict:
        return Verdict("passed" if self.passed else "failed", f"{self.words()}: {judgement}", self.properties())

    def properties(self) -> tuple[tuple[str, Any], ...]:
        """junit properties of the verdict."""
        properties: list[tuple[str, Any]] = [("llmtune_metric", self.metric), ("llmtune_score", self.score)]
        if self.interval:
            properties.append(("llmtune_interval", f"{self.interval[0]:.6f} {self.interval[1]:.6f}"))
        if self.threshold is not None:
            properties.append(("llmtune_threshold", self.threshold))
        properties += [("llmtune_locked_score", self.locked), ("llmtune_difference", round(self.drift.difference, 6)),
                       ("llmtune_p_value", round(self.drift.p_value, 6)), ("llmtune_alpha", self.drift.alpha),
                       *([("llmtune_bound", round(self.drift.bound, 6))] if self.drift.bound is not None else []),
                       ("llmtune_margin", self.drift.margin), ("llmtune_replayed", self.drift.replayed),
                       ("llmtune_changed", " ".join(self.drift.changed)), ("llmtune_instances", self.instances),
                       ("llmtune_misses", self.misses), ("llmtune_tokens", self.tokens),
                       ("llmtune_cost_usd", round(self.cost, 8))]
        properties += [(f"llmtune_metric_{name}", round(value, 6)) for name, value in sorted(self.others.items())]
        return tuple(properties)


def judgement_words(judgement: Judgement, spec: EvalSpec, nodeid: str, *, live: bool, rescoring: bool,
                    lockfile: str, note: str | None = None) -> str:
    """What decided the gate's verdict, in words, and what to run."""
    decided, noted = judgement.decided, f"; {note}" if note else ""
    if decided == THRESHOLD:
        which = "the worse bound of its 95% interval" if judgement.by_bound else "the score"
        return f"{which} is below the threshold {spec.threshold}: improve it and re-tune, or lower the threshold"
    if decided == WORSE:
        return worse_words(judgement.drift, nodeid, live=live, rescoring=rescoring)
    if decided == LOWER:
        return (f"the re-score is lower than the lock ({judgement.score:.3f} against {judgement.locked:.3f}), "
                "and a re-score never lowers a lock unasked: the lock is left as it was. To lock the lower score, "
                f"run `pytest --llm-test --llm-record --llm-accept-lower {nodeid}`; or re-tune: `pytest --llm-tune "
                f"{nodeid}`")
    if not rescoring:
        return "ok" + noted
    asked = " (lower: --llm-accept-lower)" if judgement.lower else ""
    return f"re-scored lock written to {lockfile}{asked}; commit it with the recordings{noted}"


def worse_words(change: Drift, nodeid: str, *, live: bool, rescoring: bool) -> str:
    """Why the gate fails a target worse than its lock, and what to run."""
    retune = f"re-tune with `pytest --llm-tune {nodeid}`"
    accept = (f"; to lock the lower score anyway, `pytest --llm-test --llm-record --llm-accept-lower {nodeid}`"
              if rescoring else "")
    kept = "the lock is left as it was; " if rescoring else ""
    if change.code_worse:
        return ("the same recorded responses score lower than the lock: the code changed (the test, a helper it "
                f"uses, or an installed package), not the model; {kept}find the change{accept}")
    if live:
        return f"significantly worse than the lock: the model behind the endpoint may have changed; {retune}"
    return f"significantly worse than the lock on new samples: {kept}find the change, or {retune}{accept}"


def gate_error_words(name: str, errors: Sequence[EvaluationError], instances: int) -> str:
    """Instances with no score: the gate cannot judge the target. The first error is shown, with its traceback."""
    first = errors[0]
    lines = [f"{len(errors)} of {instances} instances of {name} produced no score; the first, {first.where}: "
             f"{first.signature}"]
    if first.detail:
        lines.append(first.detail.rstrip())
    return "\n".join(lines)
