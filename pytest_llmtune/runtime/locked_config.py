"""The locked config of a target, for application code: `create(context, **locked(name))`. No pytest here."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.store.lockfile import LockfileError
from pytest_llmtune.store.lockfile import read as read_lockfile

__all__ = ["locked"]

LOCKFILE_NAME = "llmtune.lock"


def locked(name: str, lockfile: str | Path | None = None, *, max_cost_per_instance: float | None = None,
           max_tokens_per_instance: float | None = None) -> dict[str, Any]:
    """The locked config of target `name`, ready for `create(context, **config)`.

    A locked cascade comes as `{"config_list": [stage, ...]}`: run it with the check it was tuned with,
    `create(context, **locked(name), filter_func=accept)`, which tries the stages in order until `accept` takes
    an answer.

    `max_cost_per_instance` (dollars) or `max_tokens_per_instance`: another operating point of the lock's
    cost-quality front, the best that costs at most that per instance on the tuning instances (`pytest --llm-test`
    checks only the locked one). `lockfile` defaults to the `llmtune.lock` in the current directory or the
    nearest parent holding one. A callable template is imported by its name. Raises `LockfileError` with the fix
    when it cannot.
    """
    path = Path(lockfile) if lockfile is not None else _find_lockfile(Path.cwd())
    if not path.is_file():
        raise LockfileError(f"{path} does not exist; run `pytest --llm-tune` to write it")
    targets = read_lockfile(path)
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise LockfileError(f"{path} has no target {name!r} (it has: {known}); "
                            "run `pytest --llm-tune` to tune and lock it")
    entry = targets[name]
    config = entry.get("config")
    if not isinstance(config, dict):
        raise LockfileError(f"{path}: target {name!r} has no \"config\" table; run `pytest --llm-tune` to rewrite it")
    if max_cost_per_instance is not None or max_tokens_per_instance is not None:
        config = _operating_point(entry, name, max_cost_per_instance, max_tokens_per_instance)
    if set(config) == {"cascade"}:
        resolved: dict[str, Any] = {"config_list": [_resolved(stage, name) for stage in config["cascade"]]}
    else:
        resolved = _resolved(config, name)
    if entry.get("split_n"):
        resolved["split_n"] = True  # sample as the tune did: n single-sample requests (see create)
    return resolved


def _resolved(config: dict[str, Any], name: str) -> dict[str, Any]:
    return {key: _resolve(value, f"{key!r} of {name!r}") for key, value in config.items()}


def _operating_point(entry: dict[str, Any], name: str, cost: float | None, tokens: float | None) -> dict[str, Any]:
    """The best point of the front within the limits (the locked config alone when the lock has no front)."""
    count = max(1, int(entry.get("instances", 1)))
    points = entry.get("front") or [{"config": entry["config"], "score": entry["score"],
                                     "usd_per_instance": entry.get("cost", {}).get("usd_per_instance", 0.0),
                                     "tokens_per_instance": entry.get("tokens", {}).get("total", 0) / count}]
    fitting = [p for p in points if (cost is None or p["usd_per_instance"] <= cost)
               and (tokens is None or p["tokens_per_instance"] <= tokens)]
    if not fitting:
        cheapest = min(points, key=lambda p: (p["usd_per_instance"], p["tokens_per_instance"]))
        raise LockfileError(
            f"no operating point of {name!r} costs at most {_limits(cost, tokens)} per instance: the cheapest costs "
            f"${cheapest['usd_per_instance']:.6g} and {cheapest['tokens_per_instance']:g} tokens (\"front\" in "
            "the lockfile); raise the limit, or tune a cheaper space")
    sign = -1.0 if entry.get("mode") == "min" else 1.0
    chosen: dict[str, Any] = max(fitting, key=lambda p: sign * float(p["score"]))["config"]
    return chosen


def _limits(cost: float | None, tokens: float | None) -> str:
    return " and ".join(part for part in (f"${cost:g}" if cost is not None else "",
                                          f"{tokens:g} tokens" if tokens is not None else "") if part)


def _find_lockfile(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / LOCKFILE_NAME).is_file():
            return folder / LOCKFILE_NAME
    raise LockfileError(f"no {LOCKFILE_NAME} in {start} or its parents; run `pytest --llm-tune` in your project "
                        "to write it, or pass lockfile=PATH")


def _resolve(value: Any, where: str) -> Any:
    if Demonstrations.encoded(value):
        return Demonstrations.decode(value)  # rendered as the tune rendered them
    if not (isinstance(value, dict) and set(value) == {"callable"}):
        return value
    try:
        return _import_by_name(str(value["callable"]))
    except (ImportError, AttributeError) as error:
        raise LockfileError(
            f"the locked template {where} is a callable, {value['callable']}, that could not be imported ({error}); "
            "run where its module is importable, or define it at module level"
        ) from error


def _import_by_name(name: str) -> Any:
    """`package.module.Class.function`: the longest importable module prefix, then attributes."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name is not None and module_name.startswith(error.name):
                continue  # that module (or its package) does not exist: try a shorter prefix
            raise
        for attribute in parts[cut:]:
            found = getattr(found, attribute)
        return found
    raise ImportError(f"no module named {parts[0]!r}")
