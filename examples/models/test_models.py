"""Which model? SmolLM2-135M-Instruct and Gemma 3 270M (a base model: completions only), each in its own local
llama-server, on country capitals (data from the countryinfo package).

    pytest --llm-tune --llm-local    # both servers start when first needed; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings: no server

The same space twice: once to find the best config, once under an inference budget of $0.00008 an instance,
which Gemma (twice SmolLM2's price) and votes of three cannot keep to.
"""

import pytest
from countries import COUNTRIES, names_capital  # this folder's helper

from pytest_llmtune import choice, llm_eval, randint, uniform

ZERO_SHOT = "What is the capital of {country}? Answer with the city name only."
THREE_SHOT = ("Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\n"
              "Country: Kenya\nCapital: Nairobi\n\nCountry: {country}\nCapital:")

SPACE = {
    "model_and_template": choice([  # per model what it takes: Gemma's GGUF has no chat template
        {"model": "smollm2", "api": "chat", "prompt": ZERO_SHOT},
        {"model": "smollm2", "api": "completions", "prompt": THREE_SHOT},
        {"model": "gemma3-270m", "api": "completions", "prompt": THREE_SHOT},
    ]),
    "temperature": uniform(0, 1),
    "max_tokens": randint(4, 13),
    "n": choice([1, 3]),
    "stop": ["\n"],
    "seed": 7,
}


def check(llm, case):
    texts = llm(case)
    correct = sum(names_capital(text, case["capital"]) for text in texts)
    assert correct * 2 > len(texts), f"{case['capital']} not in a majority of {texts}"  # n = 3: majority vote


@llm_eval(space=SPACE, threshold=0.5)
@pytest.mark.parametrize("case", COUNTRIES, ids=[c["country"] for c in COUNTRIES])
def test_capital(llm, case):
    check(llm, case)


@llm_eval(space=SPACE, inference_budget="$0.00008", threshold=0.4)
@pytest.mark.parametrize("case", COUNTRIES, ids=[c["country"] for c in COUNTRIES])
def test_capital_within_budget(llm, case):
    check(llm, case)
