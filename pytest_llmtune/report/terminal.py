"""Terminal lines: progress, leaderboard and gate verdicts, built by pure functions that return lines."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_llmtune.records import SUFFIX, Sharing, Verdict
from pytest_llmtune.report.leaderboard import Board, config_lines, cut, plural, value_text
from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.cascade import CascadeTrial
from pytest_llmtune.search.costs import BudgetFit
from pytest_llmtune.search.evaluation import Failure, SearchFailed
from pytest_llmtune.search.halving import SuccessiveHalving, Trial
from pytest_llmtune.search.result import Confirmation, SearchResult
from pytest_llmtune.search.scores import Scores
from pytest_llmtune.search.spec import HOLDOUT_FROM, EvalSpec
from pytest_llmtune.search.stats import aggregate, paired_difference
from pytest_llmtune.store.lockfile import LockEntry, Split
from pytest_llmtune.usage import Usage

__all__ = ["TuneOutcome", "comparison_line", "entry_properties", "failed_search_words",
           "locked_words", "not_reached_words", "not_selected_words", "bracket_line",
           "shorten", "tune_lines", "usage_words"]

RESUME = ("recorded responses are kept: after a fix, `pytest --llm-tune` resumes without requesting them again")


@dataclass
class TuneOutcome:
    """What the tune of one target did, for its summary."""

    name: str
    spec: EvalSpec
    spending: Spending = field(default_factory=lambda: Spending(None))
    usage: Usage = field(default_factory=Usage)
    judge: Usage = field(default_factory=Usage)  # of `usage`: the requests of `llm.judge`
    seconds: float = 0.0
    result: SearchResult | None = None
    failed: SearchFailed | None = None
    setup_error: str | None = None
    skipped: list[str] = field(default_factory=list)
    sharing: Sharing | None = None
    lock_changed: bool = False
    locked: LockEntry | None = None
    held_out_count: int = 0  # instances kept from the search
    confirmed: Confirmation | None = None  # a sampled winner's confirmation run (fresh samples on every instance)


WIDTH = 36


def usage_words(usage: Usage) -> str:
    """New spending and replays, apart: "152 requests (5,276 tokens, $0.0012); 184 replayed (6,010 tokens, $0.0014)"."""
    return (f"{usage.requests} requests ({usage.live.tokens:,} tokens, ${usage.live.cost:.4f}); "
            f"{usage.replayed} replayed ({usage.replay.tokens:,} tokens, ${usage.replay.cost:.4f}, not spent)")


def judge_lines(judge: Usage, ungraded_count: int) -> list[str]:
    """What `llm.judge` asked, apart (the line above counts it with the configs' own requests), and how many of its
    replies held no grade."""
    if not judge.requests + judge.replayed:
        return []
    replies = f"{ungraded_count:,} " + ("reply" if ungraded_count == 1 else "replies")
    ungraded = f"; {replies} without a grade, each a miss (shown with the instance)" if ungraded_count else ""
    return [f"  of which the judge: {usage_words(judge)}{ungraded}"]


def model_lines(result: SearchResult, budget: Budget | None) -> list[str]:
    """What the search's evaluations cost per model, when its configs name more than one."""
    tally: dict[str, list[float]] = {}
    for trial in result.ranked:
        if isinstance(trial, CascadeTrial):  # composed from the configs' own evaluations: counted with them
            continue
        model = str(result.configs[trial.index].get("model", ""))
        configs, tokens, cost = tally.setdefault(model, [0, 0, 0.0])
        tally[model] = [configs + 1, tokens + trial.tokens, cost + trial.cost]
    if len(tally) < 2:
        return []
    money = Budget(1.0, "usd")
    return ["  by model (the search's evaluations, replays included): " + "; ".join(
        f"{model} {plural(int(configs), 'config')}, {int(tokens):,} tokens, {money.words(cost)}"
        for model, (configs, tokens, cost) in sorted(tally.items()))]


def budget_lines(budget: Budget | None, spent: float, stopped: str | None, skipped: Sequence[str],
                 ranked: Sequence[Trial]) -> list[str]:
    """What the tune spent against its budget, and which configs the inference budget ruled out, and when."""
    lines = []
    if budget is not None:
        lines.append(f"optimization budget {budget.words(budget.amount)}: spent {budget.words(spent)}"
                     + (f"; stopped: {stopped}" if stopped else ""))
    if skipped:
        lines.append(f"skipped before any request ({len(skipped)}): " + "; ".join(skipped[:3])
                     + (" ..." if len(skipped) > 3 else ""))
    lines += [f"config #{t.index} {t.dropped}" for t in ranked if t.dropped and not t.dropped.startswith("error")]
    return lines


def shorten(value: Any, width: int = WIDTH) -> str:
    return cut(value_text(value), width)


def comparison_line(ranked: Sequence[Trial], halving: SuccessiveHalving) -> str | None:
    """Whether the winner's lead over the runner-up on the same instances is more than noise."""
    if len(ranked) < 2 or ranked[1].rung != ranked[0].rung or ranked[1].dropped:
        return None
    first, second = ranked[0], ranked[1]
    shared = sorted(set(first.metrics) & set(second.metrics))
    diff, bounds = paired_difference([first.metrics[i] for i in shared], [second.metrics[i] for i in shared])
    if bounds is None:
        return None
    better = bounds[0] > 0 if halving.direction.sign > 0 else bounds[1] < 0
    if bounds == (0.0, 0.0):
        tied = (first.cost_per_instance, first.tokens_per_instance) == (second.cost_per_instance,
                                                                        second.tokens_per_instance)
        verdict = ("the same result and cost on every instance: either would do (the first in the order won)"
                   if tied else "the same result on every instance; the cheaper config won")
    elif better:
        verdict = "the winner is better beyond noise"
    else:
        verdict = "within noise: these instances cannot tell them apart"
    return (f"winner vs runner-up on the same {len(shared)} instances: {diff:+.3f} "
            f"[95% CI {bounds[0]:+.3f}, {bounds[1]:+.3f}]: {verdict}")


def cheapest_line(result: SearchResult) -> str | None:
    """With select="cheapest", which config was locked instead of the best, and why that is fair."""
    winner, complete = result.winner, result.complete
    if result.select != "cheapest" or winner is None or winner is complete[0]:
        return None
    best = complete[0]
    return (f"select='cheapest': locked config #{winner.index} (${winner.cost_per_instance:.6f}, "
            f"{winner.tokens_per_instance:.1f} tokens per instance) over the best, config #{best.index} "
            f"(${best.cost_per_instance:.6f}, {best.tokens_per_instance:.1f} tokens): on the same instances the data "
            "cannot call it worse")


def cascade_lines(result: SearchResult, spec: EvalSpec, locked: bool = True) -> list[str]:
    """With cascade=: what composing cascades did, and a locked cascade against the best single config on the
    same instances (score, cost per instance, and the share each stage answered)."""
    if spec.cascade is None:
        return []
    composed = [t for t in result.ranked if isinstance(t, CascadeTrial)]
    lines = [f"cascades: {plural(len(composed), 'cascade')} of up to {spec.max_stages} stages composed from the "
             "configs' results, ranked with them" + (f"; {'; '.join(result.cascades)}" if result.cascades else "")]
    winner = result.winner
    singles = [t for t in result.complete if not isinstance(t, CascadeTrial)]
    if not isinstance(winner, CascadeTrial) or not singles or not locked:
        return lines
    best = singles[0]
    shared = sorted(set(winner.metrics) & set(best.metrics))
    diff, bounds = paired_difference([winner.metrics[i] for i in shared], [best.metrics[i] for i in shared])
    ratio = _ratio(winner, best)
    stages = ", ".join(f"config #{stage} {share:.0%}" for stage, share in zip(winner.stages, winner.shares(),
                                                                              strict=True))
    interval_words = f" [95% CI {bounds[0]:+.3f}, {bounds[1]:+.3f}]" if bounds else ""
    lines.append(f"locked cascade #{winner.index} (answered: {stages} of the tuning instances): "
                 f"{result.halving.score(winner):.3f} against "
                 f"the best single config #{best.index}'s {result.halving.score(best):.3f} on the same "
                 f"{len(shared)} instances ({diff:+.3f}{interval_words}), at {ratio} its cost per instance")
    mine, theirs = result.held_out.get(winner.index), result.held_out.get(best.index)
    if mine and theirs and not mine.error and not theirs.error and mine.metrics and set(mine.metrics) == set(
            theirs.metrics):
        held = sorted(mine.metrics)
        diff, bounds = paired_difference([mine.metrics[i] for i in held], [theirs.metrics[i] for i in held])
        interval_words = f" [95% CI {bounds[0]:+.3f}, {bounds[1]:+.3f}]" if bounds else ""
        lines.append(f"on the {len(held)} held-out instances: the cascade {result.halving.score(mine):.3f} at "
                     f"{_ratio(mine, theirs)} the cost per instance of config #{best.index}, "
                     f"{result.halving.score(theirs):.3f} ({diff:+.3f}{interval_words})")
    return lines


def _ratio(trial: Scores, best: Scores) -> str:
    if best.cost_per_instance > 0:
        return f"{trial.cost_per_instance / best.cost_per_instance:.2f}x (${trial.cost_per_instance:.6f})"
    return f"{trial.tokens_per_instance / max(best.tokens_per_instance, 1e-9):.2f}x in tokens"


def bracket_line(target: str, configs: int, instances: int, halving: SuccessiveHalving, concurrency: int, *,
                 held_out: int = 0, fitted: str = "") -> str:
    how = f"{concurrency} at a time" if concurrency > 1 else "one at a time"
    kept = f" (+{held_out} held out)" if held_out else ""
    plural = "s" if configs != 1 else ""
    return (f"llmtune: tuning {target}: {configs} config{plural}{fitted}, {instances} instances{kept}, "
            f"rungs (configs x instances) {', then '.join(f'{r.configs} x {r.instances}' for r in halving.rungs)}, "
            f"evaluations {how}")


def fit_note(drawn_and_fit: tuple[int, BudgetFit], budget: Budget | None) -> str:
    """What the optimization budget bought of the drawn candidates, and what the plan is expected to spend."""
    drawn, fitted = drawn_and_fit
    if budget is None:
        return ""
    of = f" of {drawn} drawn" if len(fitted.chosen) < drawn else ""
    return f"{of}, a plan expected to spend about {budget.words(fitted.expected)}"


def held_out_line(entry: LockEntry) -> str | None:
    """The winner's score where the search never looked, beside where it chose: the gap is its optimism."""
    if entry.tuning is None or entry.held_out is None:
        return None
    return (f"held-out {entry.metric} {_split_words(entry.held_out)} on the {entry.held_out.instances} instances "
            f"the search never saw; {_split_words(entry.tuning)} on the {entry.tuning.instances} it tuned on")


def _split_words(split: Split) -> str:
    bounds = f" [95% CI {split.interval[0]:.2f}, {split.interval[1]:.2f}]" if split.interval else ""
    return f"{split.score:.3f}{bounds}"


def failed_search_words(outcome: TuneOutcome, url: str, model: str = "", key_from: str = "OPENAI_API_KEY") -> str:
    """Why the search stopped, and what to check: `url` is the endpoint of the failing config's `model`, whose
    key comes from `key_from`."""
    failed = outcome.failed
    assert failed is not None
    error = failed.failure.error
    how = "its last config" if failed.in_a_row == 1 else f"{failed.in_a_row} configs in a row"
    lines = [f"search stopped: {how} failed the same way, on {error.where}: {error.signature}"]
    if any(word in error.signature for word in ("APIConnectionError", "APITimeoutError", "Connection")):
        lines.append(f"requests go to {url}: check that it is up (ini llmtune_base_url, or OPENAI_BASE_URL)")
    elif any(word in error.signature for word in ("AuthenticationError", "PermissionDenied", "401", "403")):
        lines.append(f"{url} refused the key: check {key_from}" if key_from != "no key" else
                     f"{url} wants a key: name the variable that holds it on the model's line in ini llmtune_endpoints")
    elif model and any(word in error.signature for word in ("NotFoundError", "404")):
        lines.append(f"{url} does not serve the model {model!r} (404): check the model's name, or give it its own "
                     "endpoint with a line `MODEL BASE_URL [API_KEY_ENV]` in ini llmtune_endpoints")
    elif any(word in error.signature for word in ("APIStatusError", "InternalServerError", "RateLimitError",
                                                  "NotFoundError", "BadRequestError")):
        lines.append(f"requests go to {url}: check the endpoint and the model name")
    if failed.config is not None:
        lines.append(f"config: {json.dumps(failed.config, sort_keys=True, default=repr)}")
    if error.detail:
        lines.append(error.detail.rstrip())
    lines.append(RESUME)
    return "\n".join(lines)


def locked_words(entry: LockEntry) -> str:
    bounds = f" [95% CI {entry.interval[0]:.2f}, {entry.interval[1]:.2f}]" if entry.interval else ""
    model = entry.config.get("model")
    return (f"locked {entry.metric} {entry.score:.3f}{bounds} on {entry.instances} instances"
            + (f" with {model}" if model else ""))


def entry_properties(entry: LockEntry) -> tuple[tuple[str, Any], ...]:
    """junit properties of a target's verdict."""
    properties: list[tuple[str, Any]] = [("llmtune_metric", entry.metric), ("llmtune_score", round(entry.score, 6))]
    if entry.interval:
        properties.append(("llmtune_interval", f"{entry.interval[0]:.6f} {entry.interval[1]:.6f}"))
    if entry.threshold is not None:
        properties.append(("llmtune_threshold", entry.threshold))
    properties += [("llmtune_instances", entry.instances), ("llmtune_tokens", entry.tokens_total),
                   ("llmtune_cost_usd", round(entry.cost_total, 8))]
    properties += [(f"llmtune_metric_{name}", round(value, 6)) for name, value in sorted(entry.metrics.items())]
    return tuple(properties)


def failure_lines(failures: Sequence[Failure], configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each config that raised, once, with its one traceback; the search went on without it."""
    lines = []
    for failure in failures:
        known = failure.candidate < len(configs)
        config = json.dumps(configs[failure.candidate], sort_keys=True, default=repr) if known else ""
        lines.append(f"config #{failure.candidate} raised on {failure.error.where}, and was dropped: "
                     f"{failure.error.signature}")
        lines.append(f"  config: {shorten(config, 200)}")
        lines += ["  " + line for line in failure.error.detail.rstrip().splitlines()]
    return lines


def confirmation_line(outcome: TuneOutcome, entry: LockEntry) -> str | None:
    """What the confirmation run of a sampled winner found, beside what the search measured on the same
    instances; or why the lock keeps the search's results."""
    confirmed, result = outcome.confirmed, outcome.result
    if confirmed is None or result is None or result.winner is None:
        return None
    if not entry.repeat:
        return (f"not confirmed ({confirmed.error or 'incomplete'}): the lock keeps the search's results, which "
                "flatter the config it picked; `--llm-live` may fail it unchanged (docs/gate.md: the winner's curse)")
    held = result.held_out.get(result.winner.index)
    searched = [*result.winner.metrics.values(), *(held.metrics.values() if held else ())]
    return (f"confirmed with fresh samples of the winner on all {entry.instances} instances: {entry.metric} "
            f"{entry.score:.3f} (the search measured {aggregate(searched, outcome.spec.agg):.3f} on them); the "
            "locked score, what the gate and `--llm-live` compare with")


def tune_lines(outcome: TuneOutcome | None, verdict: Verdict | None, lockfile_name: str, cassette: Path,
               name: str, width: int = 100, verbose: bool = False, nodeid: str = "") -> list[str]:
    if outcome is None:
        return [f"{name}: {verdict.message if verdict else 'not tuned'}"]
    if verdict is None:  # its search began and never ended: Ctrl-C
        return interrupted_lines(outcome, nodeid or name, cassette)
    if outcome.setup_error is not None or outcome.failed is not None:
        assert verdict is not None
        said = verdict.message.splitlines()
        head = " ".join(said[:2]) if said[0].endswith(":") and len(said) > 1 else said[0]  # the reason, not a colon
        return [f"{name}: {head}", f"  (the failure is reported on {name}[llmtune])"]
    result = outcome.result
    if result is None:
        return interrupted_lines(outcome, nodeid or name, cassette)
    lines = [f"{name}: {plural(len(result.configs), 'config')} in {outcome.seconds:.1f}s",
             f"  {usage_words(outcome.usage)}", *judge_lines(outcome.judge, result.ungraded),
             *model_lines(result, outcome.spec.optimization_budget)]
    if outcome.sharing is not None and outcome.sharing.reason is not None:
        lines.append(f"evaluated one at a time: {outcome.sharing.reason}")
    lines += budget_lines(outcome.spec.optimization_budget, outcome.spending.spent, result.stopped,
                          outcome.skipped, result.ranked)
    if result.finished:
        lines.append(result.finished)
    lines += failure_lines(result.failures, result.configs)
    lines += Board(result.configs, result.ranked, result.halving, result.held_out, width, verbose,
                   binary=outcome.spec.metric is None).lines()
    comparison = comparison_line(result.ranked, result.halving)
    if comparison:
        lines.append(comparison)
    selected = cheapest_line(result)
    if selected:
        lines.append(selected)
    lines += cascade_lines(result, outcome.spec, locked=outcome.locked is not None)
    if outcome.locked is None:
        why = verdict.message.split("\n", 1)[0] if verdict is not None else "nothing was locked"
        return [*lines, why]
    entry, spec = outcome.locked, outcome.spec
    held = held_out_line(entry)
    if held:
        lines.append(held)
    elif not outcome.held_out_count and spec.holdout is None:
        lines.append(f"no held-out share: with fewer than {HOLDOUT_FROM} instances none is kept by default, so the "
                     f"score above is where the search chose (llm_eval(holdout=0.25) keeps a quarter)")
    confirmed = confirmation_line(outcome, entry)
    if confirmed:
        lines.append(confirmed)
    if spec.threshold is not None and not spec.beats(entry.score, spec.threshold):
        lines.append(f"warning: the best score {entry.score:.3f} misses the threshold {spec.threshold}; "
                     "`pytest --llm-test` will fail until it is met")
    if entry.metrics:
        lines.append("other metrics of the winner: "
                     + ", ".join(f"{name} {value:.3f}" for name, value in sorted(entry.metrics.items())))
    state = "updated" if outcome.lock_changed else "unchanged"
    return [*lines, f"locked config #{result.winner.index if result.winner else '?'}, as {lockfile_name} holds it:",
            *config_lines(entry.config, width, entry.shares),
            f"locked in {lockfile_name} ({state}); commit it with {cassette}"]


def interrupted_lines(outcome: TuneOutcome, nodeid: str, cassette: Path) -> list[str]:
    """A tune stopped before it locked (Ctrl-C): what was kept, and that a rerun replays it."""
    usage = outcome.usage
    kept = (f"the {plural(usage.requests, 'response')} it paid for are kept in {cassette}"
            if usage.requests else f"no new response was recorded ({cassette} is as it was)")
    return [f"{outcome.name}: not tuned: interrupted after {outcome.seconds:.1f}s; {kept}",
            f"  {usage_words(usage)}",
            f"  `pytest --llm-tune {nodeid}` replays them, requests only the rest, and locks what an uninterrupted "
            "tune would"]


def not_reached_words(name: str, done: str, stopped: str) -> str:
    """The run stopped (-x, --maxfail) before the target's verdict: it was selected, not skipped."""
    return (f"not {done}: the run stopped before {name}{SUFFIX} ran ({stopped}); run it without -x or --maxfail "
            "to see its verdict")


def not_selected_words(name: str, done: str) -> str:
    return (f"not {done}: {name}{SUFFIX} was not selected; a lock covers every instance of a target, so select "
            "the whole test (its function's node id, or a -k/-m that keeps its [llmtune] item)")
