"""The one pytest internal this plugin leans on, pinned (pytest>=9,<10) and contract-tested
(tests/test_pytest_contract.py).

`run_unlogged(item, nextitem)`: one run of an item through pytest's own run protocol (setup, call, teardown, with
every plugin's hooks: fixtures, async runners, capture), without logging reports. pytest exposes the protocol
only as the `pytest_runtest_protocol` hook, which logs every run; pytest-rerunfailures calls
`runtestprotocol(log=False)` for the same reason. It also resets the item's request, so an item may run again.
"""

from __future__ import annotations

import pytest
from _pytest.runner import runtestprotocol

__all__ = ["run_unlogged"]


def run_unlogged(item: pytest.Item, nextitem: pytest.Item | None) -> list[pytest.TestReport]:
    """Set up, call and tear down `item` as pytest would, returning the reports instead of logging them.

    `nextitem` decides which higher-scoped fixtures survive the teardown, as in pytest's own loop.
    """
    return runtestprotocol(item, log=False, nextitem=nextitem)
