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


def test_determine_setup_chooses_the_rootdir_from_the_paths_it_is_given(tmp_path: object) -> None:
    """`session/rootdir.refuse_moved_rootdir` asks pytest's `_pytest.config.findpaths.determine_setup` which rootdir
    a command line's paths give (no public API does): keyword arguments, the rootdir first in what it returns."""
    from pathlib import Path

    from _pytest.config.findpaths import determine_setup

    project = Path(str(tmp_path)) / "project"
    (project / "tests").mkdir(parents=True)
    (project / "pytest.ini").write_text("[pytest]\n")
    elsewhere = Path(str(tmp_path)) / "elsewhere" / "gate.html"
    elsewhere.parent.mkdir()
    elsewhere.write_text("")

    def rootdir(*args: str) -> Path:
        found = determine_setup(inifile=None, override_ini=None, args=list(args), rootdir_cmd_arg=None,
                                invocation_dir=project)
        return Path(found[0])

    assert rootdir() == rootdir(str(project / "tests")) == project
    assert rootdir(str(elsewhere)) != project  # a value given apart, taken for a test path: the ini is lost
    assert rootdir(str(project / "tests"), str(elsewhere)) == project  # pytest finds the ini from the other path
