"""Ready evaluation helpers for `@llm_eval` tests: run generated code safely, and compare math answers.

    from pytest_llmtune.evals import check_program, extract_code, math_score
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

__all__ = [
    "CodeChoice",
    "CodeResult",
    "Isolation",
    "Status",
    "VoteResult",
    "check_program",
    "choose",
    "extract_answer",
    "extract_code",
    "is_equiv",
    "isolation",
    "math_score",
    "normalize",
    "pass_at_k",
    "run_code",
    "vote",
]
