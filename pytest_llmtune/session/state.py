"""What a session knows of each target as it runs: one record per target, instead of dicts keyed by its name.

`Run` is one run of an instance's body under a candidate's config; `TargetState` holds a target's runs, what the
tune or the gate found, and what its reports said (the only view a pytest-xdist controller has).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_llmtune.llm.client import LLM
from pytest_llmtune.records import BodyResult, Verdict
from pytest_llmtune.report.instances import Row
from pytest_llmtune.report.terminal import TuneOutcome
from pytest_llmtune.search.candidate import Candidate
from pytest_llmtune.search.evaluation import Config
from pytest_llmtune.store.lockfile import LockEntry

__all__ = ["Reported", "Run", "TargetState"]


@dataclass
class Run:
    """One run of an instance's body under `candidate`: what the `llm` fixture serves, and what the body did."""

    candidate: Candidate
    split_n: bool | None = None
    seeded: bool = True  # split samples carry seeds: False replays a lock recorded before they did
    spread: bool = True  # seeds differ between instances: False replays a lock recorded before they did
    repeat: int = 0  # the repeat's number, under --llm-live --llm-repeat: it draws samples of its own
    logged: bool = False  # the instance's own run, reported; evaluations are not
    probe: Any = None  # set for the run that looks at a target's fixtures (tune.py)
    fixtures: set[str] = field(default_factory=set)  # function-scoped fixtures set up for it, when probed
    llm: LLM | None = None
    result: BodyResult | None = None
    error: BaseException | None = None  # raised by the body (not a failed assertion)
    metric_error: str | None = None
    reports: list[pytest.TestReport] = field(default_factory=list)

    @classmethod
    def of(cls, config: Config, **fields: Any) -> Run:
        return cls(Candidate(config), **fields)

    def record(self, result: BodyResult) -> None:
        self.result = result


@dataclass
class Reported:
    """A target as its reports show it."""

    line: str | None = None  # its verdict line, once its [llmtune] item reported
    outcome: str | None = None  # "passed", "failed" (a verdict or an internal error) or "skipped"
    rows: dict[str, Row] = field(default_factory=dict)  # instance node id -> its -v row
    data: dict[str, Any] = field(default_factory=dict)  # its verdict and instances, for --llm-report

    @property
    def passed(self) -> bool:
        """Its verdict passed: every instance ran and was scored."""
        return self.outcome == "passed"


@dataclass
class TargetState:
    name: str
    runs: dict[str, Run] = field(default_factory=dict)  # instance node id -> its logged run (or the verdict's)
    reported: Reported = field(default_factory=Reported)
    verdict: Verdict | None = None  # the tune's verdict; the gate's refusal (a target it cannot gate)
    candidate: Candidate | None = None  # what its instances run: the tune's winner, the gate's lock
    repeat: int = 0  # the repeat whose samples the lock holds (the tune's confirmation: fresh samples)
    outcome: TuneOutcome | None = None  # what its tune did
    entry: LockEntry | None = None  # its lock, read and usable (the gate)
    rescore: dict[str, str] | None = None  # a stale lock scored again (--llm-record): the new fingerprints
    note: str | None = None  # what its verdict adds (its space changed around the lock)
    pruned: str | None = None  # what --llm-prune did to its cassette, or why not
