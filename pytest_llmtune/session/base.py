"""What both modes share: targets from collection, running a body under a config inside pytest's protocol.

Every run of an `@llm_eval` body happens inside pytest's run protocol, so fixtures, async runners, capture and
the other plugins do what they do in a plain run:
- the logged run of an instance (its own test report) runs the target's config: the winner, or the lock;
- an evaluation of the search or of a verdict is an unlogged run of the same protocol (`run_unlogged`);
- a search whose test needs nothing per instance but its parameters runs inside one such run (see tune.py).
The wrapper in `pytest_runtest_call` observes the body itself (body.py): no result is ever inferred from a run
in which the body did not run.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Generator, Mapping
from dataclasses import replace
from typing import Any

import pytest

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.llm.client import LLM
from pytest_llmtune.report import json_report, markdown
from pytest_llmtune.report.hints import with_flags
from pytest_llmtune.report.instances import MISS_PROPERTY, instance_properties, instance_table, run_rows
from pytest_llmtune.session.body import observe
from pytest_llmtune.session.protocol import run_unlogged
from pytest_llmtune.session.state import Run, TargetState
from pytest_llmtune.session.targets import (
    TARGET_PROPERTY,
    Target,
    TargetItem,
    Verdict,
    add_target_item,
    spec_of,
    target_name,
)
from pytest_llmtune.settings import Settings
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.atomic import write_atomically

__all__ = ["MISS_PROPERTY", "RUN_KEY", "BaseSession", "Run", "rerun_error"]



RUN_KEY = pytest.StashKey[Run]()


class BaseSession(abc.ABC):
    """The session object of --llm-tune or --llm-test, registered as a plugin in pytest_configure."""

    label = "tune"

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.targets: dict[str, Target] = {}
        self.states: dict[str, TargetState] = {}  # target name -> what this session knows of it
        self.running: pytest.Item | None = None  # the target's item whose protocol runs now

    # --- collection -----------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_pycollect_makeitem(self, collector: pytest.Collector, name: str,
                                  obj: object) -> Generator[None, Any, Any]:
        collected = yield
        if isinstance(collected, list) and any(isinstance(node, pytest.Function) for node in collected):
            add_target_item(collected, collector, name, obj, self.register)
        return collected

    def state(self, name: str) -> TargetState:
        if name not in self.states:
            self.states[name] = TargetState(name)
        return self.states[name]

    def register(self, target: Target) -> None:
        known = self.targets.get(target.name)
        if known is not None and known.instances[0].function is not target.instances[0].function:
            raise pytest.UsageError(f"two @llm_eval tests share the target name {target.name!r}; give each its own "
                                    "name= (a lock holds one config per target)")
        self.targets[target.name] = target

    def target_of(self, item: pytest.Item) -> Target | None:
        if isinstance(item, TargetItem):
            return item.target
        if not isinstance(item, pytest.Function):
            return None
        spec = spec_of(item)
        return None if spec is None else self.targets.get(target_name(item, spec))

    def selected(self, target: Target, session: pytest.Session) -> bool:
        return target.item is not None and target.item in set(session.items)

    # --- running ----------------------------------------------------------------------------------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, Any, Any]:
        target = self.target_of(item)
        if target is None:
            return (yield)
        if (TARGET_PROPERTY, target.name) not in item.user_properties:
            item.user_properties.append((TARGET_PROPERTY, target.name))
        self.running = item
        with contextlib.ExitStack() as stack:
            stack.callback(setattr, self, "running", None)
            try:
                stack.enter_context(self.routing(target))
            except LlmtuneError as error:  # a cassette that cannot be read: the target's verdict says so
                self.refuse(target, f"{type(error).__name__}: {error}")
            self.prepare(target, item.session)
            if isinstance(item, TargetItem):
                item.verdict = self.flagged(target, self.verdict(target))
                return (yield)
            run = self.logged_run(target, item)
            if run is None:
                return (yield)
            run.logged = True
            item.stash[RUN_KEY] = run
            try:
                return (yield)
            finally:
                del item.stash[RUN_KEY]
                self.state(target.name).runs[item.nodeid] = run

    def routing(self, target: Target) -> contextlib.AbstractContextManager[None]:
        """Where the target's requests go while its items run (its cassette)."""
        return contextlib.nullcontext()

    @abc.abstractmethod
    def refuse(self, target: Target, why: str) -> None:
        """The target cannot be tuned or gated: its item fails with `why`, its instances are skipped."""

    def flag_for(self, target: Target) -> str:
        """The flag the commands a message names need for this target's endpoint (e.g. --llm-local)."""
        return ""

    def flagged(self, target: Target, verdict: Verdict) -> Verdict:
        return replace(verdict, message=with_flags(verdict.message, self.flag_for(target)))

    @abc.abstractmethod
    def prepare(self, target: Target, session: pytest.Session) -> None:
        """Once per target, before its first item runs (the search, or reading the lock)."""

    @abc.abstractmethod
    def verdict(self, target: Target) -> Verdict:
        """The target's verdict, which its [llmtune] item reports."""

    @abc.abstractmethod
    def logged_run(self, target: Target, item: pytest.Item) -> Run | None:
        """The config an instance's own (logged) run uses; None after adding a skip marker saying why."""

    def run_unlogged(self, item: pytest.Function, run: Run, target: Target) -> Run:
        """One evaluation of `item` under `run.candidate`, through pytest's protocol, reports kept off the terminal.

        The target's item is the next item for the teardown: a sibling of every instance, so the fixtures broader
        than a function stay up between evaluations, and the instance's own node is torn down after each.
        """
        item.stash[RUN_KEY] = run
        try:
            run.reports = run_unlogged(item, target.item)
        finally:
            del item.stash[RUN_KEY]
        return run

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, None, None]:
        run = item.stash.get(RUN_KEY, None)
        if run is None or not isinstance(item, pytest.Function):
            return (yield)
        body = item.obj
        item.obj = observe(body, run.record)  # async runners see the body's own kind and run the wrapper
        try:
            yield
        except BaseException as error:
            run.error = error
            raise
        finally:
            item.obj = body
        target = self.target_of(item)
        if run.logged and run.result is not None and target is not None:  # junitxml writes them at teardown
            item.user_properties += instance_properties(run.result, run.llm, target.spec)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        error = call.excinfo.value if call.excinfo is not None else None
        if isinstance(error, LlmtuneError) and report.failed and RUN_KEY in item.stash:
            target = self.target_of(item)
            flag = self.flag_for(target) if target is not None else ""
            # says what to do; a trace through the SDK would not
            report.longrepr = with_flags(f"{type(error).__name__}: {error}", flag)
        return report

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, None, None]:
        yield
        run = item.stash.get(RUN_KEY, None)
        if run is not None and run.probe is not None:
            run.probe(item)  # with the item's fixtures set up and alive
            pytest.skip("llmtune: the probe of a target's fixtures does not run the body")

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest) -> Any:
        run = request.node.stash.get(RUN_KEY, None)
        if run is not None and run.probe is not None and fixturedef.scope == "function":
            run.fixtures.add(fixturedef.argname)
        return (yield)

    def llm_for(self, item: pytest.Item) -> LLM:
        run = item.stash.get(RUN_KEY, None)
        if run is None:
            raise LlmtuneError(f"{item.nodeid}: the llm fixture is served only while llmtune runs this test")
        run.llm = self.make_llm(run, item)
        return run.llm

    @abc.abstractmethod
    def make_llm(self, run: Run, item: pytest.Item) -> LLM:
        """The `llm` callable of one run of `item`."""

    # --- reporting --------------------------------------------------------------------------------------------

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        if report.when == "call" and report.passed and any(name == MISS_PROPERTY for name, _ in
                                                           report.user_properties):
            return "missed", "m", "MISS"
        return None

    def instance_lines(self, name: str, width: int) -> list[str]:
        """With -v: each instance of the target under the config its own run used."""
        if self.config.get_verbosity() <= 0:
            return []
        state = self.state(name)
        if state.runs:
            rows = run_rows(((nodeid, run.result, run.llm) for nodeid, run in state.runs.items()),
                            self.targets[name].spec)
            heading = "(its own run, or the verdict's evaluation of it when it was deselected)"
        elif state.reported.rows:  # a pytest-xdist controller: the workers made the runs
            rows, heading = list(state.reported.rows.values()), "(its own run, as its report says)"
        else:
            return []
        return [f"each instance under the locked config {heading}:", *instance_table(rows, width)]

    def write_reports(self, data: Mapping[str, Any]) -> list[str]:
        """--llm-report: each path gets the report in its format; the lines say where. A Markdown report reads
        the lockfile as it is now and, with --llm-base-lock, the base branch's."""
        lines = []
        for path in self.settings.reports:
            if path.suffix == ".md":
                text = markdown.render(data, lockfile.read(self.settings.lockfile), self.base_lock())
            else:
                text = json_report.rendered(path.suffix, data)
            write_atomically(path, text)
            lines.append(f"report written to {path}")
        return lines

    def base_lock(self) -> dict[str, dict[str, Any]] | None:
        """The base branch's lock entries (none for an empty file: the base has no lockfile yet); None when no
        base lock was given."""
        path = self.settings.base_lock
        if path is None:
            return None
        return lockfile.read(path) if path.read_bytes().strip() else {}

    def write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)


def rerun_error(run: Run) -> BaseException | None:
    """An exception the protocol must not swallow (Ctrl-C, the budget), raised inside an unlogged run."""
    from pytest_llmtune.search.budget import BudgetSpent

    return run.error if isinstance(run.error, (BudgetSpent, KeyboardInterrupt)) else None
