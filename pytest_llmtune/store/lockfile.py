"""The lockfile: per target, the winning config, its score and the fingerprints that say when it is stale.

JSON with sorted keys, written atomically, and not rewritten when nothing changed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmtune.errors import LlmtuneError
from pytest_llmtune.records import SCORE_DIGITS  # scores are locked, and compared, at this precision
from pytest_llmtune.store.atomic import locked_directory, read_json, write_atomically

__all__ = ["LOCK_VERSION", "FrontPoint", "LockEntry", "LockfileError", "Split", "Stale", "damaged", "read",
           "staleness", "write_target"]

LOCK_VERSION = 1
MODULE_PREFIX = "module:"  # fingerprints of the project's modules a test uses (store/fingerprints.py)


class LockfileError(LlmtuneError):
    """A lockfile that cannot be used; it is left untouched. `damaged`: unreadable (a tune sets it aside and
    writes a new one); else readable but not by this version (nothing is written: upgrade)."""

    def __init__(self, message: str, *, damaged: bool = False) -> None:
        super().__init__(message)
        self.damaged = damaged


@dataclass(frozen=True)
class Split:
    """The winner's score on part of the instances: those the search tuned on, or those it never saw."""

    score: float
    interval: tuple[float, float] | None
    instances: int
    scored_by: str = ""  # "tune" once a re-score kept it: the tune's score, from before the code changed

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"instances": self.instances, "score": round(self.score, SCORE_DIGITS),
                                "interval": [round(b, SCORE_DIGITS) for b in self.interval] if self.interval else None}
        if self.scored_by:
            data["scored_by"] = self.scored_by
        return data

    @classmethod
    def from_json(cls, data: Any) -> Split | None:
        if data is None:
            return None
        interval = data.get("interval")
        return cls(float(data["score"]), (float(interval[0]), float(interval[1])) if interval else None,
                   int(data["instances"]), str(data.get("scored_by", "")))


@dataclass(frozen=True)
class FrontPoint:
    """A config or cascade on the cost-quality front: scored on the tuning instances (which the search chose
    on), with the held-out score when it has one."""

    config: dict[str, Any]
    score: float
    interval: tuple[float, float] | None
    tokens_per_instance: float
    cost_per_instance: float  # dollars
    held_out: float | None = None
    locked: bool = False  # the one the lock's "config" holds, which the gate checks

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "config": self.config, "score": round(self.score, SCORE_DIGITS),
            "interval": [round(b, SCORE_DIGITS) for b in self.interval] if self.interval else None,
            "tokens_per_instance": round(self.tokens_per_instance, 2),
            "usd_per_instance": round(self.cost_per_instance, 8)}
        if self.held_out is not None:
            data["holdout"] = round(self.held_out, SCORE_DIGITS)
        if self.locked:
            data["locked"] = True
        return data

    @classmethod
    def from_json(cls, data: Any) -> FrontPoint:
        interval = data.get("interval")
        held = data.get("holdout")
        return cls(dict(data["config"]), float(data["score"]),
                   (float(interval[0]), float(interval[1])) if interval else None,
                   float(data["tokens_per_instance"]), float(data["usd_per_instance"]),
                   None if held is None else float(held), bool(data.get("locked", False)))


@dataclass(frozen=True)
class LockEntry:
    """One target's lock: the winning config (JSON-able, as the space encodes it), its score and how sure it is,
    what it costs, and the fingerprints that say when it is stale."""

    config: dict[str, Any]
    score: float
    interval: tuple[float, float] | None
    metric: str
    mode: str
    agg: str
    threshold: float | None
    instances: int
    tokens_total: int
    cost_total: float  # dollars
    seed: int
    split_n: bool
    plugin_version: str
    fingerprints: dict[str, str]
    metrics: dict[str, float] = field(default_factory=dict)  # the other numbers a metric dict held, aggregated
    tuning: Split | None = None  # with a holdout: the score on the instances the search chose on
    held_out: Split | None = None  # and on those it never saw: the honest estimate
    results: dict[str, float] = field(default_factory=dict)  # instance id -> its metric: what the gate pairs on
    scored_by: str = "tune"  # or "rescore": `pytest --llm-test --llm-record` scored the locked config again
    repeat: int = 0  # whose samples `results` are: 1 for a sampled winner's confirmation run (fresh samples)
    local: bool = False  # tuned on the local model (--llm-local): its commands need that flag
    seeded: bool = False  # split samples carried seeds; a lock written before they did replays them unseeded
    spread: bool = False  # seeds differed between instances; a lock written before they did replays them shared
    shares: tuple[float, ...] = ()  # a locked cascade: the share of the instances each stage answered, in order
    front: tuple[FrontPoint, ...] = ()  # with cascade=: the nondominated configs and cascades, cheapest first

    def to_json(self) -> dict[str, Any]:
        per_instance = self.instances or 1
        entry: dict[str, Any] = {
            "config": self.config,
            "score": round(self.score, SCORE_DIGITS),
            "interval": [round(b, SCORE_DIGITS) for b in self.interval] if self.interval else None,
            "metric": self.metric, "mode": self.mode, "agg": self.agg, "threshold": self.threshold,
            "instances": self.instances,
            "tokens": {"total": self.tokens_total, "per_instance": round(self.tokens_total / per_instance, 2)},
            "cost": {"usd_per_instance": round(self.cost_total / per_instance, 8),
                     "usd_total": round(self.cost_total, 8)},
            "seed": self.seed, "split_n": self.split_n, "plugin_version": self.plugin_version,
            "fingerprints": dict(self.fingerprints),
        }
        if self.metrics:
            entry["metrics"] = {name: round(value, SCORE_DIGITS) for name, value in sorted(self.metrics.items())}
        if self.tuning is not None and self.held_out is not None:
            entry["tuning"], entry["holdout"] = self.tuning.to_json(), self.held_out.to_json()
        if self.results:
            entry["results"] = {key: _compact(value) for key, value in sorted(self.results.items())}
        if self.scored_by != "tune":
            entry["scored_by"] = self.scored_by
        if self.repeat:
            entry["repeat"] = self.repeat
        if self.local:
            entry["local"] = True
        if self.seeded:
            entry["seeded"] = True
        if self.spread:
            entry["spread_seeds"] = True
        if self.shares:
            entry["cascade"] = {"shares": [round(share, SCORE_DIGITS) for share in self.shares]}
        if self.front:
            entry["front"] = [point.to_json() for point in self.front]
        return entry

    @classmethod
    def from_json(cls, name: str, data: Any, path: Path) -> LockEntry:
        """Raises LockfileError naming the target and the field when `data` is not a lock entry."""
        fix = f"run `pytest --llm-tune {name}` to rewrite it"
        try:
            interval = data.get("interval")
            return cls(
                config=dict(data["config"]), score=float(data["score"]),
                interval=(float(interval[0]), float(interval[1])) if interval else None,
                metric=str(data["metric"]), mode=str(data["mode"]), agg=str(data["agg"]),
                threshold=None if data.get("threshold") is None else float(data["threshold"]),
                instances=int(data["instances"]), tokens_total=int(data["tokens"]["total"]),
                cost_total=float(data.get("cost", {}).get("usd_total", 0.0)), seed=int(data.get("seed", 0)),
                split_n=bool(data.get("split_n", False)), plugin_version=str(data.get("plugin_version", "")),
                fingerprints={str(k): str(v) for k, v in dict(data.get("fingerprints", {})).items()},
                metrics={str(k): float(v) for k, v in dict(data.get("metrics", {})).items()},
                tuning=Split.from_json(data.get("tuning")), held_out=Split.from_json(data.get("holdout")),
                results={str(k): float(v) for k, v in dict(data.get("results", {})).items()},
                scored_by=str(data.get("scored_by", "tune")), repeat=int(data.get("repeat", 0)),
                # a lock from before "local" was kept: split_n, which --llm-local turns on, says as much
                local=bool(data.get("local", data.get("split_n", False))),
                seeded=bool(data.get("seeded", False)), spread=bool(data.get("spread_seeds", False)),
                shares=tuple(float(share) for share in data.get("cascade", {}).get("shares", ())),
                front=tuple(FrontPoint.from_json(point) for point in data.get("front", ())),
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            raise LockfileError(f"{path}: the lock of {name!r} is not readable ({type(error).__name__}: {error}); "
                                f"{fix}") from None


def _compact(value: float) -> float | int:
    """1 and 0 for pass/fail results (a lock of 1,000 instances stays small), else rounded."""
    rounded = round(value, SCORE_DIGITS)
    return int(rounded) if rounded in (0, 1) else rounded


def read(path: Path) -> dict[str, dict[str, Any]]:
    """The targets of the lockfile at `path`; none if it does not exist. A damaged or unknown file is a
    LockfileError naming the file, what is wrong and what fixes it."""
    try:
        data = read_json(path)
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise damaged(path, f"is not a lockfile: {error}") from None
    version = data.get("version") if isinstance(data, dict) else None
    if isinstance(version, int) and version > LOCK_VERSION:
        raise LockfileError(f"{path} was written by a newer pytest-llmtune (lock version {version}; this one reads "
                            f"version {LOCK_VERSION}): upgrade with `pip install -U pytest-llmtune`")
    if version != LOCK_VERSION or not isinstance(data.get("targets"), dict):
        raise damaged(path, 'is not a lockfile: no "version": 1 and "targets" table')
    if not all(isinstance(entry, dict) for entry in data["targets"].values()):
        raise damaged(path, "is not a lockfile: a target's entry is not a table")
    targets: dict[str, dict[str, Any]] = data["targets"]
    return targets


def damaged(path: Path, problem: str) -> LockfileError:
    return LockfileError(f"{path} {problem}. Restore it with `git checkout -- {path.name}`, or run "
                         "`pytest --llm-tune`, which keeps it as llmtune.lock.corrupt-<time> and writes a new one",
                         damaged=True)


def write_target(path: Path, name: str, entry: LockEntry | dict[str, Any]) -> bool:
    """Put `entry` (or its JSON, as a pytest-xdist worker sends it) under `name`, keeping the other targets (also
    those another process wrote meanwhile: the file is read and written under a lock); False if the file already
    said exactly this."""
    with locked_directory(path.parent):
        targets = read(path)
        targets[name] = entry.to_json() if isinstance(entry, LockEntry) else entry
        text = json.dumps({"version": LOCK_VERSION, "targets": targets}, indent=2, sort_keys=True) + "\n"
        if path.exists() and path.read_text(encoding="utf-8") == text:
            return False
        write_atomically(path, text)
        return True


def would_change(path: Path, name: str, entry: LockEntry) -> bool:
    """Whether writing `entry` under `name` would change the file: what `write_target` returns, for a
    pytest-xdist worker, which sends the entry to the controller instead. A file it cannot read would change."""
    try:
        return bool(read(path).get(name) != json.loads(json.dumps(entry.to_json())))
    except LockfileError:
        return True


@dataclass(frozen=True)
class Stale:
    """Why a lock no longer describes its target. `retune`: a change only a new search answers (the space, the
    metric, its direction or aggregate); otherwise the code or the data changed, and the locked config can be
    scored again (`pytest --llm-test --llm-record`)."""

    reasons: list[str]
    retune: bool

    def words(self) -> str:
        return ", ".join(self.reasons)


def staleness(entry: LockEntry, fingerprints: Mapping[str, str], *, metric: str, mode: str,
              agg: str) -> Stale | None:
    """What changed since the target was locked, in words; None when the lock still holds. The threshold and
    comments are not part of it."""
    locked = entry.fingerprints
    retune = [f"its {what} changed ({was} -> {now})" for what, was, now in
              (("metric", entry.metric, metric), ("mode", entry.mode, mode), ("agg", entry.agg, agg)) if was != now]
    if locked.get("space") != fingerprints.get("space"):
        retune.insert(0, "its search space changed")
    if locked.get("cascade") != fingerprints.get("cascade"):
        retune.append("its cascade= check or max_stages changed" if "cascade" in locked and "cascade" in fingerprints
                      else "cascade= was added" if "cascade" in fingerprints else "cascade= was removed")
    rescore = []
    if "body" not in locked:
        rescore.append("its fingerprints are from an older pytest-llmtune")
    elif locked["body"] != fingerprints.get("body"):
        rescore.append("its test body, or a definition of its module that it uses, changed")
    if "judge" in locked and locked["judge"] != fingerprints.get("judge"):
        rescore.append("its judge (the model, api or max_tokens of llm.judge, or the package's judge prompt) changed"
                       if "judge" in fingerprints else "it has no judge model any more (judge= or ini "
                       "llmtune_judge_model)")
    if locked.get("instances") != fingerprints.get("instances"):
        rescore.append("its instances changed")
    if "body" in locked:
        for key in sorted({k for k in (*locked, *fingerprints) if k.startswith(MODULE_PREFIX)}):
            path = key.removeprefix(MODULE_PREFIX)
            if key not in fingerprints:
                rescore.append(f"it no longer uses {path}")
            elif key not in locked:
                rescore.append(f"it now uses {path}")
            elif locked[key] != fingerprints[key]:
                rescore.append(f"{path} changed")
    if not retune and not rescore:
        return None
    return Stale(retune + rescore, bool(retune))
