"""Cascades (docs/cascades.md): composed from the candidates' results, locked with the share each stage answered
and the cost-quality front, run end to end by the gate and by `create()`; and the check `accept` refused clearly
when it cannot be honoured."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import pytest
from conftest import read_lock
from openai_server import FakeOpenAI

from pytest_llmtune.search.cascade import CascadeTrial, Cascades, front, needed, outcome_on
from pytest_llmtune.search.direction import Direction
from pytest_llmtune.search.halving import Trial
from pytest_llmtune.search.scores import Outcome

PRICES = "llmtune_prices =\n    small-1 0.0001 0.0001\n    large-1 0.001 0.001\n"

CASCADE_TEST = '''
import pytest
from pytest_llmtune import choice, llm_eval

REVIEWS = [f"review {i}: a {'great' if i % 2 else 'dull'} film number {i}" for i in range(60)]


def accept(context, response):
    return "unsure" not in response.text


@llm_eval({"model": choice(["small-1", "large-1"]), "temperature": choice([0, 0.8]), "max_tokens": 4,
           "prompt": "Examples: ...\\nReview: {review}"},
          cascade=accept, select="cheapest", optimization_budget="OPTIMIZATION", holdout=20, num_samples=4)
@pytest.mark.parametrize("review", REVIEWS)
def test_review(llm, review):
    expected = "positive" if "great" in review else "negative"
    assert llm(review=review)[0].split()[0] == expected
'''


def cascade_project(pytester: pytest.Pytester, budget: str = "100000 tokens", body: str = CASCADE_TEST) -> None:
    pytester.makepyfile(test_review=body.replace("OPTIMIZATION", budget))
    pytester.makeini("[pytest]\n" + PRICES)


def test_a_tune_locks_a_cheap_cascade_that_the_gate_replays(pytester: pytest.Pytester,
                                                              openai_server: FakeOpenAI) -> None:
    cascade_project(pytester)
    result = pytester.runpytest("--llm-tune", "-p", "no:randomly")
    print(result.stdout.str())
    assert result.ret == 0
    entry = read_lock(pytester.path)["targets"]["test_review.py::test_review"]
    print(json.dumps(entry, indent=1)[:3000])
    assert False
