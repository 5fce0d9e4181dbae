"""Country capitals (data from the countryinfo package) on a small local model.

    pytest --llm-tune --llm-local    # search on SmolLM2-135M via llama.cpp; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings
"""

import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

from pytest_llmtune import choice, llm_eval, randint, uniform


def load_countries(count: int = 40) -> list[dict[str, str]]:
    """The `count` most populous countries in countryinfo's data, with their capitals."""
    spec = importlib.util.find_spec("countryinfo")
    assert spec is not None and spec.submodule_search_locations, "pip install countryinfo==1.0.1"
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    rows = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(data_dir.glob("*.json"))]
    rows = [r for r in rows if r.get("capital") and r.get("population")]
    rows.sort(key=lambda r: (-r["population"], r["name"]))
    return [{"country": r["name"], "capital": r["capital"]} for r in rows[:count]]


COUNTRIES = load_countries()

ZERO_SHOT = "What is the capital of {country}? Answer with the city name only."
SYSTEM = [{"role": "system", "content": "You are a geography quiz. Reply with one city name."},
          {"role": "user", "content": "Capital of {country}?"}]
THREE_SHOT = ("Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\n"
              "Country: Kenya\nCapital: Nairobi\n\nCountry: {country}\nCapital:")


def plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def names_capital(text: str, capital: str) -> bool:
    first_line = text.strip().split("\n")[0]
    return plain(capital.split(" D.C.")[0]) in plain(first_line)


@llm_eval(
    space={
        "model": "smollm2",
        "template": choice([
            {"api": "chat", "prompt": ZERO_SHOT},
            {"api": "chat", "messages": SYSTEM},
            {"api": "completions", "prompt": THREE_SHOT},
        ]),
        "temperature_or_top_p": choice([{"temperature": uniform(0, 1.2)}, {"top_p": uniform(0.1, 1)}]),
        "max_tokens": randint(4, 17),
        "n": choice([1, 3, 5]),
        "stop": choice([["\n"], None]),
        "seed": 7,
    },
    threshold=0.4,  # the winner confirmed at 0.700 on fresh samples (the search measured 0.675 on them)
)
@pytest.mark.parametrize("case", COUNTRIES, ids=[c["country"] for c in COUNTRIES])
def test_capital(llm, case):
    texts = llm(case)
    correct = sum(names_capital(text, case["capital"]) for text in texts)
    assert correct * 2 > len(texts), f"{case['capital']} not in a majority of {texts}"  # n > 1: majority vote
