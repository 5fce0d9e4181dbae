"""The application side: the locked cascade run with create(), on the local models, outside pytest.

    python -m pytest_llmtune.local serve      # in this folder: the two local servers (Ctrl-C stops them)
    python app.py URL_OF_SMOLLM2 URL_OF_GEMMA  # the base URLs it printed

Each call tries the stages in order until `accept`, the check the tune used, takes an answer.
"""

import sys
from collections import Counter

from places import COUNTRIES, names_capital
from test_cascade import accept

from pytest_llmtune import create, locked

PRICES = {"smollm2": (0.00135, 0.00135), "gemma3-270m": (0.00268, 0.00268)}  # as pytest.ini prices them

urls = dict(zip(("smollm2", "gemma3-270m"), sys.argv[1:3], strict=True))
config = locked("test_cascade.py::test_capital")
stages = [{**stage, "base_url": urls[stage["model"]], "price": PRICES[stage["model"]]}
          for stage in config.pop("config_list")]
answered, right = Counter(), 0
for case in COUNTRIES[-50:]:  # the 50 least populous of the 150
    response = create(case, **config, config_list=stages, filter_func=accept)
    answered[f"stage {response.config_index + 1}" + ("" if response.accepted else " (rejected, last)")] += 1
    right += names_capital(response.text, case["capital"])
print(f"{right} of 50 right; answered by {dict(sorted(answered.items()))}")
