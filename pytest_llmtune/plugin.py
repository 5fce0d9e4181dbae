"""The pytest plugin: options, ini settings, the marker, the `llm` fixture, and the mode's session object."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_llmtune.session.rootdir import refuse_moved_rootdir
from pytest_llmtune.session.settings import INI, positive_int, read_settings
from pytest_llmtune.session.targets import spec_of

if TYPE_CHECKING:
    from pytest_llmtune.llm.client import LLM
    from pytest_llmtune.session.endpoint import EndpointSession

SESSION_KEY: pytest.StashKey[EndpointSession] = pytest.StashKey()  # the mode's session object (tune or gate)
SKIP_REASON = "llm_eval test: run `pytest --llm-tune` to search its settings or `pytest --llm-test` to gate on them"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("llmtune", "tune and gate LLM inference settings")
    group.addoption("--llm-tune", action="store_true", help="search each llm_eval target's space; write the lockfile")
    group.addoption("--llm-test", action="store_true", help="run llm_eval tests with the locked configs, replaying "
                    "recorded responses; fail on a stale lock or a score below its threshold")
    group.addoption("--llm-record", action="store_true", help="with --llm-test: call the endpoint for requests "
                    "that have no recording, and record them")
    group.addoption("--llm-accept-lower", action="store_true", help="with --llm-record: write a re-scored lock "
                    "even when its score is lower than the locked one (a re-score never lowers a lock otherwise)")
    group.addoption("--llm-live", action="store_true", help="with --llm-test: send every request of the locked "
                    "configs to the endpoint (nothing replayed, recordings untouched) and fail a target whose live "
                    "score is significantly worse than its lock")
    group.addoption("--llm-prune", action="store_true", help="with --llm-test: rewrite the cassette of each target "
                    "whose gate passed to the recordings it replayed (a tune keeps every response it paid for)")
    group.addoption("--llm-repeat", type=positive_int, default=None, metavar="K", help="with --llm-live: sample "
                    "each instance K times, for more power (default 1)")
    group.addoption("--llm-local", action="store_true", help="start llama.cpp's llama-server with SmolLM2-135M on "
                    "127.0.0.1 for this session and send requests to it (ini llmtune_local)")
    group.addoption("--llm-local-model", default=None, metavar="GGUF", help="model file for the local server "
                    "(implies --llm-local); the model it serves is named after the file (its stem)")
    group.addoption("--llm-concurrency", type=positive_int, default=None, metavar="N",
                    help="requests in flight at once, per pytest-xdist worker under -n (default: ini "
                    "llmtune_concurrency, 8)")
    group.addoption("--llm-report", action="append", default=[], metavar="PATH", help="write what the tune or gate "
                    "did to PATH: .json (every config, instance and verdict), .html (one page) or .md (a summary "
                    "for GitHub's job summary or a pull-request comment); repeatable (ini llmtune_report)")
    group.addoption("--llm-base-lock", default=None, metavar="PATH", help="the base branch's lockfile: the .md "
                    "report compares each target's lock with it (changed settings, the paired score difference, "
                    "instances whose result changed); an empty file is a base with no lockfile")
    for name, ini in INI.items():
        parser.addini(name, ini.help_text(), type=ini.type, default=ini.default)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "llm_eval(spec): an LLM evaluation; use @pytest_llmtune.llm_eval(space=...)")
    refuse_moved_rootdir(config)
    tune, test = config.getoption("llm_tune"), config.getoption("llm_test")
    if tune and test:
        raise pytest.UsageError("--llm-tune and --llm-test are separate steps: tune, commit the lockfile, then test")
    if config.getoption("llm_record") and not test:
        raise pytest.UsageError("--llm-record goes with --llm-test (--llm-tune always records)")
    if config.getoption("llm_accept_lower") and not config.getoption("llm_record"):
        raise pytest.UsageError("--llm-accept-lower goes with --llm-test --llm-record: it lets a re-score write a "
                                "lower score into the lock")
    if config.getoption("llm_live") and not test:
        raise pytest.UsageError("--llm-live goes with --llm-test: it checks the locked configs against the endpoint")
    if config.getoption("llm_live") and config.getoption("llm_record"):
        raise pytest.UsageError("--llm-live and --llm-record are separate: --llm-live never touches the recordings; "
                                "--llm-record scores the lock again from them, recording what is missing")
    if config.getoption("llm_prune") and not test:
        raise pytest.UsageError("--llm-prune goes with --llm-test: it keeps the recordings the gate replays")
    if config.getoption("llm_prune") and config.getoption("llm_live"):
        raise pytest.UsageError("--llm-prune and --llm-live are separate: --llm-live replays nothing, so there is "
                                "nothing to keep; prune with `pytest --llm-test --llm-prune`")
    if config.getoption("llm_repeat") and not config.getoption("llm_live"):
        raise pytest.UsageError("--llm-repeat goes with --llm-live (recordings hold one sample per request)")
    if not (tune or test):
        return
    distributed = refuse_distribution(config, tune)
    # the modes import openai, vcrpy and scipy: plain pytest runs never pay for them
    from pytest_llmtune.session.gate import GateSession
    from pytest_llmtune.session.tune import TuneSession

    llmtune = (TuneSession if tune else GateSession)(config, read_settings(config))
    config.stash[SESSION_KEY] = llmtune
    config.pluginmanager.register(llmtune, "llmtune-session")
    if distributed:
        from pytest_llmtune.session.distribute import Controller

        controller = Controller(config, llmtune.cassettes, llmtune.settings.lockfile, llmtune.local_urls,
                                "tunes" if tune else "gates")
        llmtune.controller = controller
        config.pluginmanager.register(controller, "llmtune-controller")


def refuse_distribution(config: pytest.Config, tune: bool) -> bool:
    """pytest-xdist: the offline gate runs on workers as any test (each target's verdict on one of them). A tune,
    a recording gate and a live one run each target whole on one worker, the controller writing the files
    (session/distribute.py): True when this is that controller."""
    if hasattr(config, "workerinput") or not _distributed(config):
        return False
    if config.getoption("llm_prune"):
        raise pytest.UsageError("--llm-prune does not run under pytest-xdist (-n/--dist): each worker replays only "
                                "part of the recordings; prune without -n")
    sending = tune or config.getoption("llm_record") or config.getoption("llm_live")
    if sending and config.getoption("dist", "no") == "each":
        flag = "--llm-tune" if tune else "--llm-record" if config.getoption("llm_record") else "--llm-live"
        raise pytest.UsageError(f"{flag} does not run with --dist each: every worker would run every target, "
                                "paying once per worker; use -n N (each target runs on one worker)")
    return bool(sending)


def _distributed(config: pytest.Config) -> bool:
    """pytest-xdist's own test (its `_is_distribution_mode`): a --dist mode and workers to run it (-n or --tx); with
    --co it runs in-process."""
    if config.getoption("collectonly"):
        return False
    return config.getoption("dist", "no") != "no" and bool(config.getoption("tx", None))


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    llmtune = config.stash.get(SESSION_KEY, None)
    if llmtune is None:
        return None
    settings = llmtune.settings
    local = (f"; {llmtune.local.model.name} (llama-server pid {llmtune.local.process.pid})"
             if llmtune.local is not None and llmtune.local.process is not None else "")
    per = " per worker" if _distributed(config) else ""  # a target's requests run on its worker
    shared = [f"{name} {value}" for name, value in (("rpm", settings.endpoint.rpm), ("tpm", settings.endpoint.tpm))
              if value]
    if per and shared:
        per += f", {' and '.join(shared)} shared: each worker that tunes paces its share"
    where = (f"endpoint {llmtune.endpoint_url}, concurrency {settings.endpoint.concurrency}{per}{local}"
             if llmtune.calls_out else "no request leaves this machine")
    routes = [f"{route.model} at {route.base_url} ({route.concurrency or settings.endpoint.concurrency})"
              for route in settings.endpoint.table.routes] if llmtune.calls_out else []
    return [f"llmtune: {llmtune.label}; lockfile {settings.lockfile.name}, cassettes {settings.cassette_dir.name}/",
            f"llmtune: {where}", *([f"llmtune: models on their own endpoints (concurrency): {', '.join(routes)}"]
                                   if routes else [])]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if SESSION_KEY in config.stash:
        return
    for item in items:
        if spec_of(item) is not None:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Generator[None, None, None]:
    """Misses (`MISS`) after pytest's short test summary, with -rA or -rm: a miss is a test that passed as a test
    and scored 0 as an instance, which pytest's own summary lists under neither."""
    yield
    config = terminalreporter.config
    chars = str(config.getoption("reportchars", "") or "")
    missed = terminalreporter.stats.get("missed", [])
    if SESSION_KEY not in config.stash or not missed or not ("A" in chars or "m" in chars):
        return
    from pytest_llmtune.report.instances import miss_lines

    terminalreporter.write_sep("=", "llmtune misses: tests that passed, instances that scored 0")
    width = config.get_terminal_writer().fullwidth if terminalreporter.isatty() else None
    for line in miss_lines(missed, width):
        terminalreporter.write_line(line)


@pytest.fixture
def llm(request: pytest.FixtureRequest) -> LLM:
    """`llm(context=None, **fields) -> list[str]`: the n texts for an instance under the config being evaluated."""
    llmtune = request.config.stash.get(SESSION_KEY, None)
    if llmtune is None:
        pytest.skip(SKIP_REASON)
    return llmtune.llm_for(request.node)
