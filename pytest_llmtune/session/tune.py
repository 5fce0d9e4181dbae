"""`pytest --llm-tune`: search each target's space when its first item runs, lock the winner, then run every
instance once with it (replayed: free) and report the target's verdict on its `[llmtune]` item.

How evaluations run depends on what the test needs per instance, found by a probe: one unlogged run of an
instance that sets up its fixtures, looks, and stops before the body.
- Concurrent: when the body needs nothing per instance but its direct parameters and `llm` (its other fixtures
  are module-, class- or session-scoped and not parametrized), the whole search runs inside the probe, with
  those fixtures alive, evaluations in worker threads, `--llm-concurrency` requests at a time.
- One at a time: otherwise (function-scoped fixtures such as tmp_path, monkeypatch, capsys, yield fixtures,
  `request`, indirect parametrization, xunit setup_method, an `async def` body), each evaluation is its own run of
  pytest's protocol: fixtures set up for it and torn down after it, exactly as in a plain run.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from pytest_llmtune.llm.cost import PriceTable, unknown_price_words
from pytest_llmtune.report import json_report, preview, terminal
from pytest_llmtune.report.hints import with_flags
from pytest_llmtune.report.leaderboard import wrap
from pytest_llmtune.report.progress import ProgressDisplay, ShownTune
from pytest_llmtune.search.brackets import Brackets
from pytest_llmtune.search.budget import Spending
from pytest_llmtune.search.candidate import Candidate
from pytest_llmtune.search.cascade import front, is_cascade, stages_of
from pytest_llmtune.search.domains import InvalidSpaceError, describe
from pytest_llmtune.search.evaluation import (
    Config,
    Evaluate,
    Evaluation,
    Executor,
    InlineExecutor,
    NothingFits,
    SearchFailed,
    TargetError,
)
from pytest_llmtune.search.halving import Trial
from pytest_llmtune.search.problem import TuneProblem
from pytest_llmtune.search.result import Confirmation, HeldOut, SearchResult
from pytest_llmtune.search.space import fingerprint
from pytest_llmtune.search.stats import aggregate, interval, mean_by_key
from pytest_llmtune.search.tune import Tune
from pytest_llmtune.session.base import rerun_error
from pytest_llmtune.session.distribute import INPUT_KEY, Controller, function_of
from pytest_llmtune.session.endpoint import EndpointSession, models_of
from pytest_llmtune.session.fixtures import Sharing
from pytest_llmtune.session.scoring import evaluation_of
from pytest_llmtune.session.state import Run
from pytest_llmtune.session.targets import Target, Verdict, instance_id, judged
from pytest_llmtune.settings import Settings
from pytest_llmtune.store import lockfile
from pytest_llmtune.store.atomic import locked_directory, set_aside
from pytest_llmtune.store.cassette import Cassette, CassetteError
from pytest_llmtune.store.lockfile import FrontPoint, LockEntry, Split
from pytest_llmtune.usage import Usage

__all__ = ["TuneSession"]

How = tuple[Executor, int, Callable[..., Evaluate]]  # how evaluations run: the executor, at most how many at once,
# and evaluate_with(configs, repeat=0): repeat 1 draws the confirmation's fresh samples

CONFIRMATION = 1  # the repeat whose samples confirm a sampled winner (numbered from REPEAT_STRIDE): what is locked


class TuneSession(EndpointSession):
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        self.reported: list[str] = []  # where --llm-report wrote
        self.previews: list[str] = []  # with --co: each selected target's plan
        self.warnings: list[str] = []  # damaged files kept aside

    # --- the search ---------------------------------------------------------------------------------------------

    def prepare(self, target: Target, session: pytest.Session) -> None:
        state = self.state(target.name)
        if state.verdict is not None:
            return
        if not self.selected(target, session):
            state.verdict = Verdict("skipped", terminal.not_selected_words(target.name, "tuned"))
            return
        outcome = state.outcome = terminal.TuneOutcome(target.name, target.spec)
        try:
            outcome.held_out_count = target.spec.held_out_count(len(target.instances))
        except ValueError as error:
            state.verdict = Verdict("failed", str(error))
            return
        try:
            self.problem(target, outcome.held_out_count)
        except InvalidSpaceError as error:  # demos() that the target's own instances cannot serve
            outcome.setup_error = str(error)
            state.verdict = self.conclude(target, outcome)
            return
        started = time.monotonic()
        self.endpoint.spending = outcome.spending = Spending(target.spec.optimization_budget)
        self.endpoint.usage = outcome.usage = Usage()  # every request of this target, finished or not
        self.endpoint.judge_usage = outcome.judge = Usage()  # of those, the judge's
        try:
            self.search(target, outcome)
        except SearchFailed as failed:
            outcome.failed = failed
        except (NothingFits, TargetError) as error:
            outcome.setup_error = str(error)
        except InvalidSpaceError as error:  # the ini's strategy=grid on a continuous space
            outcome.setup_error = f"{error} (ini llmtune_strategy = {self.settings.search.strategy})"
        finally:
            self.cassettes.save()
            outcome.seconds = time.monotonic() - started
            self.endpoint.usage = Usage()  # the logged runs of the instances replay; they are not the search's
            self.endpoint.judge_usage = Usage()
        state.verdict = self.conclude(target, outcome)

    def search(self, target: Target, outcome: terminal.TuneOutcome) -> None:
        instances = target.shuffled()

        def inside(probed: pytest.Function, sharing: Sharing) -> None:
            if sharing.reason is None:  # the whole search, inside this run, while the fixtures are alive
                self.run_tune(target, outcome, self.concurrent(target, instances, probed, sharing))

        sharing = self.probe(target, inside)
        if isinstance(sharing, str):  # the probe could not set the instance up
            outcome.setup_error = sharing
            return
        outcome.sharing = sharing
        if sharing.reason is not None:
            self.run_tune(target, outcome, self.one_at_a_time(target, instances))

    def concurrent(self, target: Target, instances: list[pytest.Function], probed: pytest.Function,
                   sharing: Sharing) -> How:
        def evaluate_with(configs: list[Config], repeat: int = 0) -> Evaluate:
            def evaluate(candidate: int, instance: int) -> Evaluation:
                item = instances[instance]
                run = Run.of(configs[candidate], repeat=repeat)
                return evaluation_of(self.call_shared(item, probed, sharing, run), target.spec, item)

            return evaluate

        pool = ThreadPoolExecutor(max_workers=self.settings.endpoint.concurrency, thread_name_prefix="llmtune")
        self.config.add_cleanup(lambda: pool.shutdown(wait=True, cancel_futures=True))
        return pool, self.settings.endpoint.concurrency, evaluate_with

    def one_at_a_time(self, target: Target, instances: list[pytest.Function]) -> How:
        def evaluate_with(configs: list[Config], repeat: int = 0) -> Evaluate:
            def evaluate(candidate: int, instance: int) -> Evaluation:
                item = instances[instance]
                run = self.run_unlogged(item, Run.of(configs[candidate], repeat=repeat), target)
                error = rerun_error(run)
                if error is not None:
                    raise error
                return evaluation_of(run, target.spec, item)

            return evaluate

        return InlineExecutor(), 1, evaluate_with

    def problem(self, target: Target, held_out: int) -> TuneProblem:
        """The target's search as the core poses it: the one definition the tune and the --co preview share.
        demos() with no pool draws from the tuning instances (the first of the shuffled order, never a held-out
        one, and a given pool never shows a held-out one: Target.tuning_space); raises InvalidSpaceError when they
        cannot serve it."""
        prices, search = self.endpoint.prices, self.settings.search
        spec = dataclasses.replace(target.spec, space=target.tuning_space())
        return TuneProblem(spec=spec, instances=len(target.instances) - held_out, held_out_count=held_out,
                           num_samples=search.num_samples, eta=search.eta, min_instances=search.min_instances,
                           strategy=search.strategy, default_model=self.endpoint.default_model,
                           split_n=self.settings.endpoint.split_n,
                           price=lambda model, prompt, completion: prices.cost(model, round(prompt), round(completion)))

    def run_tune(self, target: Target, outcome: terminal.TuneOutcome, how: How) -> None:
        """The core's tune of the target (search/tune.py), its progress shown, its results kept in `outcome` also
        when it stops early."""
        executor, concurrency, evaluate_with = how
        problem = self.problem(target, outcome.held_out_count)
        tune = Tune(problem, self.endpoint.spending)
        display = ProgressDisplay(self.config.pluginmanager.get_plugin("terminalreporter"),
                                  self.config.get_verbosity(), target.name, target.spec, outcome.spending,
                                  outcome.usage, width=self.config.get_terminal_writer().fullwidth,
                                  throttled=lambda: self.pacer.throttled)
        shown = ShownTune(display, target.name, problem.instances, problem.held_out_count, concurrency,
                          target.spec.optimization_budget)
        try:
            tune.run(evaluate_with, executor=executor, concurrency=concurrency, observer=shown,
                     fresh_with=lambda configs: evaluate_with(configs, CONFIRMATION))
        finally:
            display.close()
            outcome.result, outcome.confirmed = tune.search, tune.confirmed
            outcome.skipped[:] = tune.skipped

    # --- the verdict and the lock -------------------------------------------------------------------------------

    def conclude(self, target: Target, outcome: terminal.TuneOutcome) -> Verdict:
        result = outcome.result
        if outcome.setup_error is not None:
            return Verdict("failed", f"could not tune {target.name}:\n{outcome.setup_error}")
        if outcome.failed is not None:
            config = outcome.failed.config or {}
            model = config.get("model", self.endpoint.default_model)
            lane = self.endpoint.lane(model)
            return Verdict("failed", terminal.failed_search_words(outcome, lane.base_url, str(model or ""),
                                                                  lane.key_from))
        if result is None or result.winner is None:
            return Verdict("failed", "nothing was locked: no config was scored on every instance; raise the budgets "
                                     "or widen the space")
        winner = result.winner
        count = outcome.held_out_count
        held = result.held_out.get(winner.index) if count else None
        if count and (held is None or held.error or len(held.metrics) < count):
            why = held.error if held is not None and held.error else "not evaluated"
            return Verdict("failed", f"nothing was locked: the winner could not be scored on the {count} held-out "
                                     f"instances ({why}); a lock needs every instance, for the gate")
        state = self.state(target.name)
        state.candidate = Candidate(result.configs[winner.index])
        entry = self.lock_entry(target, result, winner, held, outcome.confirmed)
        outcome.lock_changed = self.write_lock(target.name, entry)
        outcome.locked = entry
        state.repeat = entry.repeat  # the instances' own runs replay the locked samples
        return Verdict("passed", terminal.locked_words(entry), terminal.entry_properties(entry))

    def lock_entry(self, target: Target, result: SearchResult, winner: Trial, held: HeldOut | None,
                   confirmed: Confirmation | None) -> LockEntry:
        """The winner on every instance (what the gate replays), with its tuning and held-out scores apart. A
        sampled winner's confirmation run, when complete, gives the locked results: fresh samples, not the lucky
        ones the search picked it by."""
        from pytest_llmtune import __version__

        spec, instances = target.spec, target.shuffled()  # the search's instance numbers index this order
        metrics = {**winner.metrics, **(held.metrics if held else {})}
        others = {**winner.others, **(held.others if held else {})}
        tokens, cost = winner.tokens + (held.tokens if held else 0), winner.cost + (held.cost if held else 0.0)
        repeat = 0
        if confirmed is not None and len(confirmed.metrics) == len(instances):
            metrics, others, tokens, cost = confirmed.metrics, confirmed.others, confirmed.tokens, confirmed.cost
            repeat = CONFIRMATION
        answered = {**winner.answered, **(held.answered if held else {})}  # a cascade's stage on each instance
        if confirmed is not None and repeat:
            answered = confirmed.answered
        values = [metrics[i] for i in sorted(metrics)]
        tuning = [winner.metrics[i] for i in sorted(winner.metrics)]
        binary = spec.metric is None  # pass/fail results; a metric's get the bootstrap, whatever its values
        split = None
        if held is not None:
            held_values = [held.metrics[i] for i in sorted(held.metrics)]
            split = (Split(result.halving.score(winner), interval(tuning, binary=binary), len(tuning)),
                     Split(aggregate(held_values, spec.agg), interval(held_values, exact=True, binary=binary),
                           len(held_values)))
        return LockEntry(
            config=spec.space.encode(result.configs[winner.index]), score=aggregate(values, spec.agg),
            interval=interval(values, binary=binary), metric=spec.metric_name, mode=spec.mode, agg=spec.agg_name,
            threshold=spec.threshold, instances=len(values), tokens_total=tokens, cost_total=cost, seed=spec.seed,
            split_n=self.settings.endpoint.split_n, plugin_version=__version__,
            # "config": the locked config with its templates' source, to tell whether an edited space still holds it
            fingerprints={**judged(target.fingerprints(self.settings.judge_for(spec)),
                                   bool(result.judge.requests + result.judge.replayed)),
                          "config": fingerprint(describe(result.configs[winner.index]))},
            metrics=mean_by_key(others.values()), tuning=split[0] if split else None,
            held_out=split[1] if split else None,
            results={instance_id(instances[i]): value for i, value in metrics.items()},
            repeat=repeat, local=self.settings.local.enabled, seeded=self.settings.endpoint.split_n, spread=True,
            shares=shares_of(answered, len(stages_of(result.configs[winner.index])))
            if is_cascade(result.configs[winner.index]) else (),
            front=front_points(result, winner, spec),
        )

    def refuse(self, target: Target, why: str) -> None:
        state = self.state(target.name)
        state.verdict = state.verdict or Verdict("failed", why)

    def verdict(self, target: Target) -> Verdict:
        verdict = self.state(target.name).verdict
        assert verdict is not None
        return verdict

    def logged_run(self, target: Target, item: pytest.Item) -> Run | None:
        state = self.state(target.name)
        if state.candidate is None:
            assert state.verdict is not None
            why = state.verdict.message.split("\n", 1)[0]
            item.add_marker(pytest.mark.skip(reason=f"llmtune: {target.name} has no tuned config: {why}"))
            return None
        return Run(state.candidate, repeat=state.repeat)

    # --- the plan, with --co ------------------------------------------------------------------------------------

    def refuse_before_sending(self, session: pytest.Session) -> None:
        super().refuse_before_sending(session)
        for target in self.targets.values():
            if self.selected(target, session):
                refuse_free_dollar_budgets(target, self.settings, self.endpoint.prices, self.endpoint.default_model)

    @pytest.hookimpl(tryfirst=True)  # before a pytest-xdist worker sends its collection (EndpointSession's)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        super().pytest_collection_finish(session)
        if not self.config.option.collectonly and self.place is None:  # a worker's controller checked it
            self.check_lockfile()
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self.config.option.collectonly and reporter is not None:  # -p no:terminal: nothing to print it on
            width = self.config.get_terminal_writer().fullwidth
            self.previews = [line for target in self.targets.values() if self.selected(target, session)
                          for line in self.preview(target, width)]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        super().pytest_sessionstart(session)
        if self.controller is not None and not self.config.option.collectonly:  # it collects nothing: check here
            self.check_lockfile()

    def check_lockfile(self) -> None:
        """Before anything is spent: a lockfile from a newer version stops the tune (upgrade); a damaged one is
        kept aside as `llmtune.lock.corrupt-<time>` and the tune writes a new one."""
        path = self.settings.lockfile
        try:
            lockfile.read(path)
        except lockfile.LockfileError as error:
            if not error.damaged:
                raise pytest.UsageError(str(error)) from None
            with locked_directory(path.parent):
                aside = set_aside(path)
            self.warnings.append(f"warning: {str(error).split('. Restore')[0]}: kept as {aside.name}; the new "
                                 f"{path.name} holds the targets tuned from now on (the others' locks are in "
                                 f"{aside.name})")

    def preview(self, target: Target, width: int) -> list[str]:
        """What `pytest --llm-tune` would do for the target, with the tune's own drawing, screening and fitting:
        no request, no server (see report/preview.py)."""
        spec, settings = target.spec, self.settings
        try:
            held = spec.held_out_count(len(target.instances))
        except ValueError as error:
            return [f"{target.name}: {error}"]
        try:
            problem = self.problem(target, held)
        except InvalidSpaceError as error:
            return [f"{target.name}: {error}"]
        model, split_n = self.endpoint.default_model or "", settings.endpoint.split_n
        try:
            recorded = Cassette.load(self.cassettes.path_for(target.name)).interactions.values()
            sizes = preview.recorded_sizes(recorded)
        except CassetteError:
            sizes = preview.Sizes(None, None)  # the tune itself will say what is wrong with it

        def cost(config: Mapping[str, Any], prompt: float, completion: float) -> float:
            return problem.price(str(config.get("model", model)), prompt, completion)

        def estimate(config: Mapping[str, Any]) -> float:  # the recordings' sizes stand for measured costs
            tokens = preview.tokens_per_evaluation(config, sizes, split_n)
            assert spec.optimization_budget is not None
            return spec.optimization_budget.measure(round(tokens.prompt + tokens.completion),
                                                    cost(config, tokens.prompt, tokens.completion))

        brackets = Brackets(problem)
        try:
            first = brackets.first(estimate)  # the tune's own drawing, screening and fitting
        except InvalidSpaceError as error:
            return [f"{target.name}: {error}"]
        if not first.candidates:
            return [f"{target.name}: every candidate is skipped: " + "; ".join(brackets.skipped[:2])]
        return preview.preview_lines(target.name, spec, first, instances=problem.instances, held_out=held,
                                     sizes=sizes, split_n=split_n, cost=cost, width=width)

    # --- the summary and the reports ----------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        super().pytest_sessionfinish(session)
        if self.place is not None:  # a pytest-xdist worker: the controller prints and writes (distribute.py)
            self.config.workeroutput.setdefault(INPUT_KEY, {}).update(self.worker_output(session))  # type: ignore[attr-defined]
            return
        if self.controller is not None:
            summaries = self.controller.summaries()
            found = {summary["name"]: summary["report"] for summary in summaries if summary.get("report")}
        else:
            found = self.report_data() if self.settings.reports else {}
        if not self.settings.reports or not found:
            return
        data = json_report.header("tune", self.settings, self.endpoint_url)
        data["targets"] = found
        self.reported = self.write_reports(data)

    def report_data(self) -> dict[str, Any]:
        found = {}
        for name, state in self.states.items():
            if state.outcome is not None:
                ids = [instance_id(item) for item in self.targets[name].shuffled()]
                found[name] = json_report.tune_target(state.outcome, state.verdict, ids)
        return found

    def worker_output(self, session: pytest.Session) -> dict[str, Any]:
        """What this worker tells its controller at the end: each target's summary lines, at the controller's
        width, and its report data, for the targets whose items ran here; every target it collected (the
        controller tells those no worker ran); the session's warnings. As JSON values: execnet carries those."""
        assert self.place is not None
        width = self.place.width
        data = self.report_data() if self.settings.reports else {}
        targets = [{"name": name, "item": target.item.nodeid if target.item else name,
                    "concluded": self.state(name).outcome is not None,
                    "lines": self.target_lines(name, target, width), "report": data.get(name)}
                   for name, target in self.targets.items()
                   if self.state(name).outcome is not None or self.state(name).verdict is not None]
        known = [{"name": name, "item": target.item.nodeid if target.item else name,
                  "selected": self.selected(target, session), "flag": self.flag_for(target)}
                 for name, target in self.targets.items()]
        prices = [f"warning: {unknown_price_words(model)}" for model in sorted(self.endpoint.prices.unknown)]
        output = {"targets": targets, "known": known, "warnings": self.session_warnings(),
                  "notes": self.session_notes(), "prices": prices}
        return dict(json.loads(json.dumps(output, default=str)))

    def session_warnings(self) -> list[str]:
        throttled = self.pacer.summary()
        where = f" ({self.place.id})" if self.place is not None and throttled else ""
        return [*self.warnings, *self.cassettes.set_aside, *([throttled + where] if throttled else [])]

    def session_notes(self) -> list[str]:
        if not self.locals:
            return []
        return ["local models started when first needed: " + ", ".join(
            f"{name} (llama-server pid {server.pid})" for name, server in self.locals.items())]

    def target_lines(self, name: str, target: Target, width: int) -> list[str]:
        """The target's part of the summary, wrapped to `width` (prose to the width pytest uses; tables fitted)."""
        state = self.state(name)
        outcome, verdict = state.outcome, state.verdict
        if verdict is None and self.not_reached(target):
            verdict = Verdict("skipped", terminal.not_reached_words(name, "tuned", str(self.stopped)))
        cassette, root = self.cassettes.path_for(name), self.config.rootpath
        shown = cassette.relative_to(root) if cassette.is_relative_to(root) else cassette
        lines = terminal.tune_lines(outcome, verdict, self.settings.lockfile.name, shown, name, width=width,
                                    verbose=self.config.get_verbosity() > 0, nodeid=target.nodeid)
        return [part for line in [*lines, *self.instance_lines(name, width)]
                for part in wrap(with_flags(line, self.flag_for(target)), width)]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.config.option.collectonly:
            if self.previews:
                terminalreporter.section("llmtune plan: what `pytest --llm-tune` would do (no request sent)")
                width = self.config.get_terminal_writer().fullwidth
                for line in self.previews:
                    for part in wrap(line, width):
                        terminalreporter.write_line(part)
            return
        if self.controller is not None:
            return self.distributed_summary(terminalreporter, self.controller)
        if not self.targets:
            return
        terminalreporter.section("llmtune")
        width = self.config.get_terminal_writer().fullwidth
        for warning in self.session_warnings():
            for part in wrap(warning, width):
                terminalreporter.write_line(part, yellow=True)
        for line in self.session_notes():
            terminalreporter.write_line(line)
        for name, target in self.targets.items():
            for part in self.target_lines(name, target, width):
                terminalreporter.write_line(part)
        for line in self.reported:
            terminalreporter.write_line(line)
        for model in sorted(self.endpoint.prices.unknown):
            for part in wrap(f"warning: {unknown_price_words(model)}", width):
                terminalreporter.write_line(part, yellow=True)

    def unrun_lines(self, controller: Controller, told: set[str]) -> list[str]:
        """The targets no worker ran an item of: not selected, or the run stopped (-x, --maxfail) first."""
        lines, stopped = [], self.stopped
        known = {entry["name"]: entry for output in controller.outputs for entry in output.get("known", [])}
        for name, entry in sorted(known.items(), key=lambda pair: controller.order(pair[1]["item"])):
            if name in told or function_of(entry["item"]) in told:
                continue
            words = (terminal.not_reached_words(name, "tuned", stopped or "the run stopped")
                     if entry["selected"] else terminal.not_selected_words(name, "tuned"))
            lines.append(with_flags(f"{name}: {words}", entry["flag"]))
        return lines

    def distributed_summary(self, terminalreporter: Any, controller: Controller) -> None:
        """The controller's summary under pytest-xdist: what each worker rendered, in collection order, and a line
        for a target whose worker died."""
        summaries = controller.summaries()
        crashed = controller.crash_lines({function_of(summary["item"]) for summary in summaries
                                          if summary["concluded"]})
        unrun = self.unrun_lines(controller, {summary["name"] for summary in summaries} | set(controller.crashed))
        if not summaries and not crashed and not unrun:
            return
        terminalreporter.section("llmtune")
        width = self.config.get_terminal_writer().fullwidth
        outputs = controller.outputs
        for warning in dict.fromkeys([*self.warnings, *(w for output in outputs
                                                        for w in [*output["warnings"], *output["prices"]])]):
            for part in wrap(warning, width):
                terminalreporter.write_line(part, yellow=True)
        for line in dict.fromkeys(line for output in outputs for line in output["notes"]):
            terminalreporter.write_line(line)
        for summary in summaries:
            for line in summary["lines"]:
                terminalreporter.write_line(line)
        for line in crashed:
            for part in wrap(line, width):
                terminalreporter.write_line(part, red=True)
        for line in unrun:
            for part in wrap(line, width):
                terminalreporter.write_line(part)
        for line in self.reported:
            terminalreporter.write_line(line)


def shares_of(answered: Mapping[int, int], stages: int) -> tuple[float, ...]:
    """The share of the instances each stage of a cascade answered."""
    count = max(1, len(answered))
    return tuple(sum(1 for stage in answered.values() if stage == number) / count for number in range(stages))


def front_points(result: SearchResult, winner: Trial, spec: Any) -> tuple[FrontPoint, ...]:
    """The complete candidates (configs and cascades) no other beats on both score and cost per instance, scored
    on the tuning instances, with the winner marked; none when the front is the winner alone."""
    halving, binary = result.halving, spec.metric is None
    points = front(result.complete, halving.direction, halving.score)
    if winner not in points:
        points.append(winner)
    if len(points) < 2:
        return ()

    def held_score(trial: Trial) -> float | None:
        held = result.held_out.get(trial.index)
        return aggregate(held.values(), spec.agg) if held is not None and not held.error and held.metrics else None

    return tuple(FrontPoint(spec.space.encode(result.configs[t.index]), halving.score(t),
                            interval(t.values(), binary=binary), t.tokens_per_instance, t.cost_per_instance,
                            held_score(t), t is winner) for t in points)


def refuse_free_dollar_budgets(target: Target, settings: Settings, prices: PriceTable,
                               default_model: str | None) -> None:
    """Before any request: a budget in dollars when every model the target may call (its space's, the default one
    for configs that name none, and its judge) costs nothing a token (a local model) or has no price (counted as
    0): the optimization budget would never be spent (with num_samples=-1 the tune would not stop), nor an
    inference budget drop anything."""
    spec = target.spec
    budgets = [(name, budget) for name, budget in (("optimization_budget", spec.optimization_budget),
                                                   ("inference_budget", spec.inference_budget))
               if budget is not None and budget.unit == "usd"]
    models = models_of(target, settings, default_model or None)
    if not budgets or not models or any(prices.price(model) not in (None, (0.0, 0.0)) for model in models):
        return
    free = [model for model in dict.fromkeys(models) if prices.price(model) is not None]
    unknown = [model for model in dict.fromkeys(models) if prices.price(model) is None]
    why = "; ".join(([f"{', '.join(map(repr, free))} cost{'s' if len(free) == 1 else ''} $0 a token"] if free else [])
                    + ([f"no price is known for {', '.join(map(repr, unknown))}"] if unknown else []))
    given = " and ".join(f"{name}={budget.amount:g}" for name, budget in budgets)
    endless = spec.num_samples == -1 and any(name == "optimization_budget" for name, _ in budgets)
    examples = ", ".join(f'{name}="{20000 if name == "optimization_budget" else 300} tokens"' for name, _ in budgets)
    one = len(budgets) == 1
    raise pytest.UsageError(
        f"{target.name}: {given} {'is' if one else 'are'} in dollars, but every model it may call is counted at $0 "
        f"({why}), so {'it' if one else 'they'} could never bind"
        f"{' (with num_samples=-1 the tune would not stop)' if endless else ''}: give {'it' if one else 'them'} in "
        f"tokens, e.g. {examples}, or the models' prices in ini llmtune_prices (`model input_per_1k "
        "output_per_1k`); nothing was sent")

