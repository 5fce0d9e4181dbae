"""The one pytest internal pytest-llmtune leans on, `_pytest.runner.runtestprotocol(log=False)` (through
`pytest_llmtune.session.protocol.run_unlogged`): what the plugin needs from it, checked against the installed
pytest, so that an upgrade that changes it fails here and not as a wrong score."""

from __future__ import annotations

import pytest

CONFTEST = '''
import pytest
from pytest_llmtune.session.protocol import run_unlogged

EVENTS = []
LOGGED = []

@pytest.fixture
def resource():
    EVENTS.append("setup")
    yield "alive"
    EVENTS.append("teardown")

@pytest.fixture(scope="module")
def shared():
    EVENTS.append("module setup")
    yield
    EVENTS.append("module teardown")

def pytest_runtest_logreport(report):
    LOGGED.append((report.nodeid, report.when))

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    if item.name == "test_a":
        sibling = item.session.items[1]
        for _ in range(2):
            reports = run_unlogged(item, sibling)
            EVENTS.append("reports " + " ".join(f"{r.when}:{r.outcome}" for r in reports))
        assert not LOGGED, "an unlogged run logged a report"
    return (yield)

def pytest_sessionfinish(session):
    print()
    print("EVENTS", EVENTS)
    print("LOGGED", len(LOGGED))
'''

TESTS = '''
def test_a(resource, shared):
    EVENTS.append("body " + resource)

def test_b(shared):
    pass

from conftest import EVENTS
'''


def test_an_unlogged_run_sets_up_calls_and_tears_down_and_the_item_can_run_again(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_contract=TESTS)

    result = pytester.runpytest("-s", "-p", "no:randomly")

    result.assert_outcomes(passed=2)
    once = ["setup", "body alive", "teardown", "reports setup:passed call:passed teardown:passed"]
    # the module fixture stays up across the unlogged runs (the next item shares the module) and the real one
    real = ["setup", "body alive", "teardown"]
    expected = ["module setup", *once, *once, *real, "module teardown"]
    result.stdout.fnmatch_lines([f"EVENTS {expected}", "LOGGED 6"])  # only the two real runs' reports were logged


def test_an_unlogged_run_reports_a_failure_without_raising_it(pytester: pytest.Pytester) -> None:
    check = '''reports = run_unlogged(item, sibling)
            assert [r.when for r in reports] == ["setup", "call", "teardown"] and reports[1].failed'''
    pytester.makeconftest(CONFTEST.replace("reports = run_unlogged(item, sibling)", check))
    pytester.makepyfile(test_contract=TESTS.replace('EVENTS.append("body " + resource)',
                                                    'EVENTS.append("body " + resource); assert False, "a miss"'))

    result = pytester.runpytest("-s", "-p", "no:randomly")

    result.assert_outcomes(passed=1, failed=1)  # the real run of test_a fails as it would without the plugin
    result.stdout.fnmatch_lines(["*reports setup:passed call:failed teardown:passed*"])
