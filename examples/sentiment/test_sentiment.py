"""Tune a sentiment classifier's prompt, temperature and max_tokens; gate CI on the locked result.

    pytest --llm-tune    # search; writes llmtune.lock and llmtune_cassettes/
    pytest --llm-test    # replay the recordings with the locked config; fails on a regression
"""

import pytest

from pytest_llmtune import choice, llm_eval, randint, uniform

REVIEWS = {
    "Loved every minute of it": "positive",
    "Great fun from start to finish": "positive",
    "A brilliant, moving film": "positive",
    "I enjoyed the soundtrack and the cast": "positive",
    "The best thing I saw this year": "positive",
    "A wonderful surprise": "positive",
    "An absolute masterpiece": "positive",
    "Great acting, great story": "positive",
    "A waste of time": "negative",
    "Boring and far too long": "negative",
    "The plot made no sense": "negative",
    "Dull characters and a flat ending": "negative",
    "I walked out halfway": "negative",
    "Terrible dialogue throughout": "negative",
    "Not worth the ticket": "negative",
    "Awful pacing, awful jokes": "negative",
}
CASES = [{"review": review, "label": label} for review, label in REVIEWS.items()]


@llm_eval(
    space={
        "model": "gpt-4o-mini",
        "prompt": choice([
            "Review: {review}\nSentiment (positive or negative):",
            "Examples:\nReview: Great fun -> positive\nReview: A waste of time -> negative\nReview: {review} ->",
        ]),
        "temperature": uniform(0, 1),
        "max_tokens": randint(1, 16),
    },
    threshold=0.8,
)
@pytest.mark.parametrize("case", CASES, ids=[c["review"][:20] for c in CASES])
def test_sentiment(llm, case):
    texts = llm(case)  # the n texts for this review, under the config being evaluated
    assert texts[0].split()[0].strip(".,").lower() == case["label"]
