"""pytest-xdist: `--llm-tune`, `--llm-record` and `--llm-live` on workers, each target on one worker, the project's
files written by the controller alone.

- Scheduling (`TargetScheduling`): xdist's own scope scheduling, with a target's items (its instances and its
  `[llmtune]` item) as one scope, so that one search runs once, on one worker, and a live verdict finds every
  instance's answer on its worker. Other tests keep the scope the `--dist` mode gives them (`load`: each its
  own; `loadscope`, `loadfile`, `loadgroup`: xdist's). `--dist each` would tune every target on every worker: it is
  refused (plugin.py).
- The outbox (`Outbox`, on a worker): each new recording, and each lock entry, goes to the controller when it is
  made, in the user properties of a passed setup report of the item running: the one channel from a worker to
  its controller while an item runs (pytest-subtests sends its own reports the same way; pytest's terminal,
  junitxml and `--lf` take nothing from a passed setup report). So a worker writes nothing to the project: one on
  another host needs no shared filesystem, and one killed with SIGKILL has lost only its requests in flight.
- The controller (`Controller`): journals each recording as it arrives (the next run replays it, also after a
  worker crashed: xdist's replacement worker resumes the target's search from them), folds the journals into the
  cassettes, writes the lock entries under the lockfile's lock, and prints the summary the workers rendered at
  the controller's width (their `workeroutput`), with a line for a target whose worker died.
- Limits: a worker paces `llmtune_rpm` / `llmtune_tpm` (and an endpoint line's rpm= / tpm=) at its share, the limit
  over the number of workers; a 429's pause reaches every worker on the controller's host (pacing.PauseFile).
  `--llm-concurrency` is per worker.

The one name of xdist's this leans on beyond its hooks is `LoadScopeScheduling._split_scope`, the method xdist's
own LoadFile and LoadGroup schedulings override; pytest-xdist 3 is required for it (a UsageError says so) and the
suite tests the contract (tests/test_xdist_tune.py).
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_llmtune.records import SUFFIX, TARGET_PROPERTY
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.cassette import Cassettes

__all__ = ["OUTBOX_PROPERTY", "Controller", "Outbox", "WorkerPlace", "share_of", "worker_place"]

OUTBOX_PROPERTY = "llmtune-outbox"  # a report's user property: what a worker sends its controller
INPUT_KEY = "llmtune"  # workerinput and workeroutput: what the controller and its workers tell each other


class WorkerPlace:
    """What a worker knows of the run it is part of, from its workerinput."""

    def __init__(self, workerinput: dict[str, Any]) -> None:
        given = workerinput.get(INPUT_KEY, {})
        self.id = str(workerinput.get("workerid", "gw?"))
        self.workers = int(workerinput.get("workercount", 1))
        self.width = int(given.get("width", 80))
        self.beside = given.get("host") == socket.gethostname()  # on the controller's host
        self.local_url: str | None = given.get("local_url") if self.beside else None
        self.local_models: dict[str, str] = dict(given.get("local_models", {})) if self.beside else {}
        self.pauses: Path | None = Path(given["pauses"]) if self.beside and given.get("pauses") else None


def worker_place(config: pytest.Config) -> WorkerPlace | None:
    """The worker's place in a pytest-xdist run; None in the controller or in a run without xdist."""
    workerinput = getattr(config, "workerinput", None)
    return None if workerinput is None else WorkerPlace(workerinput)


def share_of(limit: int, workers: int) -> int:
    """A worker's share of a per-minute limit (0: none): the limit over the workers, at least 1."""
    return max(1, limit // workers) if limit else 0


# --- a worker ---------------------------------------------------------------------------------------------------

class Outbox:
    """A worker's messages to the controller, each sent as soon as it is made: as a passed setup report of the item
    running (`running()`), the only kind of message xdist carries while an item runs. Thread-safe: a request's
    thread sends its recording; one sends at a time, and takes along what others added meanwhile."""

    def __init__(self, running: Callable[[], pytest.Item | None]) -> None:
        self.running = running
        self.pending: list[dict[str, Any]] = []
        self.busy = False
        self.lock = threading.Lock()

    def recording(self, target: str, key: str, interaction: dict[str, Any]) -> None:
        self.post({"kind": "recording", "target": target, "key": key, "interaction": interaction})

    def lock_entry(self, target: str, entry: dict[str, Any]) -> None:
        self.post({"kind": "lock", "target": target, "entry": entry})

    def post(self, message: dict[str, Any]) -> None:
        plain = json.loads(json.dumps(message))  # execnet carries builtin types only (a space's numpy floats)
        with self.lock:
            self.pending.append(plain)
        self.flush()

    def flush(self) -> None:
        """Send what is pending; what cannot go now (no item runs) waits for the next flush: the next item's
        start, or the worker's end (`left`)."""
        while True:
            with self.lock:
                if self.busy or not self.pending:
                    return
                batch, self.pending, self.busy = self.pending, [], True
            try:
                sent = self.send(batch)
            finally:
                with self.lock:
                    self.busy = False
                    if not sent:
                        self.pending[:0] = batch
            if not sent:
                return

    def send(self, batch: list[dict[str, Any]]) -> bool:
        item = self.running()
        if item is None:  # a request that outlived its item (a search stopped by an error)
            return False
        now = time.time()
        report = pytest.TestReport(nodeid=item.nodeid, location=item.location, keywords={}, outcome="passed",
                                   longrepr=None, when="setup", duration=0.0, start=now, stop=now,
                                   user_properties=[(OUTBOX_PROPERTY, batch)])
        try:
            item.ihook.pytest_runtest_logreport(report=report)
        except Exception:  # noqa: BLE001 - xdist moved on to the next item meanwhile: that one's start sends it
            return False
        return True

    def left(self) -> list[dict[str, Any]]:
        """What could not be sent while items ran: the worker's output carries it (`Controller.take`)."""
        with self.lock:
            left, self.pending = self.pending, []
        return left


# --- the controller ---------------------------------------------------------------------------------------------

def _scheduling_base() -> type:
    import xdist  # type: ignore[import-untyped]
    from xdist.scheduler import LoadScopeScheduling  # type: ignore[import-untyped]

    if not str(xdist.__version__).startswith("3."):  # the one name this leans on (the module's docstring)
        raise pytest.UsageError(f"--llm-tune -n is built on pytest-xdist 3 (its scope scheduling); this is "
                                f"pytest-xdist {xdist.__version__}: `pip install 'pytest-xdist>=3.8,<4'`")
    base: type = LoadScopeScheduling
    return base


class Controller:
    """On the controller of a distributed `--llm-tune`, `--llm-record` or `--llm-live`: schedules targets whole,
    writes what workers send, and gathers their summaries. `cassettes` is the mode session's, on the project's
    cassette directory; `local_urls`, the local servers it started: the default one's URL, and each of ini
    llmtune_local_models' by name."""

    def __init__(self, config: pytest.Config, cassettes: Cassettes, lock_path: Path,
                 local_urls: Callable[[], tuple[str | None, dict[str, str]]], does: str = "tunes") -> None:
        self.config = config
        self.does = does  # what a worker does with a target, in the line that says where it runs
        self.cassettes = cassettes
        self.lock_path = lock_path
        self.local_urls = local_urls
        self.pauses = Path(tempfile.mkdtemp(prefix="llmtune-pauses-"))
        config.add_cleanup(lambda: _remove(self.pauses))
        self.received: dict[str, int] = {}  # target -> recordings its workers sent (new to the cassette)
        self.locked: set[str] = set()  # targets whose lock entry a worker sent
        self.outputs: list[dict[str, Any]] = []  # each finished worker's workeroutput[INPUT_KEY]
        self.crashed: dict[str, tuple[str, str]] = {}  # test function -> (worker, the item it ran) when it died
        self.names: dict[str, str] = {}  # a target's test function (node id) -> the target's name
        self.scheduler: Any = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        self.scheduler = target_scheduling(config, log)
        return self.scheduler

    def pytest_configure_node(self, node: Any) -> None:
        url, models = self.local_urls()
        node.workerinput[INPUT_KEY] = {"width": self.config.get_terminal_writer().fullwidth,
                                       "host": socket.gethostname(), "local_url": url, "local_models": models,
                                       "pauses": str(self.pauses)}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if TARGET_PROPERTY in properties:
            self.names[function_of(report.nodeid)] = str(properties[TARGET_PROPERTY])
        batch: Any = properties.get(OUTBOX_PROPERTY)
        if batch is not None:
            worker = getattr(getattr(report, "node", None), "gateway", None)
            self.take(batch, function_of(report.nodeid), getattr(worker, "id", None))

    def take(self, batch: list[dict[str, Any]], function: str | None = None, worker: str | None = None) -> None:
        """A worker's messages: recordings journalled, then a lock entry written (its evidence first)."""
        recordings: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for message in batch:
            target = str(message["target"])
            if function is not None:
                self.names[function] = target
            if message["kind"] == "start" and worker is not None:  # the progress a worker cannot show
                self.say(f"llmtune: {worker} {self.does} {target}")
            elif message["kind"] == "recording":
                recordings.setdefault(target, []).append((str(message["key"]), message["interaction"]))
            elif message["kind"] == "lock":
                self._write(recordings)  # the lock's evidence first
                recordings = {}
                lockfile.write_target(self.lock_path, target, message["entry"])
                self.cassettes.save_target(target)
                self.locked.add(target)
        self._write(recordings)

    def _write(self, recordings: dict[str, list[tuple[str, dict[str, Any]]]]) -> None:
        for target, recorded in recordings.items():
            self.received[target] = self.received.get(target, 0) + self.cassettes.add_many(target, recorded)

    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        worker = getattr(getattr(report, "node", None), "gateway", None)
        self.crashed[function_of(crashitem)] = (getattr(worker, "id", "?"), crashitem)

    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        output = getattr(node, "workeroutput", {}).get(INPUT_KEY)
        if output is not None and output.get("refused"):  # what a plain run refuses at collection, said here: the
            raise pytest.UsageError(output["refused"])  # worker ran nothing (its targets were not selected there)
        if output is not None:
            self.take(output.get("outbox", []))
            self.outputs.append(output)

    def say(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            writer = self.config.get_terminal_writer()
            if writer.width_of_current_line:  # after the progress letters (xdist's terminal writes no path)
                writer.line()
            reporter.write_line(line)

    def order_of_target(self, name: str) -> int:
        """A target's place in the collection, by its name."""
        function = next((function for function, known in self.names.items() if known == name), name)
        return self.order(function + SUFFIX)

    def order(self, item_nodeid: str) -> int:
        collection = getattr(self.scheduler, "collection", None) or []
        return collection.index(item_nodeid) if item_nodeid in collection else len(collection)

    def summaries(self) -> list[dict[str, Any]]:
        """The targets' summaries the workers rendered, in collection order; a target a later worker finished
        (its first worker died) is told once, by the one that finished it."""
        found: dict[str, dict[str, Any]] = {}
        for output in self.outputs:
            for summary in output.get("targets", []):
                known = found.get(summary["name"])
                if known is None or (summary.get("concluded") and not known.get("concluded")):
                    found[summary["name"]] = summary
        return sorted(found.values(), key=lambda summary: self.order(summary["item"]))

    def crash_lines(self, finished: set[str]) -> list[str]:
        """A line for each target whose worker died while running it and no other worker finished (`finished`:
        the test functions of the targets a worker concluded)."""
        lines = []
        for function, (worker, item) in self.crashed.items():
            if function in finished:
                continue
            target = self.names.get(function, function)
            kept = self.received.get(target, 0)
            lines.append(f"{target}: not tuned: its worker {worker} died while running {item}; the {kept:,} new "
                         "recordings it had sent are kept in its cassette, and a re-run replays them: "
                         f"`pytest --llm-tune {function_of(item)}`")
        return lines

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.cassettes.save()  # the journals of targets whose worker died fold in too


def without_group(nodeid: str) -> str:
    """The node id without the `@group` xdist's loadgroup appends (an `@` in a path or a parameter id stays)."""
    return nodeid[:nodeid.rfind("@")] if nodeid.rfind("@") > nodeid.rfind("]") else nodeid


def function_of(nodeid: str) -> str:
    """The test function's node id of an item's: `m.py::test_x` of `m.py::test_x[France]`, `m.py::test_x[llmtune]`.
    The parameters start at the first `[` after the file's `::` (a directory may hold one, a class cannot)."""
    plain = without_group(nodeid)
    start = plain.find("[", plain.find("::") + 2) if "::" in plain else -1
    return plain if start < 0 else plain[:start]


def target_scheduling(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling (see the module's docstring), built on first use: xdist is imported only here."""
    base = _scheduling_base()
    dist = str(config.getoption("dist", "load"))

    class TargetScheduling(base):  # type: ignore[misc, valid-type]
        """A target's items as one scope; any other test's scope as its `--dist` mode gives it."""

        targets: set[str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            function = self._target_of(nodeid)
            if function is not None:  # the whole target, whatever xdist_group marks some of its instances
                return function + SUFFIX
            if nodeid.rfind("@") > nodeid.rfind("]"):  # an xdist_group of the user's (loadgroup): kept whole
                return nodeid.split("@")[-1]
            if dist == "loadscope":
                return nodeid.rsplit("::", 1)[0]
            if dist == "loadfile":
                return nodeid.split("::", 1)[0]
            return nodeid

        def _target_of(self, nodeid: str) -> str | None:
            """The test function of the target the item belongs to, if any: the node id up to one of its `[`."""
            if self.targets is None:
                collection: Sequence[str] = self.collection or next(iter(self.registered_collections.values()), [])
                self.targets = {without_group(found)[:-len(SUFFIX)] for found in collection
                                if without_group(found).endswith(SUFFIX)}
            plain = without_group(nodeid)
            starts = [index for index, char in enumerate(plain) if char == "["]
            return next((plain[:index] for index in starts if plain[:index] in self.targets), None)

    return TargetScheduling(config, log)


def _remove(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)
