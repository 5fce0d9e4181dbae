"""Demonstrations chosen by the search: the demos() domain, how they render, never an instance's own or a held-out
one, the lock holding them in full, credit and swaps, reports."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock
from pytest_llmtune.llm.client import render_request
from pytest_llmtune.search.costs import shape
from pytest_llmtune.search.demo_credit import by_credit, credit_of, swapped
from pytest_llmtune.search.demos import Demonstrations, demos, same_instance
from pytest_llmtune.search.domains import InvalidSpaceError, randint, uniform
from pytest_llmtune.search.sampler import draw
from pytest_llmtune.search.space import SearchSpace

COUNTRIES = ["France", "Peru", "Chad", "Fiji", "Oman", "Togo", "Laos", "Cuba"]
POOL = [{"country": c, "capital": c.upper()} for c in COUNTRIES]
FORMAT = "Q: {country}\nA: {capital}\n"


def space(**fields: Any) -> SearchSpace:
    return SearchSpace({"api": "completions", "prompt": "{demos}Q: {country}\nA:", **fields})


# --- the domain ------------------------------------------------------------------------------------------------


def test_a_draw_picks_k_distinct_demonstrations_of_the_pool_and_a_spare_apart() -> None:
    found = space(demos=demos(POOL, k=randint(0, 5), format=FORMAT))
    configs = [config for config, _ in draw(found, 64, seed=3)]
    for config in configs:
        chosen = config["demos"]
        assert 0 <= chosen.k <= 4 and len({json.dumps(d) for d in chosen.items}) == chosen.k
        assert all(d in POOL for d in chosen.items) and chosen.spare in POOL and chosen.spare not in chosen.items
    assert {c["demos"].k for c in configs} == {0, 1, 2, 3, 4}
    assert [c["demos"] for c in configs] == [c["demos"] for c, _ in draw(found, 64, seed=3)]  # seeded


def test_one_slot_coordinate_moved_swaps_one_demonstration() -> None:
    found = space(demos=demos(POOL, k=3, format=FORMAT))
    before = found.config_at([0.1, 0.4, 0.7, 0.95])["demos"].items
    after = found.config_at([0.1, 0.55, 0.7, 0.95])["demos"].items
    assert before[0] == after[0] and before[2] == after[2] and before[1] != after[1]


@pytest.mark.parametrize(("fields", "words"), [
    (lambda: {"demos": demos(POOL, k=9, format=FORMAT)},
     "k can be 9, but the pool holds 8 demonstrations: give k <= 8 (randint's upper bound is excluded"),
    (lambda: {"demos": demos(POOL, k=2, format="{country} {flag}")},
     "its template names the field 'flag', but the pool[0] has"),
    (lambda: {"shots": demos(POOL, k=2, format=FORMAT)},
     "no template names {shots}, so the demonstrations would be tuned"),
    (lambda: {"demos": demos(POOL, k=2, user="{country}", assistant="{capital}")},
     "may use api='completions': give format"),
    (lambda: {"demos": demos([{"x": object()}], k=1, format="{x}")}, "holds a value that is not JSON"),
    (lambda: {"demos": demos(POOL, k=2.5, format=FORMAT)}, "`k` must be an int or an int domain"),
    (lambda: {"demos": demos(POOL, k=2, format=FORMAT, user="{country}")}, "not both"),
    (lambda: {"demos": demos(POOL, k=2)}, "give `format`"),
    (lambda: {"demos": demos(POOL, k=2, format=FORMAT, sep=None)},  # type: ignore[arg-type]
     "`sep` must be a str"),
    (lambda: {"extra_body": {"shots": demos(POOL, k=1, format=FORMAT)}}, "demos() is a template variable of its own"),
])
def test_bad_demonstrations_are_refused_with_the_key_the_value_and_what_is_allowed(
        fields: Callable[[], dict[str, Any]], words: str) -> None:
    with pytest.raises(InvalidSpaceError, match=re.escape(words)):
        space(**fields())


def test_empty_templates_read_back_from_the_lock_as_they_were() -> None:
    found = SearchSpace({"messages": [{"role": "user", "content": "{country}?"}],
                         "demos": demos(POOL, k=1, user="", assistant="{capital}")})
    config = found.config_at([0.0, 0.5])
    decoded = found.decode(json.loads(json.dumps(found.encode(config))))
    assert render_request(decoded, {"country": "Cuba"}) == render_request(config, {"country": "Cuba"})


def test_a_label_names_each_demonstration_by_the_first_field_its_template_shows() -> None:
    shown = Demonstrations(({"label": "negative", "review": "Dull"},), None, "Review: {review} -> {label}\n")
    assert shown.label() == "k1 [Dull]"


def test_demos_on_a_request_field_is_refused() -> None:
    with pytest.raises(InvalidSpaceError, match="demos\\(\\) is a template variable, not the request field 'stop'"):
        space(stop=demos(POOL, k=1, format=FORMAT))


def test_a_pool_of_the_targets_instances_is_bound_by_the_tune_and_checked_then() -> None:
    found = space(demos=demos(k=3, format=FORMAT))
    with pytest.raises(InvalidSpaceError, match="only a tune binds"):
        found.config_at([0.5] * found.dims)
    assert found.bound(POOL).config_at([0.5] * found.dims)["demos"].k == 3
    with pytest.raises(InvalidSpaceError,
                       match="the target's tuning instances hold 2 demonstrations \\(one of them is kept as the spare"):
        found.bound(POOL[:2])


# --- rendering -------------------------------------------------------------------------------------------------


def test_demonstrations_render_where_the_template_names_them_and_never_the_instance_itself() -> None:
    config = space(demos=demos(POOL, k=2, format=FORMAT, sep="\n")).config_at([0.0, 0.2, 0.3])
    assert [d["country"] for d in config["demos"].items] == ["France", "Peru"]
    _, body = render_request(config, {"country": "Laos"})
    assert body["prompt"] == "Q: France\nA: FRANCE\n\nQ: Peru\nA: PERU\nQ: Laos\nA:"
    _, body = render_request(config, {"country": "Peru"}, {"country": "Peru", "capital": "PERU"})
    assert body["prompt"] == "Q: France\nA: FRANCE\n\nQ: Chad\nA: CHAD\nQ: Peru\nA:"  # the spare, in its place


def test_chat_demonstrations_are_turns_before_the_last_user_message() -> None:
    found = SearchSpace({"messages": [{"role": "system", "content": "One city."},
                                      {"role": "user", "content": "{country}?"}],
                         "demos": demos(POOL, k=1, user="{country}?", assistant="{capital}")})
    _, body = render_request(found.config_at([0.2, 0.0]), {"country": "Cuba"})
    assert body["messages"] == [{"role": "system", "content": "One city."}, {"role": "user", "content": "Peru?"},
                                {"role": "assistant", "content": "PERU"}, {"role": "user", "content": "Cuba?"}]


def test_a_field_every_instance_shares_does_not_make_two_instances_one() -> None:
    assert same_instance({"task": "t", "q": "a"}, {"task": "t", "q": "a", "label": "x"})
    assert not same_instance({"task": "t", "q": "a"}, {"task": "t", "q": "b"})
    assert not same_instance({"task": "t", "q": "a"}, {"task": "t", "other": "b"})


def test_the_lock_form_holds_the_demonstrations_in_full_and_reads_back_the_same() -> None:
    found = space(demos=demos(POOL, k=3, format=FORMAT), temperature=uniform(0, 1))
    config = found.config_at([0.2, 0.5, 0.9, 0.1, 0.4])
    encoded = json.loads(json.dumps(found.encode(config)))
    assert encoded["demos"]["demonstrations"]["items"] == [dict(d) for d in config["demos"].items]
    assert found.decode(encoded) == config and found.contains(found.decode(encoded))
    edited = space(demos=demos(POOL[:-1] + [{"country": "Mali", "capital": "BAMAKO"}], k=3, format=FORMAT),
                   temperature=uniform(0, 1))
    assert edited.fingerprint() != found.fingerprint()  # a changed pool: the lock is stale


def test_the_cost_model_prices_demonstrations_by_how_many() -> None:
    found = space(demos=demos(POOL, k=randint(1, 4), format=FORMAT))
    configs = [c for c, _ in draw(found, 32, seed=1)]
    by_k = {c["demos"].k: shape(c) for c in configs}
    assert all(shape(c) == by_k[c["demos"].k] for c in configs) and len(set(by_k.values())) == 3


# --- credit and swaps ------------------------------------------------------------------------------------------


def test_credit_goes_to_the_demonstrations_of_configs_better_on_the_same_instances() -> None:
    def shown(*names: str) -> Demonstrations:
        return Demonstrations(tuple(d for d in POOL if d["country"] in names), None, FORMAT)

    results = [(shown("France", "Peru"), {0: 1.0, 1: 1.0, 2: 0.0}), (shown("Chad", "Peru"), {0: 0.0, 1: 1.0, 2: 0.0}),
               (shown("Chad", "Fiji"), {0: 0.0, 1: 0.0, 2: 0.0}), (shown("France", "Fiji"), {0: 1.0, 1: 0.0})]
    credit = credit_of(results, sign=1.0)
    france, chad = (credit.of(d) for d in POOL[:3:2])
    assert france > 0 > chad and credit.of(POOL[-1]) == 0.0  # never shown: no credit either way


def test_credit_on_a_metric_in_points_neither_overflows_nor_leaves_no_weight() -> None:
    domain = demos(POOL, k=2, format=FORMAT)
    results = [(Demonstrations((POOL[i], POOL[i + 1]), None, FORMAT), {0: 1000.0 * (i % 2), 1: 0.0})
               for i in range(0, 6, 2)] + [(Demonstrations((POOL[1], POOL[2]), None, FORMAT), {0: 1000.0, 1: 1000.0})]
    credit = credit_of(results, sign=1.0)
    assert max(abs(credit.of(d)) for d in POOL) < 5  # in standard deviations of the metric, not in points
    leader = Demonstrations((POOL[0], POOL[1]), POOL[2], FORMAT)
    points = {swapped([0.5] * 3, 0, domain, leader, credit, random.Random(seed)) for seed in range(20)}
    assert len(points) > 1
    assert by_credit([0.5] * 3, 0, domain, credit, random.Random(0))


def test_a_swap_keeps_the_leaders_demonstrations_but_its_least_credited() -> None:
    domain = demos(POOL, k=3, format=FORMAT)
    leader = Demonstrations(tuple(POOL[:3]), POOL[3], FORMAT)
    credit = credit_of([(Demonstrations((POOL[1],), None, FORMAT), {0: 0.0}),
                        (Demonstrations((POOL[0], POOL[2]), None, FORMAT), {0: 1.0})], sign=1.0)
    point = swapped([0.5] * 4, 0, domain, leader, credit, random.Random(0))
    after = SearchSpace({"api": "completions", "prompt": "{demos}", "demos": domain}).config_at(point)["demos"]
    assert after.items[0] == POOL[0] and after.items[2] == POOL[2] and after.items[1] not in POOL[:3]


# --- end to end ------------------------------------------------------------------------------------------------

REVIEWS = ["Loved every minute", "Great fun", "A waste of time", "Boring and long", "Brilliant acting",
           "I enjoyed it", "Dull", "Best film this year", "Terrible plot", "Wonderful score", "Awful", "A masterpiece",
           "Great cast", "Flat and slow", "Loved the ending", "Not worth it", "Brilliant and moving", "Tedious",
           "Wonderful fun", "Painful to watch", "Best cast ever", "Weak script", "Enjoyed every scene", "Forgettable"]
DEMOS_TEST = f'''
import pytest
from pytest_llmtune import demos, llm_eval, randint, uniform

REVIEWS = {REVIEWS!r}
POSITIVE = ("loved", "great", "brilliant", "enjoyed", "best", "wonderful", "masterpiece")
CASES = [{{"review": r, "label": "positive" if any(p in r.lower() for p in POSITIVE) else "negative"}}
         for r in REVIEWS]


@llm_eval(
    space={{
        "model": "gpt-4o-mini",
        "prompt": "{{demos}}Review: {{review}} ->",
        "demos": demos(k=randint(1, 5), format="Review: {{review}} -> {{label}}\\n"),
        "temperature": uniform(0, 1),
        "max_tokens": randint(1, 8),
    }},
    holdout=6, num_samples=8,
)
@pytest.mark.parametrize("review,label", [(c["review"], c["label"]) for c in CASES])
def test_review(llm, review, label):
    assert llm(review=review)[0].split()[0].lower() == label
'''


@pytest.fixture
def tuned(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    pytester.makepyfile(test_reviews=DEMOS_TEST)
    result = pytester.runpytest("--llm-tune", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    return pytester


def prompt_of(body: dict[str, Any]) -> str:
    return str(body["prompt"] if "prompt" in body else body["messages"][-1]["content"])


def shown_reviews(prompt: str) -> tuple[list[str], str]:
    """The reviews a prompt shows as demonstrations, and the one it asks about."""
    reviews = re.findall(r"Review: (.*?) ->", prompt)
    return reviews[:-1], reviews[-1]


def test_no_prompt_shows_its_own_instance_or_a_held_out_one(tuned: pytest.Pytester,
                                                           openai_server: FakeOpenAI) -> None:
    lock = read_lock(tuned.path)["targets"]["test_reviews.py::test_review"]
    order = list(range(len(REVIEWS)))
    random.Random(lock["seed"]).shuffle(order)  # the search's order (Target.shuffled): the held-out ones last
    held_out = {REVIEWS[i] for i in order[len(REVIEWS) - lock["holdout"]["instances"]:]}
    assert len(held_out) == 6
    asked = set()
    for body in openai_server.bodies:
        demonstrations, review = shown_reviews(prompt_of(body))
        asked.add(review)
        assert review not in demonstrations, body
        assert not held_out & set(demonstrations), body
    assert held_out <= asked  # the held-out instances were evaluated, with demonstrations of the others
    locked = lock["config"]["demos"]["demonstrations"]
    assert 1 <= len(locked["items"]) <= 4 and all(set(d) == {"review", "label"} for d in locked["items"])


def test_the_gate_replays_the_locked_demonstrations_offline(tuned: pytest.Pytester, openai_server: FakeOpenAI,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    sent = openai_server.requests
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    result = tuned.runpytest("--llm-test", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*test_review: pass_rate * all 24 results as locked: ok*"])
    assert openai_server.requests == sent


def test_create_renders_the_locked_demonstrations_as_the_tune_did(tuned: pytest.Pytester,
                                                                  openai_server: FakeOpenAI) -> None:
    from pytest_llmtune import create, locked

    config = locked("test_reviews.py::test_review", tuned.path / "llmtune.lock")
    items = config["demos"].items
    create({"review": "A new film"}, **config, cache=None)
    prompt = prompt_of(openai_server.bodies[-1])
    assert shown_reviews(prompt) == ([d["review"] for d in items], "A new film")
    tuned_prompts = [prompt_of(b) for b in openai_server.bodies[:-1]
                     if shown_reviews(prompt_of(b))[1] not in [d["review"] for d in items]]
    assert any(p.replace(shown_reviews(p)[1], "A new film") == prompt for p in tuned_prompts)


def test_the_summary_shows_k_and_which_demonstrations(tuned: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    result = tuned.runpytest("--llm-tune", "-p", "no:randomly", "-v")
    text = result.stdout.str()
    assert re.search(r"demos #\d+: k\d \[", text), text  # the legend
    assert re.search(r"  demos: \d demonstrations?, format \"Review: \{review\} -> \{label\}\\n\"", text), text
    assert re.search(r"    1\. \{\"review\": ", text), text


def test_a_changed_pool_makes_the_lock_stale_and_says_what_to_run(pytester: pytest.Pytester,
                                                                  openai_server: FakeOpenAI) -> None:
    pool = [{"review": r, "label": "positive" if "o" in r else "negative"} for r in REVIEWS[:6]]
    text = DEMOS_TEST.replace("demos(k=randint(1, 5)", f"demos({pool!r}, k=randint(1, 5)")
    pytester.makepyfile(test_reviews=text)
    assert pytester.runpytest("--llm-tune", "-p", "no:randomly").ret == 0
    pytester.makepyfile(test_reviews=text.replace("'Great fun', 'label'", "'Great film', 'label'"))  # the pool only
    result = pytester.runpytest("--llm-test", "-p", "no:randomly")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*the lock is stale*pytest --llm-tune*"])


def test_a_pool_too_small_for_k_fails_the_target_with_the_fix(pytester: pytest.Pytester,
                                                             openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_reviews=DEMOS_TEST.replace("randint(1, 5)", "30"))
    result = pytester.runpytest("--llm-tune", "-p", "no:randomly")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*could not tune test_reviews.py::test_review:", "demos(k=30): k can be 30, but "
                                 "the target's tuning instances hold 18 demonstrations (one of them is kept as the "
                                 "spare an instance sees in its own place): give k <= 17*",
                                 "*test_review: could not tune test_reviews.py::test_review: demos(k=30)*"])
    assert openai_server.requests == 0


def test_demos_is_exported(pytester: pytest.Pytester) -> None:
    import pytest_llmtune

    assert pytest_llmtune.demos is demos and "demos" in pytest_llmtune.__all__
    assert Path(pytest_llmtune.__file__).name == "__init__.py"


def test_an_edited_instance_makes_a_lock_on_demonstrations_from_the_instances_stale_not_rescored(
        tuned: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    lock = read_lock(tuned.path)["targets"]["test_reviews.py::test_review"]
    first = lock["config"]["demos"]["demonstrations"]["items"][0]["review"]
    text = (tuned.path / "test_reviews.py").read_text()
    edited = f"CASES = [{{'review': {first!r}, 'label': 'unsure'}}] + ["  # a locked demonstration's label fixed
    tuned.makepyfile(test_reviews=text.replace("CASES = [", edited, 1)
                     .replace("for r in REVIEWS]", f"for r in REVIEWS if r != {first!r}]"))
    sent = openai_server.requests
    result = tuned.runpytest("--llm-test", "--llm-record", "-p", "no:randomly")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*the lock is stale (*its search space changed*re-tune: `pytest --llm-tune*"])
    assert openai_server.requests == sent


DICT_PARAMS_TEST = DEMOS_TEST.replace(
    'demos(k=randint(1, 5), format="Review: {review} -> {label}\\n")',
    'demos(CASES, k=randint(1, 5), format="Review: {review} -> {label}\\n")').replace(
    '''@pytest.mark.parametrize("review,label", [(c["review"], c["label"]) for c in CASES])
def test_review(llm, review, label):
    assert llm(review=review)[0].split()[0].lower() == label''', '''@pytest.mark.parametrize("case", CASES)
def test_review(llm, case):
    assert llm(case)[0].split()[0].lower() == case["label"]''')


def test_a_pool_of_the_same_cases_as_a_dict_parameter_shows_no_instance_itself_nor_a_held_out_one(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    assert "demos(CASES" in DICT_PARAMS_TEST and "def test_review(llm, case)" in DICT_PARAMS_TEST
    pytester.makepyfile(test_reviews=DICT_PARAMS_TEST)
    result = pytester.runpytest("--llm-tune", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    lock = read_lock(pytester.path)["targets"]["test_reviews.py::test_review"]
    order = list(range(len(REVIEWS)))
    random.Random(lock["seed"]).shuffle(order)
    held_out = {REVIEWS[i] for i in order[len(REVIEWS) - lock["holdout"]["instances"]:]}
    for body in openai_server.bodies:
        demonstrations, review = shown_reviews(prompt_of(body))
        assert review not in demonstrations and not held_out & set(demonstrations), body


def test_a_grid_of_demonstrations_is_refused_with_what_to_use() -> None:
    with pytest.raises(InvalidSpaceError, match="strategy='grid' cannot list: use strategy='halving'"):
        space(demos=demos(POOL, k=1, format=FORMAT)).grid()


def test_the_html_report_shows_the_locked_demonstrations_rendered_in_full(tuned: pytest.Pytester,
                                                                         openai_server: FakeOpenAI) -> None:
    result = tuned.runpytest("--llm-tune", "--llm-report", "report.html", "-p", "no:randomly")
    assert result.ret == 0
    page = (tuned.path / "report.html").read_text()
    lock = read_lock(tuned.path)["targets"]["test_reviews.py::test_review"]["config"]["demos"]["demonstrations"]
    for demo in lock["items"]:
        assert f"Review: {demo['review']} -&gt; {demo['label']}" in page
    assert "spare, for an instance that is one of them" in page


def test_demonstrations_as_a_json_config_holds_them_render_as_the_lock_does() -> None:
    found = space(demos=demos(POOL, k=2, format=FORMAT))
    config = found.config_at([0.0, 0.2, 0.3])
    as_json = json.loads(json.dumps(found.encode(config)))  # e.g. a config list written to a file
    assert render_request(as_json, {"country": "Laos"}) == render_request(config, {"country": "Laos"})
