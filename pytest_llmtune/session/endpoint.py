"""The modes' connection to the model: the endpoint, the cassettes, and the local server. Nothing starts for
`--co` (collection only): no server, no recording."""

from __future__ import annotations

import contextlib

import pytest

from pytest_llmtune.llm.client import LLM, Endpoint
from pytest_llmtune.llm.local import LocalServer, LocalServerError, default_model_path
from pytest_llmtune.session.base import BaseSession, Run
from pytest_llmtune.session.settings import Settings
from pytest_llmtune.session.targets import Target
from pytest_llmtune.store.cassette import Cassettes

__all__ = ["EndpointSession"]

REPEAT_STRIDE = 1000  # repeat k of an evaluation numbers its samples from k x this


class EndpointSession(BaseSession):
    calls_out = True  # sends requests to the endpoint (else replays only): --llm-local starts its server

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        self.local: LocalServer | None = None
        # the optimization budget's gate sits where a request is known to go to the network
        self.cassettes = Cassettes(settings.cassette_dir, record=self.record,
                                   before_live=lambda: self.endpoint.spending.admit())
        self.endpoint: Endpoint = settings.endpoint(transport=self.cassettes.transport(),
                                                    recorded=self.cassettes.recorded)
        config.add_cleanup(lambda: self.endpoint.close())

    def routing(self, target: Target) -> contextlib.AbstractContextManager[None]:
        return self.cassettes.use(target.name)

    def make_llm(self, run: Run) -> LLM:
        return LLM(run.config, self.endpoint, split_n=run.split_n, first_sample=run.repeat * REPEAT_STRIDE)

    @property
    def endpoint_url(self) -> str:
        return self.endpoint.base_url

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if self.settings.local:
            for target in self.targets.values():
                if "best_of" in target.spec.space.spec:
                    raise pytest.UsageError(f"{target.name}: llama-server ignores best_of, so tuning it would "
                                            "measure noise; remove it from the space (n with a vote does what it "
                                            "would)")

    @pytest.hookimpl(tryfirst=True)  # before the terminal's header, which names the local server
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        if self.config.option.collectonly:
            return
        if self.settings.local and self.calls_out:
            self.local = start_local_server(self.config, self.settings)
            self.endpoint.close()
            self.endpoint = self.settings.endpoint(self.local.base_url, transport=self.cassettes.transport(),
                                                   recorded=self.cassettes.recorded)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.cassettes.stop()  # also on Ctrl-C: every recorded response is saved


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
