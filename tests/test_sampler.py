"""Candidate configs from scrambled Sobol points: deterministic per seed, without repeats."""

from __future__ import annotations

import re

import pytest

from pytest_llmtune.search.domains import choice, randint, uniform
from pytest_llmtune.search.sampler import candidates
from pytest_llmtune.search.space import SearchSpace

SPACE = SearchSpace(
    {"prompt": choice(["A {x}", "B {x}"]), "temperature": uniform(0, 1), "max_tokens": randint(1, 64)}
)


def test_same_seed_gives_the_same_candidates_in_the_same_order() -> None:
    assert candidates(SPACE, 16, seed=7) == candidates(SPACE, 16, seed=7)


def test_different_seeds_give_different_candidates() -> None:
    assert candidates(SPACE, 16, seed=7) != candidates(SPACE, 16, seed=8)


def test_a_continuous_space_gives_as_many_candidates_as_asked() -> None:
    configs = candidates(SPACE, 10, seed=0)

    assert len(configs) == 10
    assert all(set(c) == {"prompt", "temperature", "max_tokens"} for c in configs)


def test_candidates_stay_in_the_space() -> None:
    configs = candidates(SPACE, 32, seed=3)

    assert all(c["prompt"] in ("A {x}", "B {x}") for c in configs)
    assert all(0 <= c["temperature"] <= 1 and 1 <= c["max_tokens"] < 64 for c in configs)


def test_two_templates_give_two_candidates_not_repeats() -> None:
    space = SearchSpace({"model": "m", "prompt": choice(["A {x}", "B {x}"])})

    configs = candidates(space, 16, seed=0)

    assert sorted(c["prompt"] for c in configs) == ["A {x}", "B {x}"]


def test_more_samples_extend_the_same_sequence() -> None:
    assert candidates(SPACE, 16, seed=5)[:8] == candidates(SPACE, 8, seed=5)


def test_zero_dimensional_space_gives_its_one_config() -> None:
    space = SearchSpace({"model": "m", "prompt": "{x}"})

    assert candidates(space, 16, seed=0) == [{"model": "m", "prompt": "{x}"}]


@pytest.mark.parametrize("num_samples", [0, -1])
def test_fewer_than_one_sample_is_refused_with_the_constraint(num_samples: int) -> None:
    message = f"The value of `num_samples` is {num_samples}, but must be `num_samples >= 1`"

    with pytest.raises(ValueError, match=re.escape(message)):
        candidates(SPACE, num_samples, seed=0)
