"""Cost and budgets end to end: prices, the inference budget, the optimization budget, replays that cost nothing."""

from __future__ import annotations

import re
import threading
import time

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock
from pytest_llmtune.llm.cost import PRICES_DATE
from pytest_llmtune.search.budget import Budget, BudgetSpent, Spending

PADDING = " ".join(["Please read the following review with great care before you answer."] * 6)

REVIEWS = '''
import pytest
from pytest_llmtune import llm_eval, choice, randint

REVIEWS = [f"{word} film number {i}" for i in range(8) for word in ("great", "dull")]

@llm_eval(space={"model": "gpt-4o-mini", "temperature": 0, "max_tokens": MAX_TOKENS, "n": N,
                 "prompt": choice(["Examples: Review: {r}", "PADDING Examples: Review: {r}"])},
          BUDGETS)
@pytest.mark.parametrize("r", REVIEWS)
def test_reviews(llm, r):
    assert llm(r=r)[0].startswith("positive" if r.startswith("great") else "negative")
'''


def reviews(budgets: str, max_tokens: str = "3", n: str = "1") -> str:
    return (REVIEWS.replace("PADDING", PADDING).replace("BUDGETS", budgets)
            .replace("MAX_TOKENS", max_tokens).replace("N", n, 1).replace('"n": N', f'"n": {n}'))


def test_a_config_over_the_inference_budget_is_dropped_early(pytester: pytest.Pytester,
                                                             openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews('inference_budget="30 tokens"'))

    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "1")

    assert result.ret == pytest.ExitCode.OK
    dropped = re.search(r"config #(\d+) dropped for cost after (\d+) instances: mean (\d+) tokens per instance, "
                        r"over the inference budget of 30 tokens at 95% confidence", result.stdout.str())
    assert dropped, result.stdout.str()
    assert int(dropped.group(2)) < 16  # never evaluated on every instance first
    (lock,) = read_lock(pytester.path)["targets"].values()
    assert not lock["config"]["prompt"].startswith("Please")
    assert lock["tokens"]["per_instance"] <= 30


def test_n_times_max_tokens_over_the_budget_is_skipped_without_a_request(pytester: pytest.Pytester,
                                                                         openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews('inference_budget="40 tokens"', max_tokens="choice([3, 50])"))

    result = pytester.runpytest("--llm-tune")

    result.stdout.fnmatch_lines(["*skipped before any request (*): n=1 x max_tokens=50 can cost 50 tokens per "
                                 "instance, over the inference budget*"])
    assert all(body["max_tokens"] == 3 for body in openai_server.bodies)


def test_a_budget_that_cannot_finish_one_config_says_so_before_the_search_and_what_would(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews('optimization_budget="200 tokens"'))

    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "1")

    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert openai_server.requests == 2  # one pilot evaluation per prompt template, then nothing
    said = re.search(r"the optimization budget of 200 tokens cannot pay for one config on all 16 instances: the "
                     r"cheapest of 2 candidates costs about (\d+) tokens an instance \(priced from 2 measured "
                     r"evaluations\), so a lock needs about [\d,]+ tokens more; give "
                     r'optimization_budget="(\d+) tokens" or more', result.stdout.str())
    assert said, result.stdout.str()
    assert not (pytester.path / "llmtune.lock").exists()

    pytester.makepyfile(reviews(f'optimization_budget="{said.group(2)} tokens"'))
    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()  # the budget it named is enough for a lock
    (lock,) = read_lock(pytester.path)["targets"].values()
    assert lock["instances"] == 16


def test_the_tune_stops_within_one_request_of_its_optimization_budget(pytester: pytest.Pytester,
                                                                      openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews('num_samples=-1, optimization_budget="1500 tokens"', max_tokens="randint(2, 30)"))

    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "1", "-o", "llmtune_num_samples=4")

    spent = re.search(r"optimization budget 1,500 tokens: spent ([\d,]+) tokens", result.stdout.str())
    assert spent, result.stdout.str()
    largest_request = len(PADDING.split()) + 6 + 30
    assert int(spent.group(1).replace(",", "")) <= 1500 + largest_request
    assert result.ret == pytest.ExitCode.OK  # a budget that covers a config on every instance always locks one
    assert read_lock(pytester.path)["targets"]


def test_replayed_responses_cost_nothing_so_a_rerun_goes_further(pytester: pytest.Pytester,
                                                                 openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews('optimization_budget="200 tokens"'))
    pytester.runpytest("--llm-tune", "--llm-concurrency", "1")
    first = openai_server.requests

    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "1")

    assert openai_server.requests > first  # it spent its budget on new requests, not on the replayed ones
    result.stdout.fnmatch_lines(["*; * replayed (* tokens, $*, not spent)*"])


def test_sampling_until_the_budget_is_spent(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews('num_samples=-1, optimization_budget="5000 tokens"',
                                max_tokens="randint(2, 30)"))

    result = pytester.runpytest("--llm-tune", "-o", "llmtune_num_samples=4")

    assert result.stdout.str().count("llmtune: tuning ") >= 2  # more than one batch of configs
    result.stdout.fnmatch_lines(["*optimization budget 5,000 tokens: spent *; stopped: the * left of the "
                                 "optimization budget cannot finish another config (about * tokens needed)"])


def test_prices_come_from_the_table_and_the_ini(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews("").replace('"gpt-4o-mini"', '"my-model"'))
    pytester.makeini("[pytest]\nllmtune_prices = my-model 1.0 2.0\n")

    pytester.runpytest("--llm-tune")

    (lock,) = read_lock(pytester.path)["targets"].values()
    tokens = lock["tokens"]["per_instance"]
    assert 0.001 * tokens < lock["cost"]["usd_per_instance"] <= 0.002 * tokens


def test_an_unknown_model_costs_nothing_with_one_warning(pytester: pytest.Pytester,
                                                         openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(reviews("").replace('"gpt-4o-mini"', '"my-model"'))

    result = pytester.runpytest("--llm-tune")

    assert result.stdout.str().count("no price for model 'my-model' (the built-in table holds OpenAI's prices of "
                                     f"{PRICES_DATE}): its cost counts as 0") == 1
    result.stdout.fnmatch_lines(["*llmtune_prices = my-model <dollars per 1K input tokens>*"])
    result.stdout.fnmatch_lines(["*in create(): price=(input_per_1k, output_per_1k); or give the budget in tokens"])


def test_a_bad_budget_fails_at_collection(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(reviews('inference_budget="lots"'))

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "inference_budget='lots': give dollars (0.02, \"$0.02\") or tokens (\"500 tokens\")" in result.stdout.str()


def spend_with_threads(worst: int | None, threads: int = 8) -> Spending:
    """`threads` threads sending requests that cost 250 tokens (worst case `worst`) until 1,000 tokens are spent."""
    spending = Spending(Budget.parse("1000 tokens", "optimization_budget"))

    def send_until_spent() -> None:
        while True:
            try:
                spending.admit(worst)
            except BudgetSpent:
                return
            time.sleep(0.005)
            spending.settle(250, 0.0)

    running = [threading.Thread(target=send_until_spent) for _ in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(timeout=30)
    return spending


@pytest.mark.parametrize("worst", [300, None])
def test_requests_in_flight_count_at_their_worst_so_the_budget_is_overrun_by_one_at_most(worst: int | None) -> None:
    """The first 8 requests used to go out together (nothing measured, nothing reserved), spending 2,000 of
    1,000 tokens. Now a tune ends between the budget and one request's worst case over it; without a bound (no
    max_tokens) the costliest so far stands in for it."""
    spending = spend_with_threads(worst)

    most = 300 if worst else 250 * 8  # unbounded requests: the first ones, before any was measured, go together
    assert 1000 <= spending.spent <= 1000 + most


@pytest.mark.parametrize("worst", [60, None])
def test_what_the_lock_needs_is_never_spent_on_exploration(worst: int | None) -> None:
    """Exploration used to be admitted while the spent amount and the room kept for the leader (150 tokens, of
    which 125 are what its lock needs, the rest a margin for noise) were under the budget, so its last request
    (60 tokens) could eat into what the lock needs, and the leader's held-out instances went short. Now a request
    is admitted only when its own worst case also fits beside what the lock needs; with nothing kept, the budget
    is spent to the end as before."""
    spending = Spending(Budget(1000.0, "tokens"))
    spending.admit(worst)
    spending.settle(60, 0.0)  # the costliest so far stands in for a request without a bound
    spending.spent = 830.0
    stopped = r"stopped at 830 tokens of the optimization budget of 1,000 tokens: what is left is kept to finish"
    with spending.keeping(lambda: 150.0, lambda: 125.0), pytest.raises(BudgetSpent, match=stopped + r" the leader "
                                                                                          r"\(about 125 tokens; the "
                                                                                          "reserve is 150 tokens"):
        spending.admit(worst)  # 830 + 150 < 1,000, but 830 + 60 + 125 > 1,000: refused
    spending.spent = 800.0
    with spending.keeping(lambda: 150.0, lambda: 125.0):
        spending.admit(worst)  # 800 + 60 + 125 <= 1,000
    spending.settle(60, 0.0)
    spending.spent = 990.0
    spending.admit(worst)  # nothing kept: 990 < 1,000, the budget spent to the end


def test_a_retried_request_keeps_its_room_in_the_budget(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    """The SDK's retry of a 5xx passes through the budget's gate again, in the same thread: it must not wait for
    its own room (a deadlock) nor hold two."""
    pytester.makepyfile(reviews('optimization_budget="2000 tokens"'))
    openai_server.fail_next(3, status=500)

    result = pytester.runpytest("--llm-tune", "--llm-concurrency", "2")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*optimization budget 2,000 tokens: spent *"])


@pytest.mark.parametrize(("model", "ini", "budgets", "why"), [
    ("free-model", "llmtune_prices = free-model 0 0", "optimization_budget=0.01, num_samples=-1",
     "'free-model' costs $0 a token"),
    ("my-model", "", "optimization_budget=0.01", "no price is known for 'my-model'"),
    ("free-model", "llmtune_prices = free-model 0 0", 'inference_budget=0.002, optimization_budget="2000 tokens"',
     "'free-model' costs $0 a token"),
])
def test_a_dollar_budget_on_models_counted_at_nothing_is_refused_before_any_request(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, model: str, ini: str, budgets: str, why: str) -> None:
    """A new user gave a local model (free) a budget of $0.01: it could never be spent, and with num_samples=-1
    the tune drew brackets until it was killed. Such a budget is refused, with the fix, before anything is sent;
    the preview (--co) says the same."""
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(reviews(budgets).replace('"gpt-4o-mini"', f'"{model}"'))

    for flags in (["--llm-tune"], ["--llm-tune", "--co"]):
        result = pytester.runpytest(*flags)

        assert result.ret == pytest.ExitCode.USAGE_ERROR
        name = "inference_budget" if budgets.startswith("inference") else "optimization_budget"
        result.stderr.fnmatch_lines([f"*test_reviews: {name}=0.0* is in dollars, but every model it may call is "
                                     f"counted at $0 ({why}), so it could never bind*"])
        assert f'give it in tokens, e.g. {name}="' in result.stderr.str()
        assert ("the tune would not stop" in result.stderr.str()) == ("num_samples=-1" in budgets)
    assert openai_server.requests == 0


@pytest.mark.parametrize("space", [
    '"model": choice(["gpt-4o-mini", "my-model"])',
    '"variant": choice([{"model": "free-model"}, {"temperature": 0}])',  # the second calls the default model
], ids=["one-model-priced", "a-group-option-calls-the-default-model"])
def test_a_dollar_budget_binds_when_one_of_the_models_has_a_price(pytester: pytest.Pytester,
                                                                 openai_server: FakeOpenAI, space: str) -> None:
    pytester.makeini("[pytest]\nllmtune_prices = free-model 0 0\nllmtune_model = gpt-4o-mini\n")
    pytester.makepyfile(reviews("optimization_budget=0.01").replace('"model": "gpt-4o-mini"', space)
                        .replace('"temperature": 0, ', ""))

    result = pytester.runpytest("--llm-tune", "--co")

    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert "is in dollars" not in result.stdout.str() + result.stderr.str()


def test_a_deselected_target_with_a_dollar_budget_on_a_free_model_blocks_nothing(pytester: pytest.Pytester,
                                                                                openai_server: FakeOpenAI) -> None:
    pytester.makeini("[pytest]\nllmtune_prices = free-model 0 0\n")
    pytester.makepyfile(test_free=reviews("optimization_budget=0.01").replace('"gpt-4o-mini"', '"free-model"'),
                        test_paid=reviews("optimization_budget=0.01").replace("def test_reviews", "def test_paid"))

    selected = pytester.runpytest("--llm-tune", "--co", "test_paid.py")
    everything = pytester.runpytest("--llm-tune", "--co")

    assert selected.ret == pytest.ExitCode.OK, selected.stderr.str()
    assert everything.ret == pytest.ExitCode.USAGE_ERROR
    assert "test_free.py::test_reviews: optimization_budget=0.01 is in dollars" in everything.stderr.str()


def test_a_token_budget_may_be_written_as_the_summary_writes_it() -> None:
    assert Budget.parse("3,000 tokens", "optimization_budget") == Budget(3000.0, "tokens")
    assert Budget.parse("$1,250.50", "optimization_budget") == Budget(1250.5, "usd")
    with pytest.raises(ValueError, match="give dollars"):
        Budget.parse("3,00 tokens", "optimization_budget")
