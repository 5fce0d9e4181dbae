"""Tuned cascades against the best single config, on a simulated landscape whose truth is known.

    python benchmarks/bench_cascade.py         # 20 seeds a row; --seeds N, --budgets 0.1,0.3, --select best

The landscape (issue 26's): a cheap model ($1 a unit of work) right on the easy instances (60% of them) and, on
the hard ones, right on 15% and usually detectably unsure (`accept` takes 16% of its hard answers); a strong model
($10) right on 93% of any instance (accept takes 97% of its right answers and half its wrong ones). Temperature
lowers both (by 0.15 at 1.0), and n = 3 (a vote, three times the cost) wins back a third of the errors. `accept`
needs no ground truth: it reads only the answer.

Every tune runs the real search core (`Tune` with `cascade=`, `select="cheapest"`, `Spending`) with simulated
evaluations that pay their dollars through the same budget gate a live request does, 60 tuning instances and 20
held out. A config's or cascade's true score and cost are its expectations over 4,000 fresh instances. Columns:
the locked candidate's true score and cost per instance (means over seeds), how often it is a cascade, the true
score and cost of the best single config in the space (by true score), the locked one's score minus that
(its standard error over seeds) and its cost over that, the same two over the runs that locked a cascade; and the
same tune without cascade= for comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import statistics
from collections.abc import Callable
from typing import Any

from tabulate import tabulate

from pytest_llmtune.search.budget import Budget, Spending
from pytest_llmtune.search.cascade import is_cascade, stages_of
from pytest_llmtune.search.domains import choice
from pytest_llmtune.search.evaluation import Evaluation, InlineExecutor, NothingFits
from pytest_llmtune.search.problem import TuneProblem
from pytest_llmtune.search.space import SearchSpace
from pytest_llmtune.search.spec import EvalSpec
from pytest_llmtune.search.tune import Tune
from pytest_llmtune.usage import Usage

TUNING, HELD_OUT, FRESH = 60, 20, 4000
EASY = 0.6  # the share of instances the cheap model can answer
PRICE = {"cheap": 1e-4, "strong": 1e-3}  # dollars per evaluation of one sample
SPACE = {"model": choice(["cheap", "strong"]), "temperature": choice([0.0, 0.5, 1.0]), "n": choice([1, 3]),
         "prompt": "{question}"}


def accept(context: Any, response: Any) -> bool:
    return True  # the core only needs to know cascades are on; the simulation says what accept would take


def draw(*parts: Any) -> float:
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def chances(config: dict[str, Any], easy: bool) -> tuple[float, float, float]:
    """P(right), and P(accepted) of a right and of a wrong answer, of one config on an easy or a hard instance."""
    temperature, n = float(config["temperature"]), int(config["n"])
    if config["model"] == "cheap":
        right, taken_right, taken_wrong = (0.95, 0.97, 0.3) if easy else (0.15, 0.5, 0.1)
    else:
        right, taken_right, taken_wrong = 0.93, 0.97, 0.5
    right -= 0.15 * temperature
    if n == 3:
        right += (1 - right) / 3
    return right, taken_right, taken_wrong


class Landscape:
    def __init__(self, seed: int) -> None:
        self.seed = seed

    def easy(self, instance: int) -> bool:
        return draw(self.seed, "easy", instance) < EASY

    def outcome(self, config: dict[str, Any], instance: int) -> tuple[bool, bool, float]:
        """(right, accepted, dollars) of one config, fixed by the seed: a replay gives the same answer."""
        right, taken_right, taken_wrong = chances(config, self.easy(instance))
        key = (self.seed, sorted(config.items()), instance)
        ok = draw(*key, "right") < right
        taken = draw(*key, "accepted") < (taken_right if ok else taken_wrong)  # a wrong answer looks unsure more
        return ok, taken, PRICE[config["model"]] * int(config["n"])

    def run(self, config: dict[str, Any], instance: int) -> tuple[bool, float]:
        """A config or a cascade end to end: (right, dollars)."""
        spent = 0.0
        stages = stages_of(config)
        for number, stage in enumerate(stages):
            ok, taken, cost = self.outcome(stage, instance)
            spent += cost
            if taken or number == len(stages) - 1:
                return ok, spent
        raise AssertionError

    def evaluate_with(self, spending: Spending) -> Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]]:
        def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
            def evaluate(index: int, instance: int) -> Evaluation:
                config = configs[index]
                stages = stages_of(config)
                spent, usage = 0.0, Usage()
                for number, stage in enumerate(stages):
                    ok, taken, cost = self.outcome(stage, instance)
                    spending.admit()
                    spending.settle(10, cost)
                    usage.record(5, 5, cost, replayed=False)
                    spent += cost
                    if taken or number == len(stages) - 1:
                        return Evaluation(float(ok), ok, usage, spent, accepted=taken,
                                          answered=number if is_cascade(config) else None)
                raise AssertionError
            return evaluate
        return evaluate_with

    def truth(self, config: dict[str, Any]) -> tuple[float, float]:
        """The expected score and cost per instance, on fresh instances."""
        fresh = [self.run(config, TUNING + HELD_OUT + i) for i in range(FRESH)]
        return statistics.fmean(ok for ok, _ in fresh), statistics.fmean(cost for _, cost in fresh)


def tune(landscape: Landscape, budget: float, cascade: bool, select: str) -> dict[str, Any] | None:
    spending = Spending(Budget(budget, "usd"))
    spec = EvalSpec(space=SearchSpace(SPACE), num_samples=-1, optimization_budget=spending.budget,
                    seed=1000 * landscape.seed, select=select, cascade=accept if cascade else None)
    found = Tune(TuneProblem(spec=spec, instances=TUNING, held_out_count=HELD_OUT, num_samples=12, eta=3,
                             min_instances=5), spending)
    try:
        found.run(landscape.evaluate_with(spending), executor=InlineExecutor(), concurrency=1)
    except NothingFits:
        return None
    result = found.search
    if result is None or result.winner is None:
        return None
    held = result.held_out.get(result.winner.index)
    if held is None or len(held.metrics) < HELD_OUT:
        return None  # the session locks nothing without the held-out score
    return result.configs[result.winner.index]


def best_single(landscape: Landscape) -> tuple[float, float]:
    grid = [dict(zip(("model", "temperature", "n"), values, strict=True)) | {"prompt": "{question}"}
            for values in itertools.product(["cheap", "strong"], [0.0, 0.5, 1.0], [1, 3])]
    return max(landscape.truth(config) for config in grid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="0.1,0.3,1")
    parser.add_argument("--select", default="best,cheapest")
    args = parser.parse_args()
    rows = []
    for budget in (float(b) for b in args.budgets.split(",")):
        for select, cascade in itertools.product(args.select.split(","), (True, False)):
            scores, costs, diffs, ratios, cascades, missing = [], [], [], [], 0, 0
            cascade_diffs, cascade_ratios = [], []  # the runs that locked a cascade
            for seed in range(args.seeds):
                landscape = Landscape(seed)
                config = tune(landscape, budget, cascade, select)
                if config is None:
                    missing += 1
                    continue
                score, cost = landscape.truth(config)
                best_score, best_cost = best_single(landscape)
                scores.append(score)
                costs.append(cost)
                diffs.append(score - best_score)
                ratios.append(cost / best_cost)
                cascades += is_cascade(config)
                if is_cascade(config):
                    cascade_diffs.append(score - best_score)
                    cascade_ratios.append(cost / best_cost)
            if not scores:
                rows.append([f"${budget:g}", select, "yes" if cascade else "no", "-", "-", "-", "-", "-", "-", missing])
                continue
            error = statistics.stdev(diffs) / len(diffs) ** 0.5 if len(diffs) > 1 else 0.0
            rows.append([f"${budget:g}", select, "yes" if cascade else "no", f"{statistics.fmean(scores):.3f}",
                         f"${statistics.fmean(costs):.5f}", f"{cascades}/{len(scores)}",
                         f"{statistics.fmean(diffs):+.3f} ({error:.3f})", f"{statistics.fmean(ratios):.2f}x",
                         f"{statistics.fmean(cascade_diffs):+.3f} at {statistics.fmean(cascade_ratios):.2f}x"
                         if cascade_diffs else "-", missing])
    landscape = Landscape(0)
    best_score, best_cost = best_single(landscape)
    print(f"best single config (seed 0): true score {best_score:.3f} at ${best_cost:.5f} per instance; "
          f"{TUNING} tuning + {HELD_OUT} held-out instances; {args.seeds} seeds a row")
    print(tabulate(rows, ["budget", "select", "cascade=", "true score", "true $/inst", "cascades locked",
                          "vs best single", "cost vs best", "locked cascades: vs best, cost", "no lock"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
