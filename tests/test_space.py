"""Domains, field rules and SearchSpace: pure functions of the unit cube, no pytest session."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmtune.search.domains import (
    Choice,
    InvalidSpaceError,
    choice,
    lograndint,
    loguniform,
    qrandint,
    randint,
    uniform,
)
from pytest_llmtune.search.space import SearchSpace, default_space

GRID = [i / 1000 for i in range(1000)] + [0.999999]  # coordinates across [0, 1), both ends included


def samples(domain: Any) -> list[Any]:
    return [domain.sample([u]) for u in GRID]


def invalid(message: str) -> Any:
    return pytest.raises(InvalidSpaceError, match=re.escape(message))


def review_template(context: dict[str, Any]) -> str:
    return f"Review: {context['review']}"


# Domains: sampling ranges


def test_uniform_samples_cover_the_range() -> None:
    values = samples(uniform(0.5, 1.5))

    assert min(values) == 0.5
    assert 1.49 < max(values) <= 1.5


def test_loguniform_stays_in_range() -> None:
    values = samples(loguniform(0.01, 1))

    assert all(0.01 <= v <= 1 for v in values)
    assert values == sorted(values)


def test_loguniform_spends_half_its_samples_below_the_geometric_middle() -> None:
    values = samples(loguniform(0.01, 1))

    assert sum(v < 0.1 for v in values) == pytest.approx(len(values) / 2, abs=2)


def test_loguniform_stays_in_range_below_the_rounding_precision() -> None:
    values = samples(loguniform(1e-6, 1e-4))

    assert min(values) >= 1e-6
    assert max(values) <= 1e-4


def test_randint_excludes_the_upper_bound() -> None:
    assert set(samples(randint(1, 5))) == {1, 2, 3, 4}


def test_lograndint_excludes_the_upper_bound() -> None:
    values = samples(lograndint(1, 100))

    assert min(values) == 1
    assert max(values) == 99


def test_lograndint_never_goes_below_low() -> None:
    assert min(samples(lograndint(50, 1000))) == 50


def test_qrandint_includes_the_upper_bound() -> None:
    assert set(samples(qrandint(1, 5))) == {1, 2, 3, 4, 5}


def test_qrandint_rounds_to_multiples_of_q() -> None:
    assert set(samples(qrandint(0, 100, q=25))) == {0, 25, 50, 75, 100}


def test_choice_splits_the_axis_evenly_between_options() -> None:
    values = samples(choice(["a", "b", "c", "d"]))

    assert [values.count(option) for option in "abcd"] == [250, 250, 250, 251]


def test_range_domains_report_their_sampled_bounds_for_validation() -> None:
    assert randint(1, 5).values() == [1, 4]
    assert lograndint(1, 100).values() == [1, 99]
    assert qrandint(0, 10, q=5).values() == [0, 10]
    assert uniform(0, 2).values() == [0, 2]


# Domains: constructor validation


def test_uniform_rejects_an_empty_range() -> None:
    with invalid("uniform(1, 0): `low` must be less than `high`"):
        uniform(1, 0)


def test_uniform_rejects_a_non_finite_bound() -> None:
    with invalid("uniform(): `high` is inf, but must be a finite number"):
        uniform(0, float("inf"))


def test_loguniform_rejects_a_low_of_zero() -> None:
    with invalid("loguniform(0, 1): `low` must be > 0 on a log scale"):
        loguniform(0, 1)


def test_lograndint_rejects_a_low_of_zero() -> None:
    with invalid("lograndint(0, 5): `low` must be > 0 on a log scale"):
        lograndint(0, 5)


def test_randint_rejects_a_float_bound() -> None:
    with invalid("randint(): `low` is 1.5, but must be an int"):
        randint(1.5, 3)  # type: ignore[arg-type]


def test_randint_rejects_a_bool_bound() -> None:
    with invalid("randint(): `high` is True, but must be an int"):
        randint(0, True)


def test_qrandint_rejects_a_q_of_zero() -> None:
    with invalid("qrandint(1, 5, q=0): `q` must be an int >= 1"):
        qrandint(1, 5, q=0)


def test_choice_rejects_no_options() -> None:
    with invalid("choice([]): give at least one option"):
        choice([])


def test_choice_rejects_a_string_of_options() -> None:
    with invalid("choice('ab'): give a list of options"):
        choice("ab")


# SearchSpace: validation


def test_space_rejects_a_temperature_outside_0_to_2() -> None:
    with invalid("space['temperature'] is 3, but temperature must be a number in [0, 2]"):
        SearchSpace({"prompt": "{x}", "temperature": 3})


def test_space_rejects_a_temperature_domain_reaching_outside_0_to_2() -> None:
    with invalid("space['temperature']: uniform(0, 3) allows 3, but temperature must be a number in [0, 2]"):
        SearchSpace({"prompt": "{x}", "temperature": uniform(0, 3)})


def test_space_rejects_a_float_domain_for_n() -> None:
    with invalid("space['n']: uniform(1, 5) gives floats, but n takes ints; use randint or lograndint"):
        SearchSpace({"prompt": "{x}", "n": uniform(1, 5)})


def test_space_rejects_an_int_domain_allowing_zero_max_tokens() -> None:
    with invalid("space['max_tokens']: randint(0, 5) allows 0, but max_tokens must be an int >= 1"):
        SearchSpace({"prompt": "{x}", "max_tokens": randint(0, 5)})


def test_space_rejects_both_prompt_and_messages() -> None:
    with invalid("a config would have both 'prompt' and 'messages'; give one"):
        SearchSpace({"prompt": "{x}", "messages": [{"role": "user", "content": "{x}"}]})


def test_a_group_may_switch_between_prompt_and_messages() -> None:
    space = SearchSpace({"template": choice([{"prompt": "{x}"}, {"messages": [{"role": "user", "content": "{x}"}]}])})

    assert {"prompt" in space.config_at([0.1]), "messages" in space.config_at([0.9])} == {True}


def test_a_group_that_only_sometimes_gives_a_template_is_refused() -> None:
    with invalid("space has no 'prompt' or 'messages'"):
        SearchSpace({"template": choice([{"prompt": "{x}"}, {"api": "chat"}])})


def test_space_rejects_neither_prompt_nor_messages() -> None:
    with invalid("space has no 'prompt' or 'messages': add a template, e.g. \"prompt\": "):
        SearchSpace({"model": "m"})


def test_space_rejects_messages_without_content() -> None:
    with invalid("space['messages'] is [{'role': 'user'}], but messages must be a non-empty list of"):
        SearchSpace({"messages": [{"role": "user"}]})


def test_space_rejects_a_bad_value_inside_a_group_naming_the_group_and_the_field() -> None:
    with invalid("space['sampling'] option 'temperature' is 5, but temperature must be a number in [0, 2]"):
        SearchSpace({"prompt": "{x}", "sampling": choice([{"temperature": 5}, {"top_p": 0.5}])})


def test_space_rejects_a_group_mixing_dicts_and_plain_values() -> None:
    with invalid("space['sampling']: choice([{'temperature': 1}, 3]) mixes dicts and plain values"):
        SearchSpace({"prompt": "{x}", "sampling": choice([{"temperature": 1}, 3])})


def test_space_accepts_a_prompt_given_inside_a_group() -> None:
    space = SearchSpace({"style": choice([{"prompt": "A {x}"}, {"prompt": "B {x}"}])})

    assert space.config_at([0.9]) == {"prompt": "B {x}"}


# SearchSpace: configs


def test_group_merges_the_chosen_dict_and_drops_its_key() -> None:
    sampling = choice([{"temperature": uniform(0, 1)}, {"top_p": 0.5}])
    space = SearchSpace({"prompt": "{x}", "sampling": sampling})

    assert space.config_at([0.1, 0.3]) == {"prompt": "{x}", "temperature": 0.3}
    assert space.config_at([0.9, 0.3]) == {"prompt": "{x}", "top_p": 0.5}


def test_default_space_never_sets_both_temperature_and_top_p() -> None:
    space = SearchSpace(default_space(prompt="{x}"))
    configs = [space.config_at([u, (u * 7) % 1, (u * 13) % 1, (u * 3) % 1, (u * 5) % 1]) for u in GRID]

    assert all(("temperature" in c) != ("top_p" in c) for c in configs)
    assert any("temperature" in c for c in configs) and any("top_p" in c for c in configs)
    assert not any("temperature_or_top_p" in c for c in configs)


def test_default_space_overrides_replace_and_extend_the_defaults() -> None:
    space = default_space(prompt="{x}", n=1)

    assert space["n"] == 1
    assert space["prompt"] == "{x}"
    assert set(space) == {"temperature_or_top_p", "max_tokens", "n", "prompt"}


def test_default_space_alone_asks_for_a_prompt() -> None:
    with invalid("space has no 'prompt' or 'messages'"):
        SearchSpace(default_space())


def test_config_keys_are_sorted() -> None:
    space = SearchSpace({"temperature": uniform(0, 1), "prompt": "{x}", "model": "m"})

    assert list(space.config_at([0.5])) == ["model", "prompt", "temperature"]


def test_a_space_of_constants_has_no_dimensions() -> None:
    assert SearchSpace({"prompt": "{x}", "model": "m"}).dims == 0


# SearchSpace: fingerprint and encoding


def test_fingerprint_is_stable_across_equal_spaces_and_key_order() -> None:
    first = SearchSpace({"prompt": "{x}", "temperature": uniform(0, 1), "n": randint(1, 4)})
    second = SearchSpace({"n": randint(1, 4), "temperature": uniform(0, 1), "prompt": "{x}"})

    assert first.fingerprint() == second.fingerprint()
    assert first.fingerprint().startswith("sha256:")


def test_fingerprint_changes_when_a_bound_changes() -> None:
    first = SearchSpace({"prompt": "{x}", "temperature": uniform(0, 1)})
    second = SearchSpace({"prompt": "{x}", "temperature": uniform(0, 0.9)})

    assert first.fingerprint() != second.fingerprint()


def test_fingerprint_changes_when_a_template_changes() -> None:
    first = SearchSpace({"prompt": "Review: {x}"})
    second = SearchSpace({"prompt": "Review:  {x}"})

    assert first.fingerprint() != second.fingerprint()


def test_encode_decode_round_trips_a_callable_template_through_json() -> None:
    space = SearchSpace({"model": "m", "prompt": choice([review_template, "Review: {review}"])})
    config = space.config_at([0.1])

    encoded = json.loads(json.dumps(space.encode(config)))

    assert encoded == {"model": "m", "prompt": {"callable": f"{__name__}.review_template"}}
    assert space.decode(encoded) == config
    assert space.decode(encoded)["prompt"] is review_template


def test_decode_of_a_template_no_longer_in_the_space_says_so() -> None:
    space = SearchSpace({"prompt": "Review: {review}"})

    with invalid("the locked template tests.gone is not in the space any more"):
        space.decode({"prompt": {"callable": "tests.gone"}})


def test_a_lambda_template_is_refused_because_the_application_could_not_import_it() -> None:
    short = lambda context: "Review: " + context["review"]  # noqa: E731

    with pytest.raises(InvalidSpaceError, match=r"<lambda> is a lambda: the lockfile names a callable"):
        SearchSpace({"prompt": choice([short, review_template])})


def shots(k: int) -> Callable[[dict[str, Any]], str]:
    def template(context: dict[str, Any]) -> str:
        return "Review: great -> positive\n" * k + f"Review: {context['review']} ->"

    return template


SHOTS_1, SHOTS_3 = shots(1), shots(3)


def test_templates_made_by_a_factory_are_refused_with_a_template_variable_instead() -> None:
    with pytest.raises(InvalidSpaceError, match=r"shots.<locals>.template is made inside a function .* read a tuned "):
        SearchSpace({"prompt": choice([SHOTS_1, SHOTS_3])})


def test_a_template_renamed_after_its_def_is_refused() -> None:
    renamed = shots(2)
    renamed.__qualname__ = "SHOTS_2"  # what a user tries after the factory's refusal: not what the module holds

    with invalid("is not what its module holds under the name 'SHOTS_2'"):
        SearchSpace({"prompt": renamed})


@pytest.mark.parametrize(("spec", "pairs"), [
    ({"model": choice(["a", "b"]), "prompt": "p", "api": "completions"}, {("a", "completions"), ("b", "completions")}),
    ({"g": choice([{"model": "a", "api": "chat", "prompt": "p"}, {"model": "b", "api": "completions", "prompt": "q"}])},
     {("a", "chat"), ("b", "completions")}),  # a group pairs only within an option
    ({"g": choice([{"model": "a", "prompt": "p"}, {"model": "b", "api": "completions", "prompt": "q"}])},
     {("a", None), ("b", "completions")}),  # None: a config with that model may lack the key
    ({"model": choice(["a", "b"]), "g": choice([{"api": "chat", "prompt": "p"}, {"api": "completions",
                                                                                  "prompt": "q"}])},
     {(m, api) for m in "ab" for api in ("chat", "completions")}),  # independent choices pair every way
    ({"model": "a", "prompt": "p", "g": choice([{"n": randint(1, 4)}, {"temperature": 0.0}])},
     {("a", 1), ("a", 3), ("a", None)}),  # a domain's bounds
    ({"api": "chat", "prompt": "p", "g": choice([{"model": "a", "api": "completions"}, {"model": "b"}])},
     {("a", "completions"), ("b", "chat")}),  # an option's own value overrides the top-level one
])
def test_together_says_which_values_of_two_keys_a_config_may_hold_at_once(
        spec: dict[str, Any], pairs: set[tuple[Any, Any]]) -> None:
    other = "n" if any("n" in option for value in spec.values() if isinstance(value, Choice)
                       for option in value.options if isinstance(option, dict)) else "api"

    assert SearchSpace(spec).together("model", other) == pairs
