"""Two-digit addition on a small local model: template, temperature or top_p, max_tokens, n with a vote, stop.

    pytest --llm-tune --llm-local    # search on SmolLM2-135M via llama.cpp; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings
"""

import random

import pytest

from pytest_llmtune import choice, llm_eval, randint, uniform
from pytest_llmtune.evals import is_equiv, vote

rng = random.Random(2026)  # the items are generated, so the same seed gives the same 40 sums
ITEMS = [{"a": rng.randint(10, 49), "b": rng.randint(10, 49)} for _ in range(40)]

ZERO_SHOT = "What is {a} + {b}? Answer with the number only."
FEW_SHOT = "12 + 35 = 47\n23 + 41 = 64\n30 + 18 = 48\n{a} + {b} ="
FEW_SHOT_QA = ("Q: What is 12 + 35?\nA: 47\nQ: What is 23 + 41?\nA: 64\nQ: What is 30 + 18?\nA: 48\n"
               "Q: What is {a} + {b}?\nA:")


@llm_eval(
    space={
        "model": "smollm2",
        "template": choice([
            {"api": "chat", "prompt": ZERO_SHOT},
            {"api": "completions", "prompt": FEW_SHOT},
            {"api": "completions", "prompt": FEW_SHOT_QA},
        ]),
        "temperature_or_top_p": choice([{"temperature": uniform(0, 1.2)}, {"top_p": uniform(0.1, 1)}]),
        "max_tokens": randint(4, 17),
        "n": choice([1, 3, 5]),
        "stop": choice([["\n"], None]),
        "seed": 7,
    },
    threshold=0.4,
)
@pytest.mark.parametrize("item", ITEMS, ids=[f"{i['a']}+{i['b']}" for i in ITEMS])
def test_addition(llm, item):
    # each text's final answer (a \boxed{} or the last number), majority vote over the n texts
    assert is_equiv(vote(llm(item)).answer, str(item["a"] + item["b"]))
