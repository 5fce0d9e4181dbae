"""Terminal lines: progress, leaderboard and gate verdicts, built by pure functions that return lines."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tabulate import tabulate

from pytest_llmtune.search.budget import Budget
from pytest_llmtune.search.domains import callable_name
from pytest_llmtune.search.halving import SuccessiveHalving, Trial
from pytest_llmtune.search.stats import interval, paired_difference
from pytest_llmtune.search.tuner import Progress
from pytest_llmtune.usage import Usage

__all__ = ["comparison_line", "format_score", "leaderboard", "progress_line", "shorten", "usage_words"]

WIDTH = 36


def usage_words(usage: Usage) -> str:
    """New spending and replays, apart: "152 requests (5,276 tokens, $0.0012); 184 replayed (6,010 tokens, $0.0014)"."""
    return (f"{usage.requests} requests ({usage.live.tokens:,} tokens, ${usage.live.cost:.4f}); "
            f"{usage.replayed} replayed ({usage.replay.tokens:,} tokens, ${usage.replay.cost:.4f}, not spent)")


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
    lines += [f"config #{t.index} {t.dropped}" for t in ranked if t.dropped]
    return lines


def progress_line(target: str, progress: Progress) -> str:
    state = "done" if progress.finished else f"{progress.done}/{progress.total} evaluations"
    return (f"llmtune: {target} rung {progress.rung + 1}/{progress.rungs}: {progress.configs} configs x "
            f"{progress.instances} instances, {state}; {usage_words(progress.usage)}")


def shorten(value: Any, width: int = WIDTH) -> str:
    if callable(value):
        text = callable_name(value).rsplit(".", 1)[-1]
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= width else text[: width - 1] + "…"


def format_score(values: Sequence[float], score: float) -> str:
    bounds = interval(values)
    if math.isnan(score):
        return "-"
    if bounds is None:
        return f"{score:.3f}"
    return f"{score:.3f} [{bounds[0]:.2f}, {bounds[1]:.2f}]"


def varying_keys(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    keys = sorted({key for config in configs for key in config})
    return [k for k in keys if len({shorten(c.get(k, "-"), 10**6) for c in configs}) > 1]


def leaderboard(
    configs: Sequence[Mapping[str, Any]], ranked: Sequence[Trial], halving: SuccessiveHalving, limit: int = 10
) -> list[str]:
    """A table of the best `limit` configs: the keys that differ, instances, score with its 95% CI, cost."""
    keys = varying_keys(configs)
    unevaluated = sum(not trial.metrics for trial in ranked)
    ranked = [trial for trial in ranked if trial.metrics]
    rows = []
    for rank, trial in enumerate(ranked[:limit], start=1):
        config = configs[trial.index]
        values = [trial.metrics[i] for i in sorted(trial.metrics)]
        rows.append([rank, *[shorten(config.get(k, "-")) for k in keys], len(values),
                     format_score(values, halving.score(trial)), round(trial.tokens_per_instance, 1),
                     f"${trial.cost_per_instance:.6f}", "dropped: cost" if trial.dropped else ""])
    headers = ["rank", *keys, "instances", "score [95% CI]", "tokens/inst", "cost/inst", ""]
    lines = tabulate(rows, headers=headers, tablefmt="simple").splitlines()
    if len(ranked) > limit:
        lines.append(f"... and {len(ranked) - limit} more configs")
    if unevaluated:
        lines.append(f"{unevaluated} configs drawn but not evaluated before the search stopped")
    return lines


def comparison_line(ranked: Sequence[Trial], halving: SuccessiveHalving) -> str | None:
    """Whether the winner's lead over the runner-up on the same instances is more than noise."""
    if len(ranked) < 2 or ranked[1].rung != ranked[0].rung or ranked[1].dropped:
        return None
    first, second = ranked[0], ranked[1]
    shared = sorted(set(first.metrics) & set(second.metrics))
    diff, bounds = paired_difference([first.metrics[i] for i in shared], [second.metrics[i] for i in shared])
    if bounds is None:
        return None
    better = bounds[0] > 0 if halving.mode == "max" else bounds[1] < 0
    if bounds == (0.0, 0.0):
        verdict = "the same result on every instance; the cheaper config won"
    elif better:
        verdict = "the winner is better beyond noise"
    else:
        verdict = "within noise: these instances cannot tell them apart"
    return (f"winner vs runner-up on the same {len(shared)} instances: {diff:+.3f} "
            f"[95% CI {bounds[0]:+.3f}, {bounds[1]:+.3f}]: {verdict}")
