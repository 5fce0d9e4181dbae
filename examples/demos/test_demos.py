"""Demonstrations chosen by the search, against hand-written templates and a random search, on a local model.

    pytest --llm-tune --llm-local    # five searches on SmolLM2-135M via llama.cpp; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings

The same 100 countries, the same 40 of them held out, the same budget of 40,000 tokens for each target:
- test_capital: the search chooses which demonstrations (of the 60 tuning instances) and how many, with the
  settings;
- test_capital_hand_written: the templates of examples/capitals (zero-shot, system and user, three-shot);
- test_capital_random_search: the space of test_capital, searched at random (no halving, nothing learnt).

And the same countries' regions (Africa, Americas, Asia, Europe, Oceania), where which demonstrations are shown
matters more: test_region (demonstrations by the search) against test_region_hand_written.
"""

import importlib.util
import json
import unicodedata
from pathlib import Path

import pytest

from pytest_llmtune import choice, demos, llm_eval, randint, uniform


def load_countries(count: int, field: str = "capital") -> list[tuple[str, str]]:
    """The `count` most populous countries in countryinfo's data, with their capitals (or another field)."""
    spec = importlib.util.find_spec("countryinfo")
    assert spec is not None and spec.submodule_search_locations, "pip install countryinfo==1.0.1"
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    rows = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(data_dir.glob("*.json"))]
    rows = [r for r in rows if r.get("capital") and r.get("region") and r.get("population")]
    rows.sort(key=lambda r: (-r["population"], r["name"]))
    return [(r["name"], r[field]) for r in rows[:count]]


COUNTRIES = load_countries(100)
BUDGET = "40000 tokens"
SETTINGS = {
    "model": "smollm2",
    "temperature_or_top_p": choice([{"temperature": uniform(0, 1.2)}, {"top_p": uniform(0.1, 1)}]),
    "max_tokens": randint(4, 17),
    "n": choice([1, 3, 5]),
    "stop": choice([["\n"], None]),
    "seed": 7,
}
WITH_DEMOS = {
    **SETTINGS,
    "api": "completions",
    "prompt": "{demos}Country: {country}\nCapital:",
    "demos": demos(k=randint(0, 9), format="Country: {country}\nCapital: {capital}\n\n"),
}
HAND_WRITTEN = {  # examples/capitals' templates
    **SETTINGS,
    "template": choice([
        {"api": "chat", "prompt": "What is the capital of {country}? Answer with the city name only."},
        {"api": "chat", "messages": [{"role": "system", "content": "You are a geography quiz. Reply with one city."},
                                     {"role": "user", "content": "Capital of {country}?"}]},
        {"api": "completions", "prompt": "Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\n"
                                         "Country: Kenya\nCapital: Nairobi\n\nCountry: {country}\nCapital:"},
    ]),
}


def plain(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def names_capital(text: str, capital: str) -> bool:
    first_line = text.strip().split("\n")[0]
    return plain(capital.split(" D.C.")[0]) in plain(first_line)


def check(llm, country: str, capital: str) -> None:
    texts = llm(country=country)
    correct = sum(names_capital(text, capital) for text in texts)
    assert correct * 2 > len(texts), f"{capital} not in a majority of {texts}"  # n > 1: majority vote


CASES = pytest.mark.parametrize("country,capital", COUNTRIES, ids=[country for country, _ in COUNTRIES])


@llm_eval(space=WITH_DEMOS, optimization_budget=BUDGET, num_samples=-1, holdout=40)
@CASES
def test_capital(llm, country, capital):
    check(llm, country, capital)


@llm_eval(space=HAND_WRITTEN, optimization_budget=BUDGET, num_samples=-1, holdout=40)
@CASES
def test_capital_hand_written(llm, country, capital):
    check(llm, country, capital)


@llm_eval(space=WITH_DEMOS, optimization_budget=BUDGET, num_samples=-1, holdout=40, strategy="random")
@CASES
def test_capital_random_search(llm, country, capital):
    check(llm, country, capital)


REGIONS = load_countries(100, "region")
REGION_CASES = pytest.mark.parametrize("country,region", REGIONS, ids=[country for country, _ in REGIONS])
LABELS = "Africa, Americas, Asia, Europe or Oceania"
REGION_WITH_DEMOS = {
    **SETTINGS,
    "api": "completions",
    "prompt": "{demos}Country: {country}\nRegion:",
    "demos": demos(k=randint(0, 9), format="Country: {country}\nRegion: {region}\n\n"),
}
REGION_HAND_WRITTEN = {
    **SETTINGS,
    "template": choice([
        {"api": "chat", "prompt": f"Which region is {{country}} in: {LABELS}? Answer with the region only."},
        {"api": "completions", "prompt": f"Each country's region ({LABELS}).\nCountry: {{country}}\nRegion:"},
        {"api": "completions", "prompt": "Country: France\nRegion: Europe\n\nCountry: Japan\nRegion: Asia\n\n"
                                         "Country: Kenya\nRegion: Africa\n\nCountry: {country}\nRegion:"},
    ]),
}


def check_region(llm, country: str, region: str) -> None:
    texts = llm(country=country)
    correct = sum(plain(text).strip().startswith(region.lower()) for text in texts)
    assert correct * 2 > len(texts), f"{region} not in a majority of {texts}"


@llm_eval(space=REGION_WITH_DEMOS, optimization_budget=BUDGET, num_samples=-1, holdout=40)
@REGION_CASES
def test_region(llm, country, region):
    check_region(llm, country, region)


@llm_eval(space=REGION_HAND_WRITTEN, optimization_budget=BUDGET, num_samples=-1, holdout=40)
@REGION_CASES
def test_region_hand_written(llm, country, region):
    check_region(llm, country, region)
