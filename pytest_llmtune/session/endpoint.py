"""The modes' connection to the model: the endpoint, the cassettes, and the local server. Nothing starts for
`--co` (collection only): no server, no recording."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest

from pytest_llmtune.llm.client import LLM, Endpoint
from pytest_llmtune.llm.connect import lane_name, make_endpoint
from pytest_llmtune.llm.layers import BudgetGate, Paced
from pytest_llmtune.llm.local import (
    LocalModel,
    LocalServer,
    LocalServerError,
    default_model_path,
    has_chat_template,
    threads_for,
)
from pytest_llmtune.llm.pacing import Pacers, PauseFile
from pytest_llmtune.llm.reach import FailFast
from pytest_llmtune.llm.routes import Route, TableError
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.session.base import BaseSession, rerun_error
from pytest_llmtune.session.body import observe
from pytest_llmtune.session.distribute import INPUT_KEY, Controller, Outbox, share_of, worker_place
from pytest_llmtune.session.fixtures import Sharing, shared_kwargs, sharing_of
from pytest_llmtune.session.state import Run
from pytest_llmtune.session.targets import Target, instance_fields
from pytest_llmtune.settings import Settings
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.cassette import Cassettes
from pytest_llmtune.store.lockfile import LockEntry

__all__ = ["EndpointSession"]

REPEAT_STRIDE = 1000  # repeat k of an evaluation numbers its samples from k x this


class EndpointSession(BaseSession):
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        self.recording = self.records(settings)  # responses not yet recorded are requested and recorded
        self.calls_out = self.sends(settings)  # requests may go to the endpoint (--llm-local starts its server)
        self.local: LocalServer | None = None
        self.locals: dict[str, LocalServer] = {}  # the servers of llmtune_local_models started so far
        self._starting = threading.Lock()
        self.failed: dict[str, LocalServerError] = {}  # local models whose server would not start
        self.pacer = Pacers()  # one an endpoint: its own limits, and a 429 slows that endpoint only
        self.place = worker_place(config)  # a pytest-xdist worker's: it writes nothing to the project
        self.controller: Controller | None = None  # under pytest-xdist, on the controller (plugin.py)
        self.started: set[str] = set()  # the targets whose first item ran here (a pytest-xdist worker)
        self.limits: dict[str, tuple[int, int]] = {}  # each lane's rpm and tpm, before a worker's share
        directory = self.cassette_dir()
        self.outbox = (Outbox(lambda: self.running) if self.place is not None and self.recording
                       and directory == settings.cassette_dir else None)  # not live: its cassettes are its own
        self.cassettes = Cassettes(directory, record=self.recording,
                                   send=self.outbox.recording if self.outbox is not None else None)
        self.networks: dict[str, FailFast] = {}  # a refused connection is an endpoint's answer for the session
        self.stopped: str | None = None
        self.finished: pytest.Session | None = None
        self.endpoint: Endpoint = make_endpoint(settings, transport_for=self.transport_for,
                                                recorded=self.cassettes.recorded)
        config.add_cleanup(lambda: self.endpoint.close())

    def transport_for(self, route: Route | None) -> httpx2.BaseTransport:
        """An endpoint's transport: the cassettes over a live request's layers (llm/layers.py): the budget of the
        target tuned now, the endpoint's own pacing, its network."""
        given = self.settings.endpoint
        name = lane_name(route)  # models at one URL with one key share a lane: its pacer and its network
        workers = self.place.workers if self.place is not None else 1  # each pytest-xdist worker paces its share
        pauses = self.place.pauses if self.place is not None else None
        shared = PauseFile.for_lane(pauses, name) if pauses is not None else None
        limits = self.limits.setdefault(name, (given.rpm, given.tpm) if route is None else (route.rpm, route.tpm))
        concurrency = given.concurrency if route is None else route.concurrency or given.concurrency
        pacer = self.pacer.get(name, concurrency, rpm=share_of(limits[0], workers), tpm=share_of(limits[1], workers),
                               shared=shared)
        if route is None:
            network = self.networks.setdefault(name, FailFast())
        else:
            network = self.networks.setdefault(name, FailFast(fix=(
                f"start the server of {route.model!r} or correct its line in ini llmtune_endpoints")))
        live = BudgetGate(Paced(network, pacer), lambda: self.endpoint.spending, lambda: self.endpoint.prices)
        return self.cassettes.transport(live)

    def down(self, target: Target) -> str | None:
        """Why an endpoint of the target's models is unreachable, once a request found it so (another target's
        endpoint being down says nothing of this one's)."""
        table = self.settings.endpoint.table
        models = models_of(target, self.settings, self.endpoint.default_model or "")
        local = {m.name for m in self.settings.local.models}
        routes = {model: table.route_or_none(model) for model in models}
        names = {f"local {model}" if model in local else lane_name(None if route is None or route.local else route)
                 for model, route in routes.items()}  # a `local` line: the local server, the default endpoint
        return next((network.down for name, network in self.networks.items()
                     if name in names and network.down is not None), None)

    @classmethod
    def records(cls, settings: Settings) -> bool:
        return True

    @classmethod
    def sends(cls, settings: Settings) -> bool:
        return True

    def cassette_dir(self) -> Path:
        return self.settings.cassette_dir

    def flag_for(self, target: Target) -> str:
        return self.settings.local.flag

    def write_lock(self, name: str, entry: LockEntry) -> bool:
        """Write the target's lock entry; on a pytest-xdist worker, send it to the controller, which writes it.
        Whether the lockfile changes."""
        if self.outbox is None:
            return lockfile.write_target(self.settings.lockfile, name, entry)
        changed = lockfile.would_change(self.settings.lockfile, name, entry)
        self.outbox.lock_entry(name, entry.to_json())
        return changed

    def not_reached(self, target: Target) -> bool:
        """Selected, but the run stopped (-x, --maxfail) before its verdict."""
        return self.stopped is not None and self.finished is not None and self.selected(target, self.finished)

    def make_llm(self, run: Run, item: pytest.Item) -> LLM:
        stages, target = run.candidate.stages, self.target_of(item)
        accept = target.spec.cascade if target is not None else None  # a single config's answer is judged too
        llm = LLM(stages[0], self.endpoint, split_n=run.split_n, first_sample=run.repeat * REPEAT_STRIDE,
                  seeded=run.seeded, spread=run.spread, stages=stages, accept=accept,
                  judge=self.settings.judge_for(target.spec if target is not None else None))
        llm.instance = instance_fields(item)  # never shown itself as a demonstration
        return llm

    def probe(self, target: Target, inside: Callable[[pytest.Function, Sharing], None]) -> Sharing | str:
        """Set up the target's first instance without running its body, find what its body needs per instance,
        and call `inside(probed item, sharing)` while that setup's fixtures are alive; when the setup failed, its
        error. An exception from `inside` is raised here, after the probe's teardown."""
        probe = Run.of({})
        sharing: list[Sharing] = []
        raised: list[Exception] = []

        def look(item: pytest.Item) -> None:
            assert isinstance(item, pytest.Function)
            sharing.append(sharing_of(item, probe, target.instances))
            try:
                inside(item, sharing[0])
            except Exception as error:  # noqa: BLE001 - out of the setup phase, which would report it as its own
                raised.append(error)

        probe.probe = look
        self.run_unlogged(target.instances[0], probe, target)
        if raised:
            raise raised[0]
        return sharing[0] if sharing else "\n".join(r.longreprtext for r in probe.reports if r.failed) or "setup failed"

    def call_shared(self, item: pytest.Function, probed: pytest.Function, sharing: Sharing, run: Run) -> Run:
        """One evaluation of `item` in a worker thread, with the fixtures of the probe's setup (`sharing` says
        the body needs nothing else per instance)."""
        run.llm = self.make_llm(run, item)
        kwargs = {**shared_kwargs(item, probed, sharing), "llm": run.llm}
        try:
            observe(item.obj, run.record)(**kwargs)
        except Exception as error:  # noqa: BLE001 - the caller judges it
            run.error = error
            if rerun_error(run):
                raise
        return run

    def warm(self, target: Target, runs: Sequence[tuple[pytest.Function, Run]]) -> None:
        """Send the requests of `runs` concurrently (`--llm-concurrency` at a time) into the target's cassette, so
        that the items, which run one at a time, find them recorded. Only for a body that needs nothing per
        instance (as the tune's concurrent path); otherwise the items send their requests themselves. Errors are
        left for the items to meet and report."""

        def inside(probed: pytest.Function, sharing: Sharing) -> None:
            if sharing.reason is not None:
                return
            concurrency = self.settings.endpoint.concurrency
            with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="llmtune") as pool:
                futures = [pool.submit(self.call_shared, item, probed, sharing, run) for item, run in runs]
                for future in futures:
                    with contextlib.suppress(Exception):
                        future.result()

        self.probe(target, inside)

    @property
    def endpoint_url(self) -> str:
        return self.endpoint.base_url

    def reshare(self, session: pytest.Session) -> None:
        """A pytest-xdist worker's share of the limits, once the targets are known: fewer targets than workers
        leave workers idle, and their shares go to those that tune."""
        assert self.place is not None
        units = sum(1 for target in self.targets.values() if self.selected(target, session))
        workers = min(self.place.workers, max(1, units))
        for name, (rpm, tpm) in self.limits.items():
            pacer = self.pacer.by_name[name]
            pacer.rpm, pacer.tpm = share_of(rpm, workers), share_of(tpm, workers)

    def routing(self, target: Target) -> contextlib.AbstractContextManager[None]:
        if self.outbox is not None:  # what a request that outlived its item could not send
            if target.name not in self.started:  # the controller says where each target runs
                self.started.add(target.name)
                self.outbox.post({"kind": "start", "target": target.name})
            self.outbox.flush()
        return self.cassettes.use(target.name)

    @pytest.hookimpl(tryfirst=True)  # before a pytest-xdist worker sends its collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.place is not None:
            self.reshare(session)
        try:
            self.refuse_before_sending(session)
        except pytest.UsageError as error:
            if self.place is None:
                raise
            # a pytest-xdist worker's UsageError ends it without a word (the controller shows an INTERNALERROR,
            # pytest-xdist#1345): it runs nothing, and the controller raises it (Controller.pytest_testnodedown)
            self.config.workeroutput.setdefault(INPUT_KEY, {})["refused"] = str(error)  # type: ignore[attr-defined]
            session.items[:] = []

    def refuse_before_sending(self, session: pytest.Session) -> None:
        """Before any request, what the targets ask that the endpoints cannot honour: a UsageError saying so."""
        if not self.calls_out:
            return  # a replay needs no endpoint: no table, key or server
        chatless = self.chatless() if self.settings.local.enabled else set()
        for target in self.targets.values():
            check_routes(target, self.settings, self.endpoint.default_model,
                         keys=not self.config.option.collectonly)  # --co sends nothing: it needs no key
            if self.settings.local.enabled:
                refuse_for_local(target, self.settings)
            refuse_what_models_cannot_take(target, self.settings, chatless, self.endpoint.default_model)

    def chatless(self) -> set[str]:
        """The local models whose GGUF holds no chat template (base models: completions only), of those the
        targets' spaces name; a model's package that is missing is a UsageError with its install command."""
        named = {str(model) for target in self.targets.values() for model in target.spec.space.values_of("model")}
        named |= {judge.model for target in self.targets.values()
                  if (judge := self.settings.judge_for(target.spec)) is not None}
        local = self.settings.local
        try:
            found = {model.name for model in local.models if model.name in named
                     and not has_chat_template(model.path())}
            if local.model is not None and not has_chat_template(local.model):
                found.add(local.alias)
        except LocalServerError as error:
            raise pytest.UsageError(str(error)) from None
        return found

    @pytest.hookimpl(tryfirst=True)  # before the terminal's header, which names the local server
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return
        if self.calls_out:
            interrupt_on_sigterm(self.config)
        if self.settings.local.enabled and self.calls_out:
            url = self.place.local_url if self.place is not None else None  # a worker uses the controller's server
            if url is None:
                self.local = start_local_server(self.config, self.settings)
                url = self.local.base_url
            self.endpoint.close()
            try:
                model = self.local.model if self.local is not None else (self.settings.local.model or
                                                                         default_model_path())
                self.endpoint = make_endpoint(self.settings, url, transport_for=self.transport_for,
                                              recorded=self.cassettes.recorded, start_local=self.start_local,
                                              chat=has_chat_template(model))
            except LocalServerError as error:
                raise pytest.UsageError(str(error)) from None
            if self.controller is not None:  # started once, here, for the workers on this host (not once a worker)
                for local in self.settings.local.models:
                    try:
                        self.start_local(local)
                    except LocalServerError as error:
                        raise pytest.UsageError(str(error)) from None

    def local_urls(self) -> tuple[str | None, dict[str, str]]:
        """The local servers this session started: the default one's base URL, and each other model's by name."""
        return (self.local.base_url if self.local is not None else None,
                {name: server.base_url for name, server in self.locals.items()})

    def start_local(self, model: LocalModel) -> str:
        """The base URL of a local model's server, started on its first request (once: other threads wait), and
        stopped by its PID when pytest unconfigures."""
        if self.place is not None and model.name in self.place.local_models:  # the controller's
            return self.place.local_models[model.name]
        with self._starting:
            if model.name in self.failed:  # once: not a minute's wait on every request
                raise self.failed[model.name]
            if model.name not in self.locals:
                local = self.settings.local
                try:
                    server = LocalServer(model.path(), alias=model.name, slots=local.slots, context=local.context,
                                         threads=threads_for(1 + len(local.models)))
                    self.config.add_cleanup(server.stop)
                    server.start()
                except LocalServerError as error:
                    self.failed[model.name] = error
                    raise
                self.locals[model.name] = server
            return self.locals[model.name].base_url

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.place is not None and self.outbox is not None:  # what no report could carry goes at the end
            self.config.workeroutput.setdefault(INPUT_KEY, {})["outbox"] = self.outbox.left()  # type: ignore[attr-defined]
        self.cassettes.stop()  # also on Ctrl-C: every recorded response is saved
        stopped = session.shouldfail or session.shouldstop
        self.stopped = str(stopped) if stopped else None  # -x, --maxfail: targets after the stop never ran
        self.finished = session


def models_of(target: Target, settings: Settings, default_model: str | None) -> list[str]:
    """Every model the target may call: its space's, the default one for configs that name none (also an option of
    a group that names none; None: left out), and its judge's."""
    space = target.spec.space
    models = [str(model) for model in space.values_of("model")]
    if space.may_lack("model") and default_model is not None:
        models.append(default_model)
    judge = settings.judge_for(target.spec)
    return models + ([judge.model] if judge is not None else [])


def check_routes(target: Target, settings: Settings, default_model: str | None, keys: bool = True) -> None:
    """Before any request, each model the target's space may name (or the default one) and its judge's against the
    endpoint table: listed when the table is complete, its key's variable set, its local server running."""
    table, local = settings.endpoint.table, {model.name for model in settings.local.models}
    for model in dict.fromkeys(models_of(target, settings, default_model or None)):  # the judge's: same routes
        if model in local:
            if not settings.local.enabled:
                raise pytest.UsageError(f"{target.name}: the model {model!r} is a local model (ini "
                                        "llmtune_local_models): add --llm-local")
            continue
        try:
            route = table.route(model)
        except TableError as error:
            raise pytest.UsageError(f"{target.name}: {error}") from None
        if route is None:
            continue
        if keys and route.key_env and not os.environ.get(route.key_env):
            raise pytest.UsageError(
                f"{target.name}: the model {model!r} is served at {route.base_url} with the key in the environment "
                f"variable {route.key_env} (ini llmtune_endpoints), which is not set: `export {route.key_env}=...` "
                "and run again; nothing was sent")
        if route.local and not settings.local.enabled:
            raise pytest.UsageError(f"{target.name}: the model {model!r} is served by the local server (ini "
                                    "llmtune_endpoints): add --llm-local")


def refuse_what_models_cannot_take(target: Target, settings: Settings, chatless: set[str],
                                   default_model: str | None = None) -> None:
    """Before any request: a chat request to a model without a chat template, and a field a provider refuses
    (refuses= in ini llmtune_endpoints), wherever the space could pair them with that model (the default model
    when the space names none). With split n, n is never sent: n single-sample requests are."""
    judge = settings.judge_for(target.spec)
    if judge is not None and judge.model in chatless and judge.api == "chat":
        raise pytest.UsageError(
            f"{target.name}: its judge {judge.model!r} would get chat requests, but its GGUF has no chat template, "
            f"so it takes completions only: give judge={{\"model\": \"{judge.model}\", \"api\": \"completions\"}}")
    space = target.spec.space
    if not space.values_of("model") and default_model:
        space = SearchSpace({**space.spec, "model": default_model})
    for model, api in sorted(space.together("model", "api"), key=repr):
        if str(model) in chatless and api in (None, "chat"):
            raise pytest.UsageError(
                f"{target.name}: the space may send {model!r} a chat request (api {api or 'unset: chat'}), but its "
                "GGUF has no chat template, so it takes completions only (a chat answer would be garbage): give its "
                f"configs \"api\": \"completions\" and a prompt, e.g. in a group: choice([{{\"model\": \"{model}\", "
                "\"api\": \"completions\", \"prompt\": ...}, {...}])")
    for route in settings.endpoint.table.routes:
        for field in route.refuses:
            sent = [value for model, value in space.together("model", field) if model == route.model
                    and value is not None and (field != "n" or (value != 1 and not settings.endpoint.split_n))]
            if sent:
                raise pytest.UsageError(
                    f"{target.name}: the space may send {route.model!r} {field}={sent[0]!r}, which its endpoint "
                    f"refuses (refuses= on its line in ini llmtune_endpoints): leave {field} out of that model's "
                    "configs, e.g. with a group per model")


def refuse_for_local(target: Target, settings: Settings) -> None:
    """What llama-server would answer without honouring, before any request: best_of (ignored) and a model name it
    does not serve (it answers any name with its one model)."""
    space = target.spec.space
    if space.values_of("best_of"):
        raise pytest.UsageError(f"{target.name}: llama-server ignores best_of, so tuning it would measure noise; "
                                "remove it from the space (n with a vote does what it would)")
    served, table = settings.local.alias, settings.endpoint.table
    local = {model.name for model in settings.local.models}
    models = [model for model in space.values_of("model") if model != served and model not in local
              and ((route := table.route(str(model))) is None or route.local)]  # a model on its own endpoint
    # is served there
    judge = settings.judge_for(target.spec)
    if judge is not None and judge.model != served and judge.model not in local and (
            (route := table.route(judge.model)) is None or route.local):
        raise pytest.UsageError(
            f"{target.name}: its judge is {judge.model!r}, but --llm-local serves "
            f"{', '.join(map(repr, [served, *local]))}, and a server answers any name with its model: the judge's "
            f"grades would come from another model. Give judge=\"{served}\" (a 135M model is a weak judge: "
            f"docs/judge.md), a line in ini llmtune_local_models for {judge.model!r}, or, for a model on another "
            "endpoint, a line in ini llmtune_endpoints")
    if models:
        raise pytest.UsageError(
            f"{target.name}: the space names the model {models[0]!r}, but --llm-local serves "
            f"{', '.join(map(repr, [served, *local]))} ({settings.local.model_name} and ini llmtune_local_models), "
            f"and a server answers any name with its model: a tune would measure another model and lock "
            f"{models[0]!r}. Give it its line in ini llmtune_local_models (`{models[0]} GGUF_FILE_OR_PACKAGE`), "
            "or, for a model on another endpoint, in ini llmtune_endpoints")


def interrupt_on_sigterm(config: pytest.Config) -> None:
    """SIGTERM (a CI job's timeout, `timeout`, a supervisor stopping the run) ends the session as Ctrl-C does: the
    summary printed, what was paid for kept, the local servers stopped (by default SIGTERM kills pytest at once and
    leaves llama-server running). A handler set before is left alone; a second SIGTERM while the session winds down
    is ignored. Only the main thread can set one (a pytest-xdist worker may run elsewhere: its controller's
    servers are the controller's)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) is not \
            signal.SIG_DFL:
        return

    def interrupt(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt("SIGTERM")

    def restore() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    signal.signal(signal.SIGTERM, interrupt)
    config.add_cleanup(restore)


def start_local_server(config: pytest.Config, settings: Settings) -> LocalServer:
    """Start llama-server for this session; it is stopped by its PID when pytest unconfigures, also after Ctrl-C."""
    try:
        model = settings.local.model or default_model_path()
        server = LocalServer(model, alias=settings.local.alias, slots=settings.local.slots,
                             context=settings.local.context, threads=threads_for(1 + len(settings.local.models)))
        config.add_cleanup(server.stop)
        server.start()
    except LocalServerError as error:
        raise pytest.UsageError(str(error)) from None
    return server
