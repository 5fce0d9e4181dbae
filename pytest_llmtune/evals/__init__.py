"""Ready evaluation helpers for `@llm_eval` tests: run generated code safely, compare math answers, and check
open-ended text (exact match, contains, regex, JSON and its schema, similarity, ROUGE). The LLM judge is
`llm.judge(rubric, answer, ...)` on the `llm` fixture; its results are the `Judgement` and `Preference` here.

    from pytest_llmtune.evals import check_program, extract_code, math_score, rouge, json_score
"""

from pytest_llmtune.evals.code import (
    CodeChoice,
    CodeResult,
    Status,
    check_program,
    choose,
    extract_code,
    pass_at_k,
    run_code,
)
from pytest_llmtune.evals.containment import Isolation, isolation
from pytest_llmtune.evals.math import VoteResult, extract_answer, is_equiv, math_score, normalize, vote
from pytest_llmtune.evals.structured import json_score, parse_json
from pytest_llmtune.evals.text import contains, exact_match, matches, normalize_text, rouge, similarity
from pytest_llmtune.llm.judge import Judgement, Preference, Ungraded

__all__ = [
    "CodeChoice",
    "CodeResult",
    "Isolation",
    "Judgement",
    "Preference",
    "Status",
    "Ungraded",
    "VoteResult",
    "check_program",
    "choose",
    "contains",
    "exact_match",
    "extract_answer",
    "extract_code",
    "is_equiv",
    "isolation",
    "json_score",
    "matches",
    "math_score",
    "normalize",
    "normalize_text",
    "parse_json",
    "pass_at_k",
    "rouge",
    "run_code",
    "similarity",
    "vote",
]
