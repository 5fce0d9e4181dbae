"""`--llm-report PATH`: what a tune or a gate did, as JSON (every key in a fixed order) or one HTML page.

The data are plain dicts built here from the session's records; `html_page.py` renders the same dict. A tune
report holds, per target, every evaluated config (its settings as locked, the rung it reached, per-instance
metrics, outcomes and answers, tokens, cost, why it was dropped), the ranking, the winner, the plan, budgets and
spending. A gate report holds each target's verdict and its instances as their reports gave them (so it is whole
under pytest-xdist too).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_llmtune.llm.cost import PRICES_DATE
from pytest_llmtune.records import Verdict
from pytest_llmtune.report.terminal import TuneOutcome
from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.halving import Trial
from pytest_llmtune.search.result import Confirmation, HeldOut
from pytest_llmtune.search.scores import Scores
from pytest_llmtune.search.stats import aggregate, interval
from pytest_llmtune.settings import Settings
from pytest_llmtune.usage import Usage

__all__ = ["FORMAT", "SUFFIXES", "gate_report", "header", "rendered", "tune_target"]

FORMAT = 1  # the report's format version, its first key
SUFFIXES = (".json", ".html", ".md")
PACKAGES = ("pytest-llmtune", "pytest", "openai", "scipy", "vcrpy", "pytest-xdist", "pytest-asyncio")


def header(kind: str, settings: Settings, endpoint: str | None) -> dict[str, Any]:
    """What every report begins with: its kind, when, the versions, the endpoint and the settings."""
    return {
        "llmtune_report": FORMAT,
        "kind": kind,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), **{name: _version(name) for name in PACKAGES}},
        "endpoint": endpoint,  # the URL only; keys never leave memory
        "prices": {"built_in_date": PRICES_DATE,
                   "overrides": {m: list(p) for m, p in sorted(settings.endpoint.prices.items())}},
        "settings": {"concurrency": settings.endpoint.concurrency, "num_samples": settings.search.num_samples,
                     "eta": settings.search.eta, "strategy": settings.search.strategy,
                     "min_instances": settings.search.min_instances, "split_n": settings.endpoint.split_n,
                     "local": settings.local.enabled, "alpha": settings.gate.alpha, "margin": settings.gate.margin,
                     "threshold_on": settings.gate.threshold_on},
        "targets": {},
    }


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tune_target(outcome: TuneOutcome, verdict: Verdict | None, instance_ids: Sequence[str]) -> dict[str, Any]:
    """One target of a tune. `instance_ids` in the search's order: instance number i is instance_ids[i]."""
    spec, result = outcome.spec, outcome.result
    data: dict[str, Any] = {
        "metric": spec.metric_name, "mode": spec.mode, "agg": spec.agg_name, "threshold": spec.threshold,
        "verdict": {"outcome": verdict.outcome if verdict else None, "message": verdict.message if verdict else None},
        "instances": {"tuning": list(instance_ids[: len(instance_ids) - outcome.held_out_count]),
                      "held_out": list(instance_ids[len(instance_ids) - outcome.held_out_count:])},
        "budgets": {"optimization": budget_json(spec.optimization_budget, outcome.spending),
                    "inference": budget_json(spec.inference_budget, None)},
        "spending": usage_json(outcome.usage, outcome.seconds),
        "plan": None, "configs": [], "ranking": [], "winner": None, "confirmation": None, "locked": None,
        "stopped": None, "error": outcome.setup_error or (str(outcome.failed) if outcome.failed else None),
    }
    if result is None:
        return data
    if outcome.judge.requests + outcome.judge.replayed:  # of "spending": llm.judge's requests, its ungraded replies
        data["judge"] = {**usage_json(outcome.judge, 0.0), "ungraded": result.ungraded}
        del data["judge"]["seconds"]
    brackets = [[{"configs": r.configs, "instances": r.instances} for r in rungs] for rungs in result.brackets]
    data["plan"] = {"rungs": brackets[0], "brackets": brackets, "configs_drawn": len(result.configs),
                    "skipped_before_any_request": list(outcome.skipped)}
    data["configs"] = [config_json(number, result.configs[number], trial, result.held_out.get(number), spec,
                                   instance_ids, outcome)
                       for number, trial in sorted((t.index, t) for t in result.ranked)]
    data["ranking"] = [trial.index for trial in result.ranked if trial.metrics]
    data["winner"] = result.winner.index if result.winner is not None else None
    data["stopped"] = result.stopped
    if outcome.confirmed is not None:
        data["confirmation"] = held_json(outcome.confirmed, instance_ids, spec.agg, exact=False,
                                         binary=spec.metric is None)
    if outcome.locked is not None:
        data["locked"] = outcome.locked.to_json()
    return data


def config_json(number: int, config: Mapping[str, Any], trial: Trial, held: HeldOut | None, spec: Any,
                ids: Sequence[str], outcome: TuneOutcome) -> dict[str, Any]:
    values = [trial.metrics[i] for i in sorted(trial.metrics)]
    bounds = interval(values, binary=spec.metric is None)
    return {
        "number": number,
        "config": spec.space.encode(config),
        "rung": trial.rung + 1 if trial.metrics else 0,
        "instances": len(values),
        "score": aggregate(values, spec.agg) if values else None,
        "interval": list(bounds) if bounds else None,
        "tokens": trial.tokens, "cost_usd": usd(trial.cost),
        "tokens_per_instance": trial.tokens_per_instance, "cost_usd_per_instance": usd(trial.cost_per_instance),
        "dropped": trial.dropped,
        "results": results_json(trial, ids),
        "held_out": held_json(held, ids, spec.agg, binary=spec.metric is None) if held is not None else None,
    }


def results_json(scores: Scores, ids: Sequence[str]) -> dict[str, Any]:
    """instance id -> its metric, whether it missed and why, the model's first answer line, and the first line of
    every answer it got (n samples: all n)."""
    results = {}
    for number in sorted(scores.metrics):
        answer, miss = scores.answers.get(number, ("", None))
        results[ids[number]] = {"metric": scores.metrics[number], "miss": miss, "answer": answer,
                                "answers": list(scores.samples.get(number, ()))}
    return results


def held_json(held: HeldOut | Confirmation, ids: Sequence[str], agg: Any, *, exact: bool = True,
              binary: bool | None = None) -> dict[str, Any]:
    """Held-out scores with the exact interval, as the leaderboard shows them; a confirmation run (`exact=False`)
    with the interval the lock keeps for the same results."""
    values = [held.metrics[i] for i in sorted(held.metrics)]
    bounds = interval(values, exact=exact, binary=binary)
    return {"instances": len(values), "score": aggregate(values, agg) if values else None,
            "interval": list(bounds) if bounds else None, "tokens": held.tokens, "cost_usd": usd(held.cost),
            "error": held.error, "results": results_json(held, ids)}


def budget_json(budget: Budget | None, spending: Spending | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"amount": budget.amount, "unit": budget.unit, "spent": spending.spent if spending is not None else None}


def usage_json(usage: Usage, seconds: float) -> dict[str, Any]:
    """New spending and replays apart."""
    return {"requests": usage.requests, "tokens": usage.live.tokens, "cost_usd": usd(usage.live.cost),
            "replayed": usage.replayed, "replayed_tokens": usage.replay.tokens,
            "replayed_cost_usd": usd(usage.replay.cost), "seconds": round(seconds, 3)}


def usd(amount: float) -> float:
    """Dollars to 1e-10: sums of the same costs in another order (concurrent evaluations) print the same."""
    return round(amount, 10)


def gate_report(target: dict[str, Any], report: Any, properties: Mapping[str, Any]) -> None:
    """Add a gate's test report to its target's record: the verdict (its [llmtune] item) or an instance."""
    from pytest_llmtune.records import SUFFIX, VERDICT_PROPERTY

    found = {key.removeprefix("llmtune_"): value for key, value in properties.items()
             if key.startswith("llmtune_") and key != "llmtune_target"}
    if report.nodeid.endswith(SUFFIX):
        target["verdict"] = {"outcome": report.outcome, "message": found.pop(VERDICT_PROPERTY.removeprefix("llmtune_"),
                                                                            None) or report.longreprtext.strip(),
                             **found}
        return
    outcome = "missed" if "miss" in found else report.outcome
    instance = report.nodeid.split("[", 1)[1][:-1] if "[" in report.nodeid else report.nodeid
    target.setdefault("instances", {})[instance] = {"outcome": outcome, "nodeid": report.nodeid, **found}


def rendered(suffix: str, data: Mapping[str, Any]) -> str:
    """The report's text in the format of a path ending in `suffix`: ".json", or ".html" (one page)."""
    if suffix == ".json":
        return json.dumps(data, indent=1, ensure_ascii=False, default=repr) + "\n"
    from pytest_llmtune.report.html_page import render

    return render(data)
