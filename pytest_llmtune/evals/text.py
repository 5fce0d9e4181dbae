"""Ready-made checks of open-ended answers: exact match after normalisation, contains, regex, similarity, ROUGE.

Each returns a metric dict of floats in [0, 1], so a test can return several at once:

    summary = llm(case)[0]
    return {**rouge(summary, case["reference"]), **similarity(summary, case["reference"])}   # metric="rougeL"

and each takes `at_least=`: below it, the check fails an assertion (an instance's miss) with the score, the
threshold and the texts. A `reference` may be a list of acceptable references: the best one counts.

rapidfuzz and rouge-score are imported on first use (the `metrics` extra: pip install 'pytest-llmtune[metrics]').
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence
from typing import Any

__all__ = ["contains", "exact_match", "matches", "normalize_text", "rouge", "similarity"]

References = str | Sequence[str]
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
EXTRA = "pip install 'pytest-llmtune[metrics]'"


def normalize_text(text: str) -> str:
    """SQuAD's normalisation, with accents dropped: case-folded, no punctuation, no a/an/the, one space apart."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().casefold()
    return " ".join(_ARTICLES.sub(" ", plain.translate(_PUNCTUATION)).split())


def exact_match(answer: str, reference: References, *, at_least: float | None = None) -> dict[str, float]:
    """`{"exact_match": 1.0}` when the answer equals a reference after `normalize_text`, else 0.0."""
    score = max(float(normalize_text(answer) == normalize_text(ref)) for ref in _references(reference))
    _require("exact_match", score, at_least, answer, reference)
    return {"exact_match": score}


def contains(answer: str, *needles: str, case_sensitive: bool = False,
             at_least: float | None = None) -> dict[str, float]:
    """`{"contains": share}`: the share of `needles` found in the answer (case-folded unless `case_sensitive`)."""
    if not needles:
        raise ValueError("contains(answer, *needles): give at least one needle")
    fold = (lambda text: text) if case_sensitive else str.casefold
    missing = [needle for needle in needles if fold(needle) not in fold(answer)]
    score = 1 - len(missing) / len(needles)
    if at_least is not None and score < at_least:
        raise AssertionError(f"contains {score:.2f} < {at_least:.2f}: {_short(answer)} lacks "
                             f"{', '.join(map(repr, missing))}")
    return {"contains": score}


def matches(answer: str, pattern: str | re.Pattern[str], *, at_least: float | None = None) -> dict[str, float]:
    """`{"matches": 1.0}` when the regex is found in the answer (`re.search`), else 0.0. A bad pattern raises
    `re.error`: a defect of the test, not a miss."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    score = float(compiled.search(answer) is not None)
    if at_least is not None and score < at_least:
        raise AssertionError(f"matches 0.00 < {at_least:.2f}: {_short(answer)} has no match of "
                             f"/{compiled.pattern}/")
    return {"matches": score}


def similarity(answer: str, reference: References, *, at_least: float | None = None) -> dict[str, float]:
    """`{"similarity": ..., "token_set": ...}`: rapidfuzz's normalised Levenshtein ratio of the normalised texts,
    and its token-set ratio (word order and repeats ignored); `at_least` applies to "similarity"."""
    fuzz = _import("rapidfuzz.fuzz")
    refs = [normalize_text(ref) for ref in _references(reference)]
    plain = normalize_text(answer)
    score = max(fuzz.ratio(plain, ref) for ref in refs) / 100
    token_set = max(fuzz.token_set_ratio(plain, ref) for ref in refs) / 100
    _require("similarity", score, at_least, answer, reference)
    return {"similarity": score, "token_set": token_set}


def rouge(answer: str, reference: References, *, kinds: Sequence[str] = ("rouge1", "rouge2", "rougeL"),
          stemmer: bool = True, at_least: float | None = None, on: str = "rougeL") -> dict[str, float]:
    """ROUGE F-measures from Google's rouge-score (the ROUGE-1.5.5 reimplementation, Porter stemming), one key per
    kind; with several references each kind takes its best. `at_least` applies to the kind `on`."""
    if on not in kinds:
        raise ValueError(f"rouge(on={on!r}): `on` must be one of the kinds {list(kinds)}")
    scorer = _import("rouge_score.rouge_scorer").RougeScorer(list(kinds), use_stemmer=stemmer)
    found = [scorer.score(ref, answer) for ref in _references(reference)]  # score(target, prediction)
    scores = {kind: max(float(score[kind].fmeasure) for score in found) for kind in kinds}
    _require(on, scores[on], at_least, answer, reference)
    return scores


def _references(reference: References) -> list[str]:
    refs = [reference] if isinstance(reference, str) else list(reference)
    if not refs or not all(isinstance(ref, str) for ref in refs):
        raise ValueError(f"reference is {reference!r}: give a str or a non-empty list of str")
    return refs


def _require(name: str, score: float, at_least: float | None, answer: str, reference: References) -> None:
    if at_least is not None and score < at_least:
        raise AssertionError(f"{name} {score:.2f} < {at_least:.2f}: {_short(answer)} vs {_short(reference)}")


def _short(text: Any, limit: int = 80) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 4] + "...'"


def _import(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(f"{name.split('.')[0]} is not installed: {EXTRA}") from error
