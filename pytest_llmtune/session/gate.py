"""`pytest --llm-test`: run every llm_eval test with its locked config, replaying the recordings, and gate.

A failed assertion on one instance is a miss, reported but not fatal; the session fails when a
target's score is below its threshold or below its locked score by more than the tolerance, or
when its lock is missing or stale.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmtune.search.domains import InvalidSpaceError
from pytest_llmtune.search.stats import aggregate
from pytest_llmtune.session.mode import Mode
from pytest_llmtune.session.settings import Settings
from pytest_llmtune.session.targets import Target, collect_targets
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.lockfile import SCORE_DIGITS

__all__ = ["GateSession"]


class GateSession(Mode):
    @property
    def record(self) -> bool:  # type: ignore[override]
        return self.settings.record

    @property
    def label(self) -> str:  # type: ignore[override]
        return "test, recording missing responses" if self.settings.record else "test, replay only"

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        self.problems: dict[str, str] = {}  # target -> why it fails the gate
        self.passed: dict[str, str] = {}
        self.fingerprints: dict[str, dict[str, str]] = {}
        self.entries: dict[str, dict[str, Any]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Before -k and -m deselect: a lock covers every instance of its target."""
        self.fingerprints = {name: t.fingerprints() for name, t in collect_targets(items).items()}

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.collect(session.items)
        try:
            entries = lockfile.read(self.settings.lockfile)
        except lockfile.LockfileError as error:
            raise pytest.UsageError(str(error)) from None
        for name, target in self.targets.items():
            self.check_lock(target, entries.get(name))

    def check_lock(self, target: Target, entry: dict[str, Any] | None) -> None:
        fix = f"run `pytest --llm-tune {target.name}` and commit {self.settings.lockfile.name}"
        if entry is None:
            return self.refuse(target, f"no lock in {self.settings.lockfile.name}: {fix}")
        reasons = lockfile.stale_reasons(entry, self.fingerprints[target.name])
        if reasons:
            return self.refuse(target, f"the lock is stale ({', '.join(reasons)}): {fix}")
        try:
            self.configs[target.name] = target.spec.space.decode(entry["config"])
        except InvalidSpaceError as error:
            return self.refuse(target, f"{error}: {fix}")
        self.entries[target.name] = entry
        self.split_n[target.name] = bool(entry.get("split_n", False))
        return None

    def refuse(self, target: Target, why: str) -> None:
        self.problems[target.name] = why
        for item in target.items:
            item.add_marker(pytest.mark.skip(reason=f"llmtune: {why}"))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        super().pytest_sessionfinish(session)
        for name in self.entries:
            self.judge(name)
        if self.problems and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def judge(self, name: str) -> None:
        target, entry = self.targets[name], self.entries[name]
        results = self.scores.get(name, {})
        if len(results) < len(target.items):
            self.passed[name] = f"not gated: {len(results)} of {len(target.items)} instances ran"
            return
        spec = target.spec
        score = round(aggregate([results[item.nodeid].metric for item in target.items], spec.agg), SCORE_DIGITS)
        misses = sum(not r.passed for r in results.values())
        words = f"{spec.metric_name} {score:.3f} on {len(results)} instances ({misses} missed)"
        if spec.threshold is not None and not spec.beats(score, spec.threshold):
            self.problems[name] = f"{words} is below the threshold {spec.threshold}: tune again or lower it"
        elif not spec.beats(score, entry["score"], self.settings.tolerance):
            self.problems[name] = (f"{words} is below the locked {entry['score']:.3f} by more than the tolerance "
                                   f"{self.settings.tolerance}: find the change, or re-tune with `pytest --llm-tune`")
        else:
            self.passed[name] = f"{words}; locked {entry['score']:.3f}: ok"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.targets:
            return
        terminalreporter.section("llmtune")
        for name in self.targets:
            if name in self.problems:
                terminalreporter.write_line(f"FAILED {name}: {self.problems[name]}", red=True)
            elif name in self.passed:
                terminalreporter.write_line(f"{name}: {self.passed[name]}")
