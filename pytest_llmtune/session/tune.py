"""`pytest --llm-tune`: search each target's space, lock the winner, then run every test once with it.

The search takes over `pytest_runtestloop`. Each instance's fixtures are set up once, then its test
body runs in worker threads, once per config, with an `llm` bound to that config. After the search,
every test runs through pytest's normal protocol with the winning config; those requests replay from
the cassettes, so the per-instance results cost nothing.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from pytest_llmtune.llm.client import LLM
from pytest_llmtune.llm.cost import unknown_price_words
from pytest_llmtune.search.budget import Spending
from pytest_llmtune.search.evaluate import score_call
from pytest_llmtune.search.halving import SuccessiveHalving, Trial
from pytest_llmtune.search.sampler import candidates
from pytest_llmtune.search.stats import interval
from pytest_llmtune.search.tuner import Evaluation, EvaluationError, Progress, SearchResult, merge, search
from pytest_llmtune.session import report
from pytest_llmtune.session.mode import MISSES, Mode
from pytest_llmtune.session.settings import Settings
from pytest_llmtune.session.targets import Target, call_kwargs
from pytest_llmtune.store import lockfile
from pytest_llmtune.usage import Usage

__all__ = ["TuneSession"]


class TuneSession(Mode):
    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        super().__init__(config, settings)
        self.results: dict[str, SearchResult] = {}
        self.errors: dict[str, EvaluationError] = {}
        self.lock_changed: dict[str, bool] = {}
        self.seconds: dict[str, float] = {}
        self.skipped: dict[str, list[str]] = {}
        self.usage: dict[str, Usage] = {}
        self.spending: dict[str, Spending] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        if session.testsfailed and not session.config.option.continue_on_collection_errors:
            raise session.Interrupted(f"{session.testsfailed} error(s) during collection")
        if session.config.option.collectonly:
            return True
        self.collect(session.items)
        for target in self.targets.values():
            self.tune(target)
        self.run_all(session)
        return True

    def tune(self, target: Target) -> None:
        kwargs = self.capture_kwargs(target.items)
        instances = [item for item in target.shuffled() if item.nodeid in kwargs]
        if not instances:
            self.write(f"llmtune: {target.name}: no instance could be set up; see the reports below")
            return
        spec = target.spec
        self.endpoint.spending = self.spending[target.name] = Spending(spec.optimization_budget)
        self.endpoint.usage = self.usage[target.name] = Usage()  # every request of this target, finished or not

        def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
            def evaluate(config: int, instance: int) -> Evaluation:
                llm = LLM(configs[config], self.endpoint)
                call_args = {**kwargs[instances[instance].nodeid], "llm": llm}
                scored = score_call(lambda: instances[instance].obj(**call_args), spec, MISSES)
                return Evaluation(scored.metric, scored.passed, llm.usage, llm.usage.cost)

            return evaluate

        started = time.monotonic()
        with self.cassettes.use(target.name):
            try:
                result = self.search_brackets(target, len(instances), evaluate_with)
            except EvaluationError as error:
                self.errors[target.name] = error
                self.configs[target.name] = error.configs[error.config]  # the tests then show the error itself
                return
            finally:
                self.cassettes.save()
                self.seconds[target.name] = time.monotonic() - started
                self.endpoint.usage = Usage()  # the final run of the tests, replayed, is not the search's
        self.results[target.name] = result
        if result.winner is not None:
            self.configs[target.name] = result.configs[result.winner.index]
            self.lock(target, result, result.winner)

    def search_brackets(self, target: Target, n_instances: int,
                        evaluate_with: Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]]
                        ) -> SearchResult:
        """One successive-halving bracket; with num_samples=-1, new brackets until the budget is spent."""
        spec, seen = target.spec, set()
        count = spec.num_samples if spec.num_samples not in (None, -1) else self.settings.num_samples
        results: list[SearchResult] = []
        for bracket in itertools.count():
            configs = [c for c in self.draw(target, count, spec.seed + bracket) if _key(c) not in seen]
            seen |= {_key(c) for c in configs}
            configs, skipped = self.screen(target, configs)
            self.skipped.setdefault(target.name, []).extend(skipped)
            if not configs:
                break
            halving = SuccessiveHalving(len(configs), n_instances, eta=self.settings.eta,
                                        min_instances=self.settings.min_instances, mode=spec.mode, agg=spec.agg)
            self.write(f"llmtune: tuning {target.name}: {len(configs)} configs, {n_instances} instances, "
                       f"rungs {[(r.configs, r.instances) for r in halving.rungs]}")
            try:
                result = search(configs, evaluate_with(configs), halving=halving,
                                concurrency=self.settings.concurrency, inference_budget=spec.inference_budget,
                                on_progress=self.progress(target))
            except EvaluationError as error:
                error.configs = configs
                raise
            results.append(result)
            if spec.num_samples != -1 or result.stopped:
                break
        return merge(results) if results else SearchResult([], [], SuccessiveHalving(1, n_instances))

    def draw(self, target: Target, count: int, seed: int) -> list[dict[str, Any]]:
        model = self.endpoint.default_model  # the lock names the model a config ran on, also when the space did not
        return [{"model": model, **c} if model and "model" not in c else c
                for c in candidates(target.spec.space, count, seed)]

    def screen(self, target: Target, configs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
        """Configs whose n x max_tokens alone is over the inference budget are skipped before any request."""
        budget = target.spec.inference_budget
        if budget is None:
            return configs, []
        kept, skipped = [], []
        for config in configs:
            most = config.get("n", 1) * config["max_tokens"] if "max_tokens" in config else 0
            worst = budget.measure(most, self.endpoint.prices.cost(str(config.get("model", "")), 0, most))
            if worst > budget.amount:
                skipped.append(f"n={config.get('n', 1)} x max_tokens={config['max_tokens']} can cost "
                               f"{budget.words(worst)} per instance, over the inference budget")
            else:
                kept.append(config)
        return kept, skipped

    def capture_kwargs(self, items: list[pytest.Function]) -> dict[str, dict[str, Any]]:
        """Set up each instance's fixtures once, in collection order, and keep the arguments its body takes.

        An instance whose setup fails or skips is left out of the search; the final run reports it.
        """
        kwargs: dict[str, dict[str, Any]] = {}
        for position, item in enumerate(items):
            nextitem = items[position + 1] if position + 1 < len(items) else None
            try:
                item.ihook.pytest_runtest_setup(item=item)
                kwargs[item.nodeid] = call_kwargs(item)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # noqa: S110 - pytest's own run of this item reports it
                pass
            finally:
                item.ihook.pytest_runtest_teardown(item=item, nextitem=nextitem)
                _forget_fixtures(item)
        return kwargs

    def progress(self, target: Target) -> Any:
        def show(progress: Progress) -> None:
            self.write(report.progress_line(target.name, progress))

        return show

    def write(self, line: str) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    def lock(self, target: Target, result: SearchResult, winner: Trial) -> None:
        values = [winner.metrics[i] for i in sorted(winner.metrics)]
        bounds = interval(values)
        config = result.configs[winner.index]
        entry = {
            "config": target.spec.space.encode(config),
            "score": round(result.halving.score(winner), lockfile.SCORE_DIGITS),
            "interval": [round(b, lockfile.SCORE_DIGITS) for b in bounds] if bounds else None,
            "metric": target.spec.metric_name,
            "mode": target.spec.mode,
            "agg": target.spec.agg_name,
            "threshold": target.spec.threshold,
            "instances": len(values),
            "tokens": {"total": winner.tokens, "per_instance": round(winner.tokens_per_instance, 2)},
            "cost": {"usd_per_instance": round(winner.cost_per_instance, 8), "usd_total": round(winner.cost, 8)},
            "seed": target.spec.seed,
            "split_n": self.settings.split_n,
            "plugin_version": _version(),
            "fingerprints": target.fingerprints(),
        }
        self.lock_changed[target.name] = lockfile.write_target(self.settings.lockfile, target.name, entry)

    def run_all(self, session: pytest.Session) -> None:
        """Every collected test once, through pytest's protocol; llm_eval tests with their target's winner."""
        for position, item in enumerate(session.items):
            nextitem = session.items[position + 1] if position + 1 < len(session.items) else None
            target = self.target_of(item)
            if target is not None and target.name not in self.configs:
                item.add_marker(pytest.mark.skip(reason=f"llmtune: {target.name} has no config to run: "
                                                        "see the llmtune summary"))
            item.config.hook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            if session.shouldfail:
                raise session.Failed(session.shouldfail)
            if session.shouldstop:
                raise session.Interrupted(session.shouldstop)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.targets:
            return
        terminalreporter.section("llmtune")
        for name in self.targets:
            for line in self.summary(name):
                terminalreporter.write_line(line)
        for model in sorted(self.endpoint.prices.unknown):
            terminalreporter.write_line(f"warning: {unknown_price_words(model)}", yellow=True)

    def summary(self, name: str) -> list[str]:
        if name in self.errors:
            error = self.errors[name]
            return [f"{name}: search stopped: {error}",
                    "  the test report above shows the error under that config; recorded responses are kept,",
                    "  so after a fix `pytest --llm-tune` resumes without requesting them again"]
        if name not in self.results:
            return [f"{name}: not tuned (interrupted)"]
        result, spec = self.results[name], self.targets[name].spec
        lines = [f"{name}: {len(result.configs)} configs in {self.seconds[name]:.1f}s; "
                 f"{report.usage_words(self.usage[name])}"]
        lines += report.budget_lines(spec.optimization_budget, self.spending[name].spent, result.stopped,
                                     self.skipped.get(name, []), result.ranked)
        lines += report.leaderboard(result.configs, result.ranked, result.halving)
        comparison = report.comparison_line(result.ranked, result.halving)
        if comparison:
            lines.append(comparison)
        return lines + self.verdict(name, result)

    def verdict(self, name: str, result: SearchResult) -> list[str]:
        if result.winner is None:
            return ["no config was scored on every instance, so nothing was locked: raise the budgets or "
                    "widen the space"]
        lines = []
        spec, score = self.targets[name].spec, result.halving.score(result.winner)
        if spec.threshold is not None and not spec.beats(score, spec.threshold):
            lines.append(f"warning: the best score {score:.3f} misses the threshold {spec.threshold}; "
                         "`pytest --llm-test` will fail until it is met")
        state = "updated" if self.lock_changed.get(name) else "unchanged"
        lines.append(f"locked in {self.settings.lockfile.name} ({state}); commit it with "
                     f"{self.cassettes.path_for(name).relative_to(self.config.rootpath)}")
        return lines


def _key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True, default=repr)


def _forget_fixtures(item: pytest.Function) -> None:
    """What pytest's runtestprotocol does after teardown, so the item's own run sets its fixtures up afresh."""
    item._request = False  # type: ignore[assignment]  # no public API resets a request
    item.funcargs = None  # type: ignore[assignment]


def _version() -> str:
    from pytest_llmtune import __version__

    return __version__
