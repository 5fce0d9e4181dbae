"""The fixed config of `llm.judge` (llm/judge.py): its model, API and max_tokens, at temperature 0, and its prompts.
Pure: `@llm_eval(judge=...)` is validated here, and the fingerprint of a target's judge is taken from here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.search.space import fingerprint

__all__ = ["COMPLETIONS_STOP", "GRADE_PROMPT", "JUDGE_KEYS", "PAIRWISE_PROMPT", "JudgeConfig", "is_judge_request"]

JUDGE_KEYS = ("model", "api", "max_tokens")
DEFAULT_MAX_TOKENS = 128
COMPLETIONS_STOP = ("\n\n",)  # a completions judge's reply ends at a blank line

GRADE_PROMPT = """You grade an answer against a rubric.

Rubric: {rubric}
{context}{reference}Answer to grade: {answer}

Reply with a grade from 1 (fails the rubric) to {scale} (fully meets it), then a one-sentence reason, as two lines:
Grade: <the number>
Reason: <one sentence>"""

PAIRWISE_PROMPT = """You compare two answers against a rubric.

Rubric: {rubric}
{context}{reference}Answer A: {first}
Answer B: {second}

Reply with the answer that meets the rubric better (A, B, or tie when neither does), then a one-sentence reason,
as two lines:
Winner: <A, B or tie>
Reason: <one sentence>"""


def is_judge_request(body: Mapping[str, Any]) -> bool:
    """Whether a request body is one of `llm.judge`'s (its prompt one of the package's): recorded beside the
    config's requests, it says nothing of a config's size."""
    messages = body.get("messages")
    text = messages[0].get("content", "") if isinstance(messages, list) and messages and isinstance(
        messages[0], Mapping) else body.get("prompt", "")
    return isinstance(text, str) and text.startswith((GRADE_PROMPT[:20], PAIRWISE_PROMPT[:20]))


@dataclass(frozen=True)
class JudgeConfig:
    """The judge's fixed config: the model, its API ("chat" or "completions") and max_tokens; temperature 0."""

    model: str
    api: str = "chat"
    max_tokens: int = DEFAULT_MAX_TOKENS

    @classmethod
    def of(cls, given: str | Mapping[str, Any], where: str = "llm_eval(judge=...)") -> JudgeConfig:
        """From a model name or a dict of `JUDGE_KEYS`; anything else is a ValueError that says what is allowed."""
        if isinstance(given, str):
            given = {"model": given}
        if not isinstance(given, Mapping):
            raise ValueError(f"{where}: got {given!r}; give a model name or a dict with keys "
                             f"{', '.join(JUDGE_KEYS)}, e.g. {{\"model\": \"gpt-4o-mini\"}}")
        if "temperature" in given or "top_p" in given:
            key = "temperature" if "temperature" in given else "top_p"
            raise ValueError(f"{where}: {key}={given[key]!r}, but a judge always runs at temperature 0, so that its "
                             f"grade of an answer is the same each time: leave {key} out")
        unknown = sorted(set(given) - set(JUDGE_KEYS))
        if unknown:
            raise ValueError(f"{where}: the key {unknown[0]!r} is not a judge setting; a judge takes "
                             f"{', '.join(JUDGE_KEYS)} (its temperature is 0, its prompt the package's)")
        model = given.get("model")
        if not isinstance(model, str) or not model:
            raise ValueError(f"{where}: give the judge's \"model\" (a non-empty name), got {model!r}")
        api = given.get("api", "chat")
        if api not in ("chat", "completions"):
            raise ValueError(f"{where}: api={api!r}; use 'chat' or 'completions' (a base model without a chat "
                             "template)")
        most = given.get("max_tokens", DEFAULT_MAX_TOKENS)
        if isinstance(most, bool) or not isinstance(most, int) or most < 8:
            raise ValueError(f"{where}: max_tokens={most!r}; give an int >= 8 (room for a reason and a grade)")
        return cls(model, api, most)

    def fingerprint(self) -> str:
        """What decides a judgement besides its inputs: the config and the prompts' text."""
        return fingerprint({"model": self.model, "api": self.api, "max_tokens": self.max_tokens,
                            "temperature": 0, "prompts": [GRADE_PROMPT, PAIRWISE_PROMPT],
                            "stop": list(COMPLETIONS_STOP) if self.api == "completions" else None})

    def describe(self) -> str:
        return f"{self.model} ({self.api}, max_tokens {self.max_tokens}, temperature 0)"
