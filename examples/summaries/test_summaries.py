"""One-sentence summaries of generated paragraphs on a small local model, checked two ways: ROUGE-L against a
reference summary (a metric of pytest_llmtune.evals), and an LLM judge (`llm.judge`, here the local model itself).

    pytest --llm-tune --llm-local    # search on SmolLM2-135M via llama.cpp; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings, the judge's calls included

The paragraphs are made from the countryinfo package's data (the capitals example's countries), their sentences in
an order that varies by country, so that a summary must pick the country, its region and its capital out of the
paragraph rather than copy its first sentence.
"""

import importlib.util
import json
from pathlib import Path

import pytest

from pytest_llmtune import choice, llm_eval, randint, uniform
from pytest_llmtune.evals import rouge, similarity


def load_paragraphs(count: int = 40) -> list[dict[str, str]]:
    """The `count` most populous countries in countryinfo's data: a paragraph about each and its reference
    summary."""
    spec = importlib.util.find_spec("countryinfo")
    assert spec is not None and spec.submodule_search_locations, "pip install countryinfo==1.0.1"
    data_dir = Path(next(iter(spec.submodule_search_locations))) / "data"
    rows = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(data_dir.glob("*.json"))]
    rows = [r for r in rows if r.get("capital") and r.get("population") and r.get("subregion") and r.get("area")]
    rows.sort(key=lambda r: (-r["population"], r["name"]))
    cases = []
    for number, r in enumerate(rows[:count]):
        millions = r["population"] / 1e6
        facts = [f"{r['name']} lies in {r['subregion']}.",
                 f"It covers {r['area']:,} square kilometres.",
                 f"About {millions:.0f} million people live there." if millions >= 1 else
                 f"About {r['population']:,} people live there.",
                 f"Its capital city is {r['capital'].rstrip('.')}.",
                 f"Its people are called {r['demonym']}." if r.get("demonym") else
                 f"It borders {len(r.get('borders') or [])} countries."]
        order = [0, *sorted(range(1, 5), key=lambda i, n=number: (i * 7 + n * 3) % 5)]  # the name first
        cases.append({"country": r["name"], "paragraph": " ".join(facts[i] for i in order),
                      "reference": f"{r['name']} is a country in {r['subregion']} whose capital is "
                                   f"{r['capital'].rstrip('.')}."})
    return cases


CASES = load_paragraphs()

INSTRUCTION = "Summarise this paragraph in one sentence.\n\n{paragraph}"
SYSTEM = [{"role": "system", "content": "You write one-sentence summaries."},
          {"role": "user", "content": "{paragraph}"}]
ONE_SHOT = ("Paragraph: Peru lies in South America. About 31 million people live there. Its capital city is Lima.\n"
            "Summary: Peru is a country in South America whose capital is Lima.\n\n"
            "Paragraph: {paragraph}\nSummary:")

SPACE = {
    "model": "smollm2",
    "template": choice([
        {"api": "chat", "prompt": INSTRUCTION},
        {"api": "chat", "messages": SYSTEM},
        {"api": "completions", "prompt": ONE_SHOT},
    ]),
    "temperature": uniform(0, 1),
    "max_tokens": randint(12, 41),
    "stop": choice([["\n"], None]),
    "seed": 7,
}

RUBRIC = ("A one-sentence summary of the paragraph that names the country, where it lies and its capital city, "
          "and adds nothing the paragraph does not say.")


def first_sentence(text: str) -> str:
    line = text.strip().split("\n")[0]
    return line.split(". ")[0].rstrip(".") + "." if line else ""


@llm_eval(space=SPACE, metric="rougeL", threshold=0.6, name="summaries-rouge")
@pytest.mark.parametrize("case", CASES, ids=[c["country"] for c in CASES])
def test_summary_rouge(llm, case):
    summary = first_sentence(llm(case)[0])
    return {**rouge(summary, case["reference"]), **similarity(summary, case["reference"])}


# the judge: SmolLM2 itself, through completions (in chat it gave no grade at all: docs/judge.md)
JUDGE = {"model": "smollm2", "api": "completions", "max_tokens": 24}


@llm_eval(space=SPACE, metric="judge", name="summaries-judge", judge=JUDGE)  # no threshold: see README.md
@pytest.mark.parametrize("case", CASES, ids=[c["country"] for c in CASES])
def test_summary_judged(llm, case):
    summary = first_sentence(llm(case)[0])
    graded = llm.judge(RUBRIC, summary or "(nothing)", context=case["paragraph"], reference=case["reference"])
    return {"judge": graded.score, **rouge(summary, case["reference"], kinds=("rougeL",))}
