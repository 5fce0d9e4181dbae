"""The text metrics of pytest_llmtune.evals: their scores, their at_least assertions, and one tune that uses them."""

from __future__ import annotations

import re
import sys

import pytest
from jsonschema.exceptions import SchemaError
from openai_server import FakeOpenAI

from conftest import SENTIMENT_CASES, read_lock
from pytest_llmtune.evals import (
    contains,
    exact_match,
    json_score,
    matches,
    normalize_text,
    parse_json,
    rouge,
    similarity,
)


def test_normalize_text_drops_case_accents_punctuation_and_articles() -> None:
    assert normalize_text("  The Café, in  Bogotá!") == "cafe in bogota"


def test_exact_match_after_normalisation_takes_the_best_reference() -> None:
    assert exact_match("The Paris.", "paris") == {"exact_match": 1.0}
    assert exact_match("Lyon", ["Paris", "lyon"]) == {"exact_match": 1.0}
    assert exact_match("Lyon", "Paris") == {"exact_match": 0.0}


def test_exact_match_at_least_fails_with_both_texts() -> None:
    with pytest.raises(AssertionError, match=re.escape("exact_match 0.00 < 1.00: 'Lyon' vs 'Paris'")):
        exact_match("Lyon", "Paris", at_least=1.0)


def test_contains_is_the_share_of_needles_and_names_the_missing_ones() -> None:
    assert contains("Paris is in France", "paris", "france") == {"contains": 1.0}
    assert contains("Paris is in France", "Paris", "Europe") == {"contains": 0.5}
    assert contains("Paris", "paris", case_sensitive=True) == {"contains": 0.0}
    with pytest.raises(AssertionError, match=re.escape("contains 0.50 < 1.00: 'Paris is in France' lacks 'Europe'")):
        contains("Paris is in France", "Paris", "Europe", at_least=1.0)
    with pytest.raises(ValueError, match="at least one needle"):
        contains("Paris")


def test_matches_searches_a_regex_and_a_bad_pattern_is_the_tests_error() -> None:
    assert matches("call 555-1234 now", r"\d{3}-\d{4}") == {"matches": 1.0}
    assert matches("no number", re.compile(r"\d+")) == {"matches": 0.0}
    with pytest.raises(AssertionError, match=re.escape(r"matches 0.00 < 1.00: 'no number' has no match of /\d+/")):
        matches("no number", r"\d+", at_least=1)
    with pytest.raises(re.error):
        matches("text", "(")


def test_similarity_is_a_normalised_levenshtein_ratio_with_token_set_beside_it() -> None:
    assert similarity("Paris", "paris") == {"similarity": 1.0, "token_set": 1.0}
    close = similarity("Pariss", "Paris")
    assert 0.8 < close["similarity"] < 1.0
    assert similarity("the red big dog", "big red dog")["token_set"] > similarity("red big dog", "big red dog")[
        "similarity"]
    with pytest.raises(AssertionError, match=re.escape("similarity 0.00 < 0.80: 'xyz' vs ['abc', 'def']")):
        similarity("xyz", ["abc", "def"], at_least=0.8)


def test_rouge_gives_f_measures_per_kind_with_stemming_and_the_best_reference() -> None:
    scores = rouge("the cats sat on the mat", "the cat sat on the mat")
    assert scores["rouge1"] == pytest.approx(1.0)  # stemmed: cats -> cat
    assert set(scores) == {"rouge1", "rouge2", "rougeL"}
    assert rouge("a cat", ["a dog", "a cat"], kinds=("rouge1",), on="rouge1") == {"rouge1": 1.0}
    with pytest.raises(AssertionError, match=r"rougeL 0\.00 < 0\.30: 'dog' vs 'cat'"):
        rouge("dog", "cat", at_least=0.3)
    with pytest.raises(ValueError, match="`on` must be one of the kinds"):
        rouge("a", "a", kinds=("rouge1",))


def test_a_reference_that_is_not_text_is_refused() -> None:
    with pytest.raises(ValueError, match="give a str or a non-empty list of str"):
        exact_match("a", [])


def test_parse_json_reads_bare_fenced_and_embedded_json() -> None:
    assert parse_json('{"a": 1}') == {"a": 1}
    assert parse_json('Sure:\n```json\n{"a": [1, 2]}\n```\nDone.') == {"a": [1, 2]}
    assert parse_json('The answer is {"a": "}"} as asked') == {"a": "}"}
    with pytest.raises(AssertionError, match=r"not JSON: Expecting value at line 1 column 1: 'no json here'"):
        parse_json("no json here")


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


def test_json_score_checks_the_schema_and_says_where_it_fails() -> None:
    assert json_score('{"city": "Paris"}', SCHEMA) == {"json": 1.0, "schema": 1.0}
    assert json_score('{"city": 3}', SCHEMA) == {"json": 1.0, "schema": 0.0}
    assert json_score("nope", SCHEMA) == {"json": 0.0, "schema": 0.0}
    assert json_score("[1]") == {"json": 1.0}
    with pytest.raises(AssertionError, match=re.escape("schema 0.00 < 1.00: schema: at city: 3 is not of type "
                                                       "'string'")):
        json_score('{"city": 3}', SCHEMA, at_least=1)
    with pytest.raises(AssertionError, match="json 0.00 < 1.00: not JSON"):
        json_score("nope", at_least=1)


def test_an_invalid_schema_is_the_tests_error_not_a_miss() -> None:
    with pytest.raises(SchemaError):
        json_score("{}", {"type": "no-such-type"})


@pytest.mark.parametrize(("module", "call"), [
    ("rapidfuzz.fuzz", lambda: similarity("a", "a")),
    ("rouge_score.rouge_scorer", lambda: rouge("a", "a")),
    ("jsonschema.validators", lambda: json_score("{}", {"type": "object"})),
])
def test_a_missing_library_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch, module: str,
                                                       call: object) -> None:
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=re.escape("is not installed: pip install 'pytest-llmtune[metrics]'")):
        call()  # type: ignore[operator]


ROUGE_TARGET = SENTIMENT_CASES + '''
from pytest_llmtune.evals import rouge, similarity


@llm_eval(space={"model": "gpt-4o-mini", "prompt": "Review: {review}\\nSentiment:", "temperature": uniform(0, 1),
                 "max_tokens": randint(1, 4)}, metric="rougeL", num_samples=4)
@pytest.mark.parametrize("case", CASES)
def test_sentiment(llm, case):
    answer = llm(case)[0]
    return {**rouge(answer, case["label"]), **similarity(answer, case["label"])}
'''


def test_a_tune_maximises_rouge_and_locks_the_other_metrics_beside_it(pytester: pytest.Pytester,
                                                                       openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=ROUGE_TARGET)
    result = pytester.runpytest("--llm-tune")
    assert result.ret == 0, result.stdout.str()
    entry = next(iter(read_lock(pytester.path)["targets"].values()))
    assert entry["metric"] == "rougeL"
    assert {"rouge1", "rouge2", "similarity", "token_set"} <= set(entry["metrics"])
    assert 0 < entry["score"] <= 1
    assert pytester.runpytest("--llm-test").ret == 0  # the gate replays and scores the same way
