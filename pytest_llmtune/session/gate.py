"""`pytest --llm-test`: run every `@llm_eval` test with its locked config, replaying the recordings, and gate.

Each instance runs once with the locked config (a failed assertion is a miss: reported, not fatal). The target's
`[llmtune]` item is the gate: it fails when the lock is missing, unreadable or stale, when an instance raised,
or when the score is below the threshold or below the locked score by more than the tolerance. Instances that
were not selected (`-k`, `--lf`) are evaluated for the verdict too, so the gate always judges the whole target.
The summary is built from the reports, so it is the same under pytest-xdist, where workers run the items.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_llmtune.search.domains import InvalidSpaceError
from pytest_llmtune.search.stats import aggregate, interval, mean_by_key
from pytest_llmtune.search.tuner import Evaluation, EvaluationError
from pytest_llmtune.session import report
from pytest_llmtune.session.base import Run
from pytest_llmtune.session.endpoint import EndpointSession
from pytest_llmtune.session.scoring import evaluation_of
from pytest_llmtune.session.settings import Settings
from pytest_llmtune.session.targets import SUFFIX, TARGET_PROPERTY, VERDICT_PROPERTY, Target, Verdict
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.lockfile import SCORE_DIGITS, LockEntry, LockfileError

__all__ = ["GateSession"]


class GateSession(EndpointSession):
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.record = settings.record  # before the cassettes are made
        super().__init__(config, settings)
        self.label = "test, recording missing responses" if settings.record else "test, replay only"
        self.locks: dict[str, LockEntry] = {}
        self.configs: dict[str, dict[str, Any]] = {}
        self.refused: dict[str, Verdict] = {}  # targets that cannot be gated, and why
        self._entries: dict[str, Any] | LockfileError | None = None
        self.seen: dict[str, str | None] = {}  # target -> its verdict line, None until its [llmtune] item reports

    # --- the lock ---------------------------------------------------------------------------------------------

    def prepare(self, target: Target, session: pytest.Session) -> None:
        if target.name in self.locks or target.name in self.refused:
            return
        fix = f"run `pytest --llm-tune {target.nodeid}` and commit {self.settings.lockfile.name}"
        try:
            entry = self.entry(target.name)
        except LockfileError as error:
            return self.refuse(target, str(error))
        if entry is None:
            return self.refuse(target, f"no lock in {self.settings.lockfile.name}: {fix}")
        reasons = lockfile.stale_reasons(entry, target.fingerprints())
        if reasons:
            return self.refuse(target, f"the lock is stale ({', '.join(reasons)}): {fix}")
        try:
            self.configs[target.name] = target.spec.space.decode(entry.config)
        except InvalidSpaceError as error:
            return self.refuse(target, f"{error}: {fix}")
        self.locks[target.name] = entry
        return None

    def entry(self, name: str) -> LockEntry | None:
        if self._entries is None:
            try:
                self._entries = lockfile.read(self.settings.lockfile)
            except LockfileError as error:
                self._entries = error
        if isinstance(self._entries, LockfileError):
            raise self._entries
        data = self._entries.get(name)
        return None if data is None else LockEntry.from_json(name, data, self.settings.lockfile)

    def refuse(self, target: Target, why: str) -> None:
        self.refused.setdefault(target.name, Verdict("failed", why))

    def logged_run(self, target: Target, item: pytest.Item) -> Run | None:
        if target.name not in self.locks:
            verdict = self.refused[target.name]
            why = verdict.message.split("\n", 1)[0]
            where = "" if verdict.outcome == "skipped" else f" (the failure is reported on {target.name}{SUFFIX})"
            item.add_marker(pytest.mark.skip(reason=f"llmtune: not gated: {why}{where}"))
            return None
        return Run(config=self.configs[target.name], split_n=self.locks[target.name].split_n)

    # --- the verdict ------------------------------------------------------------------------------------------

    def verdict(self, target: Target) -> Verdict:
        if target.name not in self.locks:
            return self.refused[target.name]
        entry, spec = self.locks[target.name], target.spec
        runs = self.results.setdefault(target.name, {})
        for item in target.instances:  # instances that did not run in this session (deselected, or on another worker)
            if item.nodeid not in runs:
                runs[item.nodeid] = self.run_unlogged(item, Run(config=self.configs[target.name],
                                                                 split_n=entry.split_n), target)
        evaluations: list[Evaluation] = []
        errors: list[EvaluationError] = []
        for item in target.instances:
            try:
                evaluations.append(evaluation_of(runs[item.nodeid], spec, item))
            except EvaluationError as error:
                if runs[item.nodeid].logged:  # its own report shows the error
                    error = EvaluationError(error.signature, "", error.where)
                errors.append(error)
        if errors:
            return Verdict("failed", report.gate_error_words(target.name, errors, len(target.instances)))
        metrics = [e.metric for e in evaluations]
        score = round(aggregate(metrics, spec.agg), SCORE_DIGITS)
        gate = report.Gate(
            metric=spec.metric_name, score=score, interval=interval(metrics), instances=len(metrics),
            misses=sum(not e.passed for e in evaluations), others=mean_by_key([e.others for e in evaluations]),
            threshold=spec.threshold, locked=entry.score, tolerance=self.settings.tolerance,
            cost=sum(e.cost for e in evaluations), tokens=sum(e.usage.tokens for e in evaluations),
        )
        if spec.threshold is not None and not spec.beats(score, spec.threshold):
            return gate.verdict("failed", f"below the threshold {spec.threshold}: improve it and re-tune, or lower "
                                          "the threshold")
        if not spec.beats(score, entry.score, self.settings.tolerance):
            return gate.verdict("failed", f"below the locked {entry.score:.3f} by more than the tolerance "
                                          f"{self.settings.tolerance}: find the change, or re-tune with "
                                          "`pytest --llm-tune`")
        return gate.verdict("passed", "ok")

    # --- the summary, from the reports (the controller's view under pytest-xdist) ------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if TARGET_PROPERTY not in properties:
            return
        name = str(properties[TARGET_PROPERTY])
        self.seen.setdefault(name, None)
        if report.when == "call" and VERDICT_PROPERTY in properties:
            self.seen[name] = ("FAILED " if report.failed else "") + f"{name}: {properties[VERDICT_PROPERTY]}"
        elif report.nodeid.endswith(SUFFIX) and report.failed and self.seen[name] is None:  # an internal error
            self.seen[name] = f"FAILED {name}: " + (report.longreprtext.strip().splitlines() or ["error"])[0]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.seen:
            return
        terminalreporter.section("llmtune")
        for name, line in self.seen.items():
            if line is None:
                line = f"{name}: {report.not_selected_words(name, 'gated')}"
            for number, text in enumerate(line.splitlines()):
                terminalreporter.write_line(text if number == 0 else "  " + text, red=line.startswith("FAILED"))
