"""Math answers: extraction from \\boxed{} or the last number, normalisation, equivalence, voting, the score dict."""

from __future__ import annotations

import pytest

from pytest_llmtune.evals import VoteResult, extract_answer, is_equiv, math_score, normalize, vote

# extract_answer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so the answer is $\boxed{42}$.", "42"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\frac{\sqrt{3}}{2}} done", r"\frac{\sqrt{3}}{2}"),
        (r"\boxed{x^{2^{3}}+1}", r"x^{2^{3}}+1"),
        (r"first \boxed{1}, then \boxed{2}", "2"),
        (r"\fbox{7}", "7"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"\boxed{\}}", r"\}"),
        (r"\boxed 5$", "5"),
        (r"\boxed{ 3 }", "3"),
    ],
    ids=["plain", "frac", "nested", "deeply-nested", "last-box", "fbox", "escaped-braces", "escaped-close",
         "bare", "spaces"],
)
def test_extract_answer_takes_the_last_boxed_content_with_balanced_braces(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_extract_answer_skips_an_unclosed_box_for_an_earlier_closed_one() -> None:
    assert extract_answer(r"\boxed{4} and then \boxed{5") == "4"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3 apples and 4 pears make 7", "7"),
        ("The total is 1,234 dollars.", "1,234"),
        ("It cools to -12 degrees", "-12"),
        ("about 3.75 m", "3.75"),
        ("half is .5", ".5"),
        ("she ate 3/4 of it", "3/4"),
        ("10-3", "3"),
        ("x = -2.5.", "-2.5"),
        ("the list 1,2,3", "3"),
        ("H2O and CO2 only", None),
        ("no numbers here", None),
        ("", None),
    ],
)
def test_extract_answer_falls_back_to_the_last_number(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


# normalize


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("1,000", "1000"),
        ("1,234,567.50", "1234567.5"),
        ("0.50", "0.5"),
        ("2.0", "2"),
        (".5", "0.5"),
        ("-0.0", "0"),
        ("007", "7"),
        ("$12$", "12"),
        (" 5. ", "5"),
        (r"\left( 1, 2 \right)", "(1,2)"),
        ("1,2", "1,2"),
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\tfrac34", r"\frac{3}{4}"),
        ("3/4", r"\frac{3}{4}"),
        ("-3/4", r"-\frac{3}{4}"),
        (r"\sqrt2", r"\sqrt{2}"),
        (r"10\text{ cm}", "10"),
        (r"10 \text{ square units}", "10"),
        (r"\text{(B)}", "(B)"),
        ("x = 5", "5"),
        (r"y=\frac{1}{2}", r"\frac{1}{2}"),
        (r"1\!000", "1000"),
        (r"90^\circ", "90"),
        (r"25\%", "25"),
    ],
)
def test_normalize_writes_one_spelling(answer: str, expected: str) -> None:
    assert normalize(answer) == expected


def test_normalize_is_idempotent() -> None:
    for answer in ["1,000", r"\dfrac12", "x = -3/4", r"$\left(2, 3\right)$", "0.250", r"5\text{ cm}."]:
        assert normalize(normalize(answer)) == normalize(answer)


def test_normalize_leaves_a_comparison_alone() -> None:
    assert normalize("x==5") == "x==5"


# is_equiv


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (r"\frac{1}{2}", "0.5"),
        ("1/2", "0.5"),
        (r"\dfrac{1}{2}", "1/2"),
        (r"-\frac{1}{2}", "-0.5"),
        (r"\frac{-1}{2}", "-1/2"),
        ("1,000", "1000.00"),
        ("$x = 3$", "3"),
        (r"\frac{2}{4}", "1/2"),
        ("0.333333333333", r"\frac{1}{3}"),
        (r"(1, 2)", r"\left(1,2\right)"),
        (r"\sqrt{2}", r"\sqrt2"),
    ],
)
def test_equivalent_answers(a: str, b: str) -> None:
    assert is_equiv(a, b)
    assert is_equiv(b, a)


@pytest.mark.parametrize(
    ("a", "b"),
    [("1", "2"), ("0.5", "0.51"), ("0.3333", r"\frac{1}{3}"), ("1,2", "12"), ("-1", "1"), (r"\frac{1}{0}", "1")],
)
def test_different_answers(a: str, b: str) -> None:
    assert not is_equiv(a, b)


def test_no_answer_is_equivalent_to_nothing() -> None:
    assert not is_equiv(None, None)
    assert not is_equiv(None, "1")
    assert not is_equiv("1", None)


# vote


def test_vote_takes_the_majority_of_the_extracted_answers() -> None:
    result = vote([r"\boxed{4}", "so 4", "it is 5", r"\boxed{4.0}"])

    assert result == VoteResult("4", 3, 4)


def test_vote_groups_equivalent_spellings_under_the_first_seen() -> None:
    result = vote(["1/2", r"\boxed{0.5}", r"\boxed{\dfrac{1}{2}}", "7"])

    assert result == VoteResult(r"\frac{1}{2}", 3, 4)


def test_vote_breaks_a_tie_toward_the_answer_seen_first() -> None:
    assert vote(["answer 3", "answer 8", "answer 8", "answer 3"]).answer == "3"
    assert vote(["answer 8", "answer 3", "answer 3", "answer 8"]).answer == "8"


def test_vote_counts_samples_without_an_answer_in_the_total_only() -> None:
    assert vote(["no idea", "6", "not sure"]) == VoteResult("6", 1, 3)


def test_vote_of_no_answers_is_none() -> None:
    assert vote(["no idea", "none"]) == VoteResult(None, 0, 2)
    assert vote([]) == VoteResult(None, 0, 0)


# math_score


def test_math_score_reports_the_vote_and_any_sample_against_the_solution() -> None:
    solution = r"Adding gives $\boxed{\frac{3}{4}}$."

    assert math_score(["0.75", "3/4", "1"], solution) == {"voted": 1.0, "any": 1.0}
    assert math_score(["1", "1", r"\boxed{0.75}"], solution) == {"voted": 0.0, "any": 1.0}
    assert math_score(["1", "2"], solution) == {"voted": 0.0, "any": 0.0}


def test_math_score_accepts_a_bare_number_as_solution() -> None:
    assert math_score(["The answer is 1,024."], "1024") == {"voted": 1.0, "any": 1.0}


def test_math_score_of_a_solution_without_answer_is_zero() -> None:
    assert math_score(["5"], "see the figure") == {"voted": 0.0, "any": 0.0}
