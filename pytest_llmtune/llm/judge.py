"""`llm.judge(rubric, answer)`: a model grades an answer, through the same request path as the config's own calls.

Its requests go through the session's `Endpoint` (llm/client.py): recorded in the target's cassette and replayed by
the offline gate, settled against the optimization budget, paced, routed to the judge model's endpoint and priced.
The judge's config is fixed (its model, api and max_tokens; temperature 0; the prompts below), never tuned: it is
part of the target's fingerprints, so a changed judge makes the lock stale.

A reply without a grade is never scored as one: it raises `Ungraded`, a failed assertion (a miss), which the
reports show with the judge's reply, and the judge counts it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_llmtune.errors import TemplateError
from pytest_llmtune.search.judge_config import (
    COMPLETIONS_STOP,
    GRADE_PROMPT,
    JUDGE_KEYS,
    PAIRWISE_PROMPT,
    JudgeConfig,
)

if TYPE_CHECKING:
    from pytest_llmtune.llm.client import LLM

__all__ = ["Judge", "Judgement", "Preference", "Ungraded"]

_GRADE = re.compile(r"grade\s*(?:[:=]|is)?\s*\**\s*(\d+)", re.IGNORECASE)
_WINNER = re.compile(r"winner\s*(?:[:=]|is)?\s*\**\s*(?:(?:a\s+)?(tie)|(?:answer\s+)?(a|b))\b", re.IGNORECASE)
_REASON = re.compile(r"reason\s*[:=]\s*(.+)", re.IGNORECASE)


class Ungraded(AssertionError):  # noqa: N818 - a miss, as pytest shows an AssertionError
    """The judge's reply held no grade it was asked for: the instance misses, with the reply in the message."""


@dataclass(frozen=True)
class Judgement:
    """A grade on the 1..scale scale, `score` that grade in [0, 1] ((grade - 1) / (scale - 1)), and the reason."""

    score: float
    grade: int
    scale: int
    reason: str
    reply: str

    def __float__(self) -> float:
        return self.score

    def __bool__(self) -> bool:
        raise TypeError("a Judgement has no truth value (`assert llm.judge(...)` would always pass): assert "
                        "judgement.at_least(threshold), or return judgement.score as a metric")

    def at_least(self, threshold: float) -> Judgement:
        """This judgement, or a failed assertion (a miss) when its score is below `threshold`."""
        __tracebackhide__ = True
        if self.score < threshold:
            raise AssertionError(f"judge {self.score:.2f} < {threshold:.2f} (grade {self.grade} of {self.scale}): "
                                 f"{self.reason or self.reply!r}")
        return self


@dataclass(frozen=True)
class Preference:
    """Which of two answers the judge prefers, asked in both orders: "a", "b", or "tie" when the orders disagree
    (position bias) or either order says tie. `score` is answer a's: 1, 0.5 or 0."""

    winner: str
    replies: tuple[str, str]

    @property
    def score(self) -> float:
        return {"a": 1.0, "b": 0.0}.get(self.winner, 0.5)

    def __bool__(self) -> bool:
        raise TypeError("a Preference has no truth value (`assert llm.judge.pairwise(...)` would always pass): "
                        "assert preference.winner == \"a\", or return preference.score as a metric")

    @property
    def consistent(self) -> bool:
        """Whether both orders named the same answer (or both said tie)."""
        first, second = (_winner(reply) for reply in self.replies)
        return first is not None and first == {"a": "b", "b": "a"}.get(second or "", second)


class Judge:
    """`llm.judge`: grades through the `LLM`'s endpoint; its usage is kept apart from the config's own."""

    def __init__(self, llm: LLM) -> None:
        self.llm = llm

    @property
    def config(self) -> JudgeConfig:
        found = self.llm.judge_config
        if found is None:
            raise TemplateError("llm.judge: no judge model; give the target @llm_eval(judge=\"MODEL\") (or a dict "
                                f"with {', '.join(JUDGE_KEYS)}), or set the ini llmtune_judge_model")
        return found

    def __call__(self, rubric: str, answer: str, *, context: str | None = None,
                 reference: str | Sequence[str] | None = None, scale: int = 5) -> Judgement:
        """Grade `answer` against `rubric` (what a good answer does); `context` is what the answer answers (the
        question, the text summarised), `reference` a known good answer (or several) to compare with."""
        __tracebackhide__ = True
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 2:
            raise ValueError(f"judge(scale={scale!r}): give an int >= 2 (2: fails or meets the rubric)")
        prompt = GRADE_PROMPT.format(rubric=_text(rubric, "rubric"), answer=_text(answer, "answer"), scale=scale,
                                     context=_section("Context", context), reference=_references(reference))
        reply = self._ask(prompt, "Grade:")
        grade = _grade(reply, scale)
        if grade is None:
            self.llm.ungraded += 1
            raise Ungraded(f"the judge ({self.config.model}) gave no grade from 1 to {scale}: {reply!r}; a stronger "
                           "judge model, or a larger judge max_tokens, gives one")
        return Judgement((grade - 1) / (scale - 1), grade, scale, _reason(reply), reply)

    def pairwise(self, rubric: str, a: str, b: str, *, context: str | None = None,
                 reference: str | Sequence[str] | None = None) -> Preference:
        """Which of `a` and `b` meets `rubric` better, asked with a first and with b first: a judge that prefers
        whatever comes first (position bias) gets a tie, not a win."""
        __tracebackhide__ = True
        parts = {"rubric": _text(rubric, "rubric"), "context": _section("Context", context),
                 "reference": _references(reference)}
        a, b = _text(a, "a"), _text(b, "b")
        replies = (self._ask(PAIRWISE_PROMPT.format(first=a, second=b, **parts), "Winner:"),
                   self._ask(PAIRWISE_PROMPT.format(first=b, second=a, **parts), "Winner:"))
        first, second = (_winner(reply) for reply in replies)
        if first is None or second is None:
            self.llm.ungraded += 1
            raise Ungraded(f"the judge ({self.config.model}) named no winner (A, B or tie): "
                           f"{replies[0] if first is None else replies[1]!r}")
        second = {"a": "b", "b": "a"}.get(second, second)  # in the second order, A is b
        return Preference(first if first == second else "tie", replies)

    def _ask(self, prompt: str, label: str) -> str:
        """The judge's reply. A completions judge (a base model) is given the reply's first `label` to continue
        from, and its reply is read with that label before it."""
        config = self.config
        body: dict[str, Any] = {"model": config.model, "max_tokens": config.max_tokens, "temperature": 0}
        if config.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            return self.llm.ask_judge(config.api, dict(sorted(body.items())))
        body["prompt"] = f"{prompt}\n\n{label}"
        body["stop"] = list(COMPLETIONS_STOP)  # a base model runs on into a next example
        return label + self.llm.ask_judge(config.api, dict(sorted(body.items())))


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"judge: {name} must be a str, got {type(value).__name__} {value!r}")
    return value.strip()


def _section(title: str, value: str | None) -> str:
    return "" if value is None else f"{title}: {_text(value, title.lower())}\n"


def _references(reference: str | Sequence[str] | None) -> str:
    if reference is None:
        return ""
    if isinstance(reference, str):
        return f"Reference answer: {reference.strip()}\n"
    shown = [_text(r, "reference") for r in reference]
    return "".join(f"Reference answer: {r}\n" for r in shown)


def _grade(reply: str, scale: int) -> int | None:
    """The first "Grade: N" in the reply (the one asked for; a model that runs on may write more), when N is on the
    scale; a reply that is only a number counts too."""
    found = _GRADE.findall(reply)
    if not found and reply.strip().isdigit():
        found = [reply.strip()]
    if not found:
        return None
    grade = int(found[0])
    return grade if 1 <= grade <= scale else None


def _winner(reply: str) -> str | None:
    found = _WINNER.findall(reply)
    return "".join(found[0]).lower() if found else None


def _reason(reply: str) -> str:
    found = _REASON.search(reply)
    line = found.group(1) if found else reply.strip().split("\n")[0]
    return line.strip()
