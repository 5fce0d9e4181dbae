"""`pytest --llm-test`: run every `@llm_eval` test with its locked config and judge it against the lock.

Three ways to run, one verdict. Each instance runs once with the locked config (a failed assertion is a miss:
reported, not fatal), then the target's `[llmtune]` item gives the verdict:
- offline (default): the recordings are replayed; a stale lock fails, naming what changed and what to run;
- `--llm-record`: a lock made stale by the test's code or data (not its space or metric) is scored again,
  recording only the missing responses; when the new score is not significantly worse, the lock is updated;
- `--llm-live`: every request goes to the endpoint (nothing replayed, recordings untouched), K times per instance
  with `--llm-repeat K`: the scheduled check that the model behind a name still does what was locked.
The verdict fails when an instance raised, when the score (or with ini `llmtune_threshold_on = lower`, the worse
bound of its interval) misses the threshold, or when a one-sided test at ini `llmtune_alpha`, paired on the
instances whose results the lock keeps, finds it worse than the lock by more than ini `llmtune_margin`. Instances
that were not selected (`-k`, `--lf`) are evaluated for the verdict too, so the gate always judges the whole target.
The summary is built from the reports, so it is the same under pytest-xdist, where workers run the items.
With `--llm-prune`, each target whose verdict passed has its cassette cut to what this gate replayed (or recorded).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_llmtune.report import json_report, terminal, verdicts
from pytest_llmtune.report.hints import with_flags
from pytest_llmtune.report.instances import report_row
from pytest_llmtune.report.leaderboard import wrap
from pytest_llmtune.search.candidate import Candidate
from pytest_llmtune.search.cascade import stages_of
from pytest_llmtune.search.domains import InvalidSpaceError, describe
from pytest_llmtune.search.evaluation import Evaluation, EvaluationError, TargetError
from pytest_llmtune.search.judge import Judgement, judge
from pytest_llmtune.search.space import SearchSpace, fingerprint
from pytest_llmtune.session.endpoint import EndpointSession
from pytest_llmtune.session.scoring import evaluation_of
from pytest_llmtune.session.state import Run
from pytest_llmtune.session.targets import (
    SUFFIX,
    TARGET_PROPERTY,
    VERDICT_PROPERTY,
    Target,
    Verdict,
    instance_id,
    judged,
)
from pytest_llmtune.settings import Settings
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.lockfile import LockEntry, LockfileError

__all__ = ["GateSession"]


class GateSession(EndpointSession):
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        self.label = ("test live, nothing replayed" if settings.gate.live else
                      "test, recording missing responses" if settings.gate.record else "test, replay only")
        self._entries: dict[str, Any] | LockfileError | None = None
        self.reported: list[str] = []  # where --llm-report wrote
        self.seen: list[str] = []  # the targets whose items reported, in order: the summary's
        self.prune = bool(config.getoption("llm_prune"))

    @classmethod
    def records(cls, settings: Settings) -> bool:
        # live, every response is new, recorded only in a cassette of this session (cassette_dir)
        return settings.gate.record or settings.gate.live

    @classmethod
    def sends(cls, settings: Settings) -> bool:
        return settings.gate.record or settings.gate.live  # a replay-only gate never calls out

    def cassette_dir(self) -> Path:
        if not self.settings.gate.live:
            return super().cassette_dir()
        # the session's own responses: each instance and repeat is sent once, and its item and the verdict read
        # the same answer; nothing is replayed from, or written to, the recordings the offline gate uses
        directory = Path(tempfile.mkdtemp(prefix="llmtune-live-"))
        self.config.add_cleanup(lambda: shutil.rmtree(directory, ignore_errors=True))
        return directory

    # --- the lock ---------------------------------------------------------------------------------------------

    def prepare(self, target: Target, session: pytest.Session) -> None:
        state = self.state(target.name)
        if state.entry is not None or state.verdict is not None:
            return
        tune = f"`pytest --llm-tune {target.nodeid}` and commit {self.settings.lockfile.name}"
        try:
            entry = self.entry(target.name)
        except LockfileError as error:
            return self.refuse(target, str(error))
        if entry is None:
            return self.refuse(target, f"no lock in {self.settings.lockfile.name}: run {tune}")
        spec, fingerprints = target.spec, target.fingerprints(self.settings.judge_for(target.spec))
        if entry.fingerprints.get("space") != fingerprints["space"] and still_a_point(spec.space, entry):
            # the space was edited around the locked config: the lock still says what that config scores
            fingerprints = {**fingerprints, "space": entry.fingerprints["space"]}
            state.note = ("its search space changed since the tune, and the locked config is still a point of it: a "
                          f"re-tune may find better (`pytest --llm-tune {target.nodeid}`)")
        stale = lockfile.staleness(entry, fingerprints, metric=spec.metric_name, mode=spec.mode, agg=spec.agg_name)
        if stale is not None and (stale.retune or not self.settings.gate.record):  # live judges fresh locks only
            what = (f"re-tune: {tune}" if stale.retune else
                    f"score the locked config again with `pytest --llm-test --llm-record {target.nodeid}` (records "
                    f"only missing responses), or re-tune: {tune}")
            return self.refuse(target, f"the lock is stale ({stale.words()}): {what}")
        try:
            state.candidate = Candidate(spec.space.decode(entry.config))
        except InvalidSpaceError as error:
            return self.refuse(target, f"{error}: re-tune: {tune}")
        if stale is not None:
            state.rescore = {**fingerprints, **{k: v for k, v in entry.fingerprints.items() if k == "config"}}
        state.entry = entry
        if self.calls_out and self.selected(target, session):
            repeat = self.settings.gate.repeat if self.settings.gate.live else 1
            self.warm(target, [(item, self.run_of(target, number)) for number in range(repeat)
                               for item in target.instances])
            down = self.down(target)
            if down is not None:  # once, not once per instance
                state.entry = None
                return self.refuse(target, f"{down}{self.local_hint(entry)}")
        return None

    def local_hint(self, entry: LockEntry) -> str:
        if entry.local and not self.settings.local.enabled:
            return "; this lock was tuned on the local model: add --llm-local"
        return ""

    def flag_for(self, target: Target) -> str:
        if self.settings.local.enabled:
            return self.settings.local.flag
        try:
            entry = self.state(target.name).entry or self.entry(target.name)
        except LockfileError:
            return ""
        return "--llm-local" if entry is not None and entry.local else ""

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
        state = self.state(target.name)
        state.verdict = state.verdict or Verdict("failed", why)

    def logged_run(self, target: Target, item: pytest.Item) -> Run | None:
        state = self.state(target.name)
        if state.entry is None:
            assert state.verdict is not None
            verdict = self.flagged(target, state.verdict)
            why = verdict.message.split("\n", 1)[0]
            where = "" if verdict.outcome == "skipped" else f" (the failure is reported on {target.name}{SUFFIX})"
            item.add_marker(pytest.mark.skip(reason=f"llmtune: not gated: {why}{where}"))
            return None
        return self.run_of(target)

    def run_of(self, target: Target, repeat: int = 0) -> Run:
        """Repeat `repeat` of the locked samples: repeat 0 replays (or, live, asks again for) those the lock
        holds the results of."""
        state = self.state(target.name)
        assert state.entry is not None and state.candidate is not None
        entry = state.entry
        return Run(state.candidate, split_n=entry.split_n, repeat=entry.repeat + repeat, seeded=entry.seeded,
                   spread=entry.spread)

    # --- the verdict ------------------------------------------------------------------------------------------

    def verdict(self, target: Target) -> Verdict:
        state = self.state(target.name)
        if state.entry is None:
            assert state.verdict is not None
            return state.verdict
        entry, spec = state.entry, target.spec
        repeat = self.settings.gate.repeat if self.settings.gate.live else 1
        runs = state.runs
        for item in target.instances:  # instances that did not run in this session (deselected, or on another worker)
            if item.nodeid not in runs:
                runs[item.nodeid] = self.run_unlogged(item, self.run_of(target), target)
        evaluations: dict[str, list[Evaluation]] = {}
        errors: list[EvaluationError] = []
        for item in target.instances:
            found = evaluations.setdefault(instance_id(item), [])
            for number in range(repeat):
                run = runs[item.nodeid] if number == 0 else self.run_unlogged(item, self.run_of(target, number), target)
                try:
                    found.append(evaluation_of(run, spec, item))
                except TargetError as error:  # the cascade's check raised: the target's code, not the model
                    return Verdict("failed", f"{target.name}: {error}")
                except EvaluationError as error:
                    if run.logged:  # its own report shows the error
                        error = EvaluationError(error.signature, "", error.where)
                    errors.append(error)
                    break
        if errors:
            return Verdict("failed", verdicts.gate_error_words(target.name, errors, len(target.instances)))
        gate, rescoring = self.settings.gate, state.rescore is not None
        # an instance whose every response is a recording from before this session has no sampling noise
        replayed = {key for key, found in evaluations.items() if all(e.spent.fresh == 0 for e in found)}
        judgement = judge(evaluations, spec, locked_results=entry.results, locked_score=entry.score, alpha=gate.alpha,
                          margin=gate.margin, threshold_on=gate.threshold_on, rescoring=rescoring,
                          accept_lower=gate.accept_lower, replayed=replayed)
        if judgement.passed and rescoring:
            stages = [found[0].answered for found in evaluations.values() if found and found[0].answered is not None]
            used = any(e.judge.requests + e.judge.replayed for found in evaluations.values() for e in found)
            self.relock(target, entry, judgement, stages, used)
        shown = verdicts.Gate.of(judgement, spec, entry.score, repeat=repeat,
                                 how="live" if gate.live else "re-scored" if rescoring else "")
        return shown.verdict(verdicts.judgement_words(judgement, spec, target.nodeid, live=gate.live,
                                                      rescoring=rescoring, lockfile=self.settings.lockfile.name,
                                                      note=state.note))

    def relock(self, target: Target, entry: LockEntry, judgement: Judgement, stages: list[int],
               used_judge: bool) -> None:
        """The locked config with its new score: new results and fingerprints; the tune's split scores are kept,
        marked as the tune's (they describe the code before the change). A cascade's shares come from the new runs
        (`stages`: the stage that answered each instance); the cost-quality front is dropped: its other points were
        scored by the code before the change."""
        from pytest_llmtune import __version__

        relocked = replace(
            entry, score=judgement.score, interval=judgement.interval, instances=judgement.instances,
            threshold=target.spec.threshold, tokens_total=judgement.tokens, cost_total=judgement.cost,
            plugin_version=__version__, fingerprints=judged(self.state(target.name).rescore or {}, used_judge),
            metrics=judgement.others,
            results=judgement.results, scored_by="rescore",
            tuning=entry.tuning and replace(entry.tuning, scored_by="tune"),
            held_out=entry.held_out and replace(entry.held_out, scored_by="tune"),
            shares=tuple(stages.count(n) / len(stages) for n in range(len(entry.shares))) if stages and entry.shares
            else entry.shares, front=(),
        )
        self.write_lock(target.name, relocked)

    # --- the summary, from the reports (the controller's view under pytest-xdist) ------------------------------

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        properties = dict(report.user_properties)
        if TARGET_PROPERTY not in properties:
            return
        name = str(properties[TARGET_PROPERTY])
        if name not in self.seen:
            self.seen.append(name)
        reported = self.state(name).reported
        if report.when == "call" and VERDICT_PROPERTY in properties:
            reported.line, reported.outcome = f"{name}: {properties[VERDICT_PROPERTY]}", report.outcome
        elif report.nodeid.endswith(SUFFIX) and report.failed and reported.line is None:  # an internal error
            reported.line = f"{name}: " + (report.longreprtext.strip().splitlines() or ["error"])[0]
            reported.outcome = "failed"
        if not report.nodeid.endswith(SUFFIX) and (report.when == "call" or not report.passed):
            reported.rows[report.nodeid] = report_row(report)
        if self.settings.reports and (report.when == "call" or (report.when == "setup" and not report.passed)):
            json_report.gate_report(reported.data, report, properties)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        super().pytest_sessionfinish(session)
        if self.config.option.collectonly:  # --co writes nothing
            return
        if self.prune:  # refused with --llm-live and under pytest-xdist (plugin.py)
            for name, target in self.targets.items():
                self.state(name).pruned = with_flags(self.prune_cassette(name), self.flag_for(target))
        if self.settings.reports and not hasattr(self.config, "workerinput"):  # the reports reach the controller
            data = json_report.header("gate" + (" live" if self.settings.gate.live else ""), self.settings,
                                      self.endpoint_url if self.calls_out else None)
            data["targets"] = {name: self.state(name).reported.data for name in sorted(self.seen)}
            self.reported = self.write_reports(data)

    def prune_cassette(self, name: str) -> str:
        """Only a passing gate replayed every instance's recordings; anything else leaves the cassette as it is."""
        path, root = self.cassettes.path_for(name), self.config.rootpath
        shown = path.relative_to(root) if path.is_relative_to(root) else path
        reported = self.state(name).reported
        if reported.passed:
            return self.cassettes.prune(name).words(shown)
        if reported.line is None:
            return (f"not pruned {shown}: its gate did not run ({name}{SUFFIX} was not selected, or the session "
                    "stopped before it)")
        return (f"not pruned {shown}: its gate did not pass; fix it first (a re-tune replays the recordings "
                "pruning would remove)")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        for name in self.targets:  # stopped (-x) before any of its items reported
            if name not in self.seen and self.not_reached(self.targets[name]):
                self.seen.append(name)
        pruned = [self.state(name).pruned for name in self.targets if self.state(name).pruned]
        if not self.seen and not pruned:
            return
        if self.controller is not None:  # the workers' reports arrive as their targets finish
            self.seen.sort(key=self.controller.order_of_target)
        terminalreporter.section("llmtune")
        for warning in self.cassettes.set_aside:  # --llm-record kept a damaged cassette aside
            terminalreporter.write_line(warning, yellow=True)
        for name in self.seen:
            reported = self.state(name).reported
            line, failed = reported.line, reported.outcome == "failed"
            if line is None:
                stopped = name in self.targets and self.not_reached(self.targets[name])
                line = f"{name}: " + (terminal.not_reached_words(name, "gated", str(self.stopped)) if stopped
                                      else terminal.not_selected_words(name, "gated"))
            width = terminalreporter.config.get_terminal_writer().fullwidth
            for number, text in enumerate(line.splitlines()):
                shown = ("FAILED " if failed else "") + text if number == 0 else "  " + text
                for part in wrap(shown, width):  # to the width pytest uses, in a log too (COLUMNS)
                    terminalreporter.write_line(part, red=failed)
            for text in self.instance_lines(name, terminalreporter.config.get_terminal_writer().fullwidth):
                terminalreporter.write_line(text)
        for line in [*pruned, *self.reported]:
            terminalreporter.write_line(line)


def still_a_point(space: SearchSpace, entry: LockEntry) -> bool:
    """Whether the locked config is a point of the (edited) space, its callable templates unchanged. Never for a
    space with demos(): its fingerprint holds the pool (or the tuning instances' fields), and a changed pool changes
    what the search would choose from and what an instance may be shown."""
    if space.demos:
        return False
    try:
        config = space.decode(entry.config)
    except InvalidSpaceError:
        return False
    for stage in stages_of(config):  # a cascade's: every stage
        # the tune names the session's model in a config whose space names none
        point = stage if space.values_of("model") else {key: value for key, value in stage.items() if key != "model"}
        if not space.contains(point):
            return False
    if "config" in entry.fingerprints:
        return entry.fingerprints["config"] == fingerprint(describe(config))
    # an older lock: its templates' source unknown
    return not any(callable(value) for stage in stages_of(config) for value in stage.values())
