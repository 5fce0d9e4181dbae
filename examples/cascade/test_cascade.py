"""A tuned cascade of two local models: SmolLM2-135M-Instruct first, Gemma 3 270M (twice its price) when a check
without ground truth rejects the answer, on the capitals of the 150 most populous countries (50 held out).

    pytest --llm-tune --llm-local    # both servers start when first needed; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings: no server
    python app.py                    # the application runs the locked cascade with create()

The check, `accept`, is what the application can run on a new country: the answer must be the name of some capital
city (of any country). It catches a model that echoes the country, names another city or rambles; it cannot catch
a wrong capital. The space is small (6 configs), so strategy="grid" scores each on every instance and every
cascade of them is known. The same space twice: select="best" locks the best of the configs and cascades;
select="cheapest" the cheapest that the paired comparison cannot call worse than the best.
"""

import pytest
from places import COUNTRIES, is_a_capital, names_capital  # this folder's helper

from pytest_llmtune import choice, llm_eval

ZERO_SHOT = "What is the capital of {country}? Answer with the city name only."
THREE_SHOT = ("Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\n"
              "Country: Kenya\nCapital: Nairobi\n\nCountry: {country}\nCapital:")

SPACE = {
    "model_and_template": choice([  # per model what it takes: Gemma's GGUF has no chat template
        {"model": "smollm2", "api": "chat", "prompt": ZERO_SHOT},
        {"model": "smollm2", "api": "completions", "prompt": THREE_SHOT},
        {"model": "gemma3-270m", "api": "completions", "prompt": THREE_SHOT},
    ]),
    "temperature": choice([0, 0.6]),
    "max_tokens": 8,
    "stop": ["\n"],
    "seed": 7,
}


def accept(context, response):
    """Run by the tune on every answer, and by the application: create(..., filter_func=accept)."""
    return is_a_capital(response.text)


def check(llm, case):
    answer = llm(case)[0]
    assert names_capital(answer, case["capital"]), f"{case['capital']} not in {answer!r}"


@llm_eval(space=SPACE, cascade=accept, strategy="grid", holdout=50, optimization_budget="60000 tokens",
          threshold=0.5)
@pytest.mark.parametrize("case", COUNTRIES, ids=[c["country"] for c in COUNTRIES])
def test_capital(llm, case):
    check(llm, case)


@llm_eval(space=SPACE, cascade=accept, select="cheapest", strategy="grid", holdout=50,
          optimization_budget="60000 tokens", threshold=0.5)
@pytest.mark.parametrize("case", COUNTRIES, ids=[c["country"] for c in COUNTRIES])
def test_capital_cheapest(llm, case):
    check(llm, case)
