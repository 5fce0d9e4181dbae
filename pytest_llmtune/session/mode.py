"""What both modes share: the endpoint, the cassettes, running an `@llm_eval` body under a config."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.llm.client import LLM
from pytest_llmtune.llm.local import LocalServer, LocalServerError, default_model_path
from pytest_llmtune.search.evaluate import Scored, score_call
from pytest_llmtune.session.settings import Settings
from pytest_llmtune.session.targets import Target, call_kwargs, collect_targets, spec_of, target_name
from pytest_llmtune.store.cassette import Cassettes

__all__ = ["MISSES", "Mode", "start_local_server"]

MISSES: tuple[type[BaseException], ...] = (AssertionError, pytest.fail.Exception)
MISS_KEY = pytest.StashKey[Scored]()
MISS_PROPERTY = "llmtune_miss"


class Mode:
    """A session object for --llm-tune or --llm-test, registered as a plugin in pytest_configure."""

    record = True
    label = "tune"

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self.local: LocalServer | None = None
        if settings.local and self.record:
            self.local = start_local_server(config, settings)
        self.endpoint = settings.endpoint(self.local.base_url if self.local else None)
        config.add_cleanup(self.endpoint.close)
        # the optimization budget's gate sits where a request is known to go to the network
        self.cassettes = Cassettes(settings.cassette_dir, record=self.record,
                                   before_live=lambda: self.endpoint.spending.admit())
        self.targets: dict[str, Target] = {}
        self.configs: dict[str, dict[str, Any]] = {}  # target name -> the config its items run with
        self.split_n: dict[str, bool] = {}  # target name -> how its lock was recorded
        self.scores: dict[str, dict[str, Scored]] = {}  # target name -> node id -> result

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.cassettes.start()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.cassettes.stop()  # also on Ctrl-C: every recorded response is saved

    def target_of(self, item: pytest.Item) -> Target | None:
        spec = spec_of(item)
        return None if spec is None else self.targets.get(target_name(item, spec))

    def llm_for(self, item: pytest.Item) -> LLM:
        target = self.target_of(item)
        if target is None:
            return LLM({}, self.endpoint)
        return LLM(self.configs.get(target.name, {}), self.endpoint, split_n=self.split_n.get(target.name))

    def collect(self, items: list[pytest.Item]) -> None:
        self.targets = collect_targets(items)
        if self.settings.local:
            for target in self.targets.values():
                if "best_of" in target.spec.space.spec:
                    raise pytest.UsageError(f"{target.name}: llama-server ignores best_of, so tuning it would measure "
                                            "noise; remove it from the space (n with a vote does what it would)")

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> bool | None:
        target = self.target_of(pyfuncitem)
        if target is None:
            return None
        kwargs = call_kwargs(pyfuncitem)
        problem: str | None = None
        try:
            with self.cassettes.use(target.name):
                scored = score_call(lambda: pyfuncitem.obj(**kwargs), target.spec, MISSES)
        except LlmtuneError as error:  # the message says what to do; a traceback through the SDK would bury it
            problem = f"{type(error).__name__}: {error}"
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        self.scores.setdefault(target.name, {})[pyfuncitem.nodeid] = scored
        if not scored.passed:
            pyfuncitem.stash[MISS_KEY] = scored
        return True  # handled: a returned dict is a metric, not a PytestReturnNotNoneWarning

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        miss = item.stash.get(MISS_KEY, None)
        if miss is not None and report.when == "call" and report.passed:
            report.user_properties.append((MISS_PROPERTY, miss.message))
        return report

    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        if report.when == "call" and any(name == MISS_PROPERTY for name, _ in report.user_properties):
            return "missed", "m", "MISS"
        return None


def start_local_server(config: pytest.Config, settings: Settings) -> LocalServer:
    """Start llama-server for this session; it is stopped by its PID when pytest unconfigures, also after Ctrl-C."""
    try:
        model = settings.local_model or default_model_path()
        server = LocalServer(model, slots=settings.local_slots, context=settings.local_context)
        config.add_cleanup(server.stop)
        server.start()
    except LocalServerError as error:
        raise pytest.UsageError(str(error)) from None
    return server
