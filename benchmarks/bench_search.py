"""Regret against the optimization budget, on simulated landscapes whose truth is known.

    pip install -e ".[bench]"                 # Optuna, for its TPE baseline (never a runtime dependency)
    python benchmarks/bench_search.py          # 20 seeds a point; --seeds N, --budgets 3000,12000,
                                               # --strategies halving,random,grid,tpe,tpe-hyperband

Each seed is a landscape in FLAML's own space (3 templates, temperature in [0, 1.2], max_tokens 4-32 on a log
scale, n 1-5, stop "\\n" or none): per-instance Bernoulli outcomes, p = sigmoid(quality(config) + ease of the
instance), with the template, temperature, n and max_tokens interacting (votes help only at some temperature;
a template needs its answer length; the completion template needs the stop), costs per instance from ~24 to
~280 tokens, good-but-expensive configs (n=5), and a narrow very good region. A config's true score is its
expected pass rate over the instance distribution; regret is the best true score in the space minus the
locked config's. 60 tuning instances and 20 held out (the default quarter of 80).

Three landscape families (`--families`): "narrow" (the best configs are a narrow region of cheap ones: the system
template at a low temperature with a vote) and "expensive" (the best configs are the costliest: the three-shot
template with long answers, n 4-5 and a vote at a middle temperature, 200-280 tokens an instance), where a plan
biased to cheap configs fails; and "demos", a demonstration landscape: `demos(POOL, k=randint(0, 9))` over a pool
of 40, where 4 demonstrations help a lot, 6 hurt and the rest do little (each adds its effect to the log-odds),
beside temperature, n and max_tokens; each demonstration costs 15 prompt tokens. Its TPE column is left out (a
subset of a pool is no parameter Optuna suggests); "random" is random subsets and settings at the same budget, and
"halving-blind" the search without credit (demonstrations' coordinates boxed and proposed like the numbers').

Every strategy runs the real search core (`Tune`, `Spending`: the tune the session runs) with simulated evaluations that
pay their tokens through the same budget gate a live request does. Optuna's TPE runs trials of one config on the
60 tuning instances until the budget is spent and locks its best complete trial (it gets the whole budget: no
held-out share is kept for it); "tpe-hyperband" adds Optuna's HyperbandPruner, which may stop a trial after 5, 15
or 45 instances. Columns: mean regret (its standard error), how often nothing was locked, and
how often the locked config's true score is inside its reported held-out 95% interval.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import math
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent.parent))

from tabulate import tabulate  # noqa: E402

from pytest_llmtune.search.budget import Budget, BudgetSpent, Spending  # noqa: E402
from pytest_llmtune.search.demos import Demonstrations, demos  # noqa: E402
from pytest_llmtune.search.domains import choice, lograndint, randint, uniform  # noqa: E402
from pytest_llmtune.search.evaluation import Evaluation, InlineExecutor, NothingFits  # noqa: E402
from pytest_llmtune.search.problem import TuneProblem  # noqa: E402
from pytest_llmtune.search.space import SearchSpace  # noqa: E402
from pytest_llmtune.search.spec import EvalSpec  # noqa: E402
from pytest_llmtune.search.stats import interval  # noqa: E402
from pytest_llmtune.search.tune import Tune  # noqa: E402
from pytest_llmtune.usage import Usage  # noqa: E402

TUNING, HELD_OUT = 60, 20
TEMPLATES = ["zero-shot", "system", "three-shot"]
PROMPT_TOKENS = {"zero-shot": 20, "system": 32, "three-shot": 120}
ANSWER_TOKENS = {"narrow": {"zero-shot": 9, "system": 5, "three-shot": 3},  # what an untruncated answer takes
                 "expensive": {"zero-shot": 9, "system": 5, "three-shot": 22}}
POOL = [{"id": number} for number in range(40)]
EFFECTS = [0.0] * len(POOL)  # what each demonstration adds to the log-odds: a few help a lot, some hurt
for _number, _effect in zip([3, 17, 26, 34, 5, 11, 20, 29, 31, 38], [0.9, 0.8, 0.8, 0.7, *[-0.6] * 6], strict=True):
    EFFECTS[_number] = _effect
for _number in range(len(POOL)):
    if EFFECTS[_number] == 0.0:
        EFFECTS[_number] = round(0.1 * math.sin(7.0 * _number), 3)  # little either way
FAMILIES = (*ANSWER_TOKENS, "demos")
DEMO_SPACE = {"prompt": "{demos}Q:", "demos": demos(POOL, k=randint(0, 9), format="{id} "),
              "temperature": uniform(0, 1.2), "max_tokens": lograndint(4, 33), "n": randint(1, 6)}
DEMO_TOKENS, DEMO_PROMPT, DEMO_ANSWER = 15, 20, 5
SPACE = {"prompt": choice(TEMPLATES), "temperature": uniform(0, 1.2), "max_tokens": lograndint(4, 33),
         "n": randint(1, 6), "stop": choice(["\n", None])}
GRID = {"prompt": choice(TEMPLATES), "temperature": choice([0.0, 0.6, 1.2]), "max_tokens": choice([4, 8, 32]),
        "n": choice([1, 3, 5]), "stop": choice(["\n", None])}
EASE = [statistics.NormalDist(0, 1.5).inv_cdf((k + 0.5) / 400) for k in range(400)]  # the instance distribution


def quality(config: dict[str, Any], family: str = "narrow") -> float:
    """The log-odds a config adds to every instance's ease."""
    if family == "demos":
        return demo_quality(config)
    template, temperature = config["prompt"], float(config["temperature"])
    n, most = int(config["n"]), int(config["max_tokens"])
    base = {"zero-shot": 0.0, "system": 0.3, "three-shot": -0.2}[template]
    best_temperature = {"zero-shot": 0.7, "system": 0.2, "three-shot": 0.4}[template]
    score = base - 1.5 * (temperature - best_temperature) ** 2
    score += 0.5 * math.log(n) * min(temperature, 1.0) ** 0.5  # votes need sampling to help
    if most < ANSWER_TOKENS[family][template]:
        score -= 2.0  # the answer is cut off
    if template == "three-shot":
        score += 0.6 if config["stop"] == "\n" else -1.0  # without the stop it runs on into the next example
    if family == "narrow" and template == "system" and 0.1 <= temperature <= 0.3 and n >= 4 and most >= 12:
        score += 1.2  # a narrow, very good region
    if family == "expensive" and template == "three-shot" and 0.3 <= temperature <= 0.8 and n >= 4:
        score += 1.6  # reasoning at length, with a vote: the best configs are the costliest
    return score


def demo_quality(config: dict[str, Any]) -> float:
    temperature, n, most = float(config["temperature"]), int(config["n"]), int(config["max_tokens"])
    score = -1.0 + sum(EFFECTS[demo["id"]] for demo in config["demos"].items)
    score -= 1.5 * (temperature - 0.3) ** 2 - 0.3 * math.log(n) * min(temperature, 1.0) ** 0.5
    return score - (2.0 if most < DEMO_ANSWER else 0.0)


def true_score(config: dict[str, Any], family: str = "narrow") -> float:
    q = quality(config, family)
    return statistics.fmean(1 / (1 + math.exp(-(q + ease))) for ease in EASE)


def best_true_score(family: str = "narrow") -> float:
    """The best true score of the space, by dense search (quality is smooth but for the bump and the cut-off)."""
    if family == "demos":  # the best 8 demonstrations (k = 8 at most), the best settings
        settings = max(demo_quality({"demos": Demonstrations(()), "temperature": step / 100,
                                     "n": n, "max_tokens": 32}) for step in range(121) for n in range(1, 6))
        best = settings + sum(sorted((e for e in EFFECTS if e > 0), reverse=True)[:8])
        return statistics.fmean(1 / (1 + math.exp(-(best + ease))) for ease in EASE)
    best = -math.inf
    for template in TEMPLATES:
        for stop in ("\n", None):
            for n in range(1, 6):
                for most in (4, 8, 12, 16, 24, 32):
                    for step in range(121):
                        config = {"prompt": template, "temperature": step / 100, "max_tokens": most, "n": n,
                                  "stop": stop}
                        best = max(best, quality(config, family))
    return statistics.fmean(1 / (1 + math.exp(-(best + ease))) for ease in EASE)


def tokens(config: dict[str, Any], family: str = "narrow") -> tuple[int, int]:
    """Prompt and completion tokens of one instance."""
    if family == "demos":
        return DEMO_PROMPT + DEMO_TOKENS * config["demos"].k, int(config["n"]) * min(int(config["max_tokens"]),
                                                                                      DEMO_ANSWER)
    template, most, n = config["prompt"], int(config["max_tokens"]), int(config["n"])
    answer = ANSWER_TOKENS[family][template]
    natural = most if template == "three-shot" and config["stop"] is None else min(most, answer)
    return PROMPT_TOKENS[template], n * natural


class Landscape:
    """One seed: instance eases and the Bernoulli outcome of every (config, instance), fixed by the seed."""

    def __init__(self, seed: int, family: str = "narrow") -> None:
        self.seed, self.family = seed, family
        rng = statistics.NormalDist(0, 1.5)
        self.ease = rng.samples(TUNING + HELD_OUT, seed=seed)

    def passed(self, config: dict[str, Any], instance: int) -> bool:
        p = 1 / (1 + math.exp(-(quality(config, self.family) + self.ease[instance])))
        digest = hashlib.blake2b(f"{self.seed}|{sorted(config.items())}|{instance}".encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "big") / 2**64 < p

    def evaluate_with(self, spending: Spending) -> Callable[[list[dict[str, Any]]], Callable[[int, int], Evaluation]]:
        def evaluate_with(configs: list[dict[str, Any]]) -> Callable[[int, int], Evaluation]:
            def evaluate(index: int, instance: int) -> Evaluation:
                return self.pay(configs[index], instance, spending)
            return evaluate
        return evaluate_with

    def pay(self, config: dict[str, Any], instance: int, spending: Spending) -> Evaluation:
        prompt, completion = tokens(config, self.family)
        spending.admit()  # as the recording transport does before a live request
        spending.settle(prompt + completion, 0.0)
        usage = Usage()
        usage.record(prompt, completion, 0.0, replayed=False)
        right = self.passed(config, instance)
        return Evaluation(float(right), right, usage)


CONFIRMED: dict[str, list[bool]] = defaultdict(list)  # per strategy: whether each sampled winner was confirmed


class BracketCosts:
    """A tune observer that records each bracket's expected spend (the fit's plan) and what it spent."""

    def __init__(self, spending: Spending) -> None:
        self.spending, self.expected, self.starts, self.end, self.finished = spending, [], [], 0.0, False

    def bracket(self, candidates: int, halving: Any, fitted: Any) -> None:
        self.expected.append(fitted[1].expected if fitted is not None else math.nan)
        self.starts.append(self.spending.spent)

    def progress(self, progress: Any) -> None:
        pass

    def searched(self) -> None:
        self.end, self.finished = self.spending.spent, False

    def phase(self, what: str) -> None:
        if not self.finished:  # the first phase after the search: the last bracket's leader was finished (when the
            self.end, self.finished = self.spending.spent, True  # budget stopped it), a part of its plan

    def ratios(self) -> list[float]:
        """Each bracket's expected spend over its actual one."""
        spent = [after - before for before, after in zip(self.starts, [*self.starts[1:], self.end], strict=True)]
        return [e / s for e, s in zip(self.expected, spent, strict=True) if s > 0 and not math.isnan(e)]


def run_ours(strategy: str, landscape: Landscape, budget: float,
             confirm: bool = True) -> tuple[dict[str, Any] | None, bool | None, list[float]]:
    """The locked config, whether its true score lies in its held-out interval, and each bracket's expected over
    actual spend. As the session does: the plan reserves a confirmation run of the winner (the space samples:
    temperature above 0) when it earns its keep, which runs after the winner's held-out instances and before the
    other finalists', when what is left pays for it."""
    spending = Spending(Budget(budget, "tokens"))
    if strategy == "halving-blind":  # the ablation: demonstrations boxed and proposed like numbers, no credit
        from pytest_llmtune.search.brackets import Brackets

        with _patched(Brackets, demos_swapped=lambda self, around, leaders, seed: [point for _, point in around],
                      demos_by_credit=lambda self, points, seed: points):
            return run_ours("halving", landscape, budget, confirm)
    grid = strategy == "grid"
    space = DEMO_SPACE if landscape.family == "demos" else GRID if grid else SPACE
    spec = EvalSpec(space=SearchSpace(space), strategy=strategy, num_samples=-1,
                    optimization_budget=spending.budget, seed=1000 * landscape.seed)  # a bracket b draws with seed +
    # b: spaced so that one landscape's brackets never draw what another's first bracket draws
    tune = Tune(TuneProblem(spec=spec, instances=TUNING, held_out_count=HELD_OUT, num_samples=16, eta=3,
                            min_instances=5, confirms=confirm), spending)
    costs = BracketCosts(spending)
    try:
        tune.run(landscape.evaluate_with(spending), executor=InlineExecutor(), concurrency=1, observer=costs)
    except NothingFits:  # no lock, counted as such
        return None, None, []
    result = tune.search
    if result is None or result.winner is None:
        return None, None, costs.ratios()
    held = result.held_out.get(result.winner.index)
    if held is None or len(held.metrics) < HELD_OUT:
        return None, None, costs.ratios()  # the session locks nothing without the held-out score
    config = result.configs[result.winner.index]
    if tune.confirmed is not None:  # a sampled winner: was its confirmation run paid for?
        CONFIRMED[strategy].append(tune.confirmed.error is None)
    bounds = interval(list(held.metrics.values()), exact=True)  # as the lock records it
    inside = bounds is not None and bounds[0] <= true_score(config, landscape.family) <= bounds[1]
    return config, inside, costs.ratios()


@contextlib.contextmanager
def _patched(owner: Any, **names: Any) -> Iterator[None]:
    saved = {name: getattr(owner, name) for name in names}
    for name, value in names.items():
        setattr(owner, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(owner, name, value)


def run_tpe(landscape: Landscape, budget: float, hyperband: bool = False) -> tuple[dict[str, Any] | None, None]:
    """Optuna's TPE, a trial a config on the 60 tuning instances until the budget is spent; with `hyperband`, each
    trial reports its mean after 5, 15 and 45 instances to Optuna's HyperbandPruner, which may stop it there. The
    best trial scored on every tuning instance is locked."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spending = Spending(Budget(budget, "tokens"))
    pruner = (optuna.pruners.HyperbandPruner(min_resource=5, max_resource=TUNING, reduction_factor=3) if hyperband
              else optuna.pruners.NopPruner())
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=landscape.seed),
                                pruner=pruner, study_name=f"landscape-{landscape.seed}")  # the pruner's brackets
    # are hashed from the study's name, a random one unless given: named, a run repeats
    best: tuple[float, dict[str, Any]] | None = None
    while True:
        trial = study.ask()
        config = {"prompt": trial.suggest_categorical("prompt", TEMPLATES),
                  "temperature": trial.suggest_float("temperature", 0, 1.2),
                  "max_tokens": trial.suggest_int("max_tokens", 4, 32, log=True),
                  "n": trial.suggest_int("n", 1, 5),
                  "stop": trial.suggest_categorical("stop", ["\n", None])}
        metrics: list[float] = []
        try:
            for instance in range(TUNING):
                metrics.append(landscape.pay(config, instance, spending).metric)
                if hyperband and len(metrics) in (5, 15, 45):
                    trial.report(statistics.fmean(metrics), len(metrics))
                    if trial.should_prune():
                        break
        except BudgetSpent:
            break
        score = statistics.fmean(metrics)
        if len(metrics) < TUNING:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            continue
        study.tell(trial, score)
        if best is None or score > best[0]:
            best = (score, config)
    return (best[1] if best else None), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--budgets", default="3000,6000,12000,25000,50000,100000")
    parser.add_argument("--strategies", default="halving,random,grid,tpe,tpe-hyperband")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--no-confirm", action="store_true", help="the tune as it was before the confirmation run")
    args = parser.parse_args()
    budgets = [float(b) for b in args.budgets.split(",")]
    strategies = args.strategies.split(",")
    try:
        import optuna  # noqa: F401
    except ImportError:
        print("optuna is not installed (pip install -e '.[bench]'): the TPE column is left out\n")
        strategies = [s for s in strategies if not s.startswith("tpe")]
    started = time.perf_counter()
    for family in args.families.split(","):
        own = ([s for s in strategies if s in ("halving", "random")] + ["halving-blind"] if family == "demos"
               else strategies)
        table(family, budgets, own, args.seeds, not args.no_confirm)
    print(f"({time.perf_counter() - started:.0f} s)")


def table(family: str, budgets: list[float], strategies: list[str], seeds: int, confirm: bool) -> None:
    best = best_true_score(family)
    rows = []
    pooled: dict[str, list[bool]] = {strategy: [] for strategy in strategies}
    estimates: list[float] = []
    for budget in budgets:
        row: list[Any] = [f"{budget:,.0f}"]
        for strategy in strategies:
            regrets, empty, covered = [], 0, []
            for seed in range(seeds):
                landscape = Landscape(seed, family)
                if strategy.startswith("tpe"):
                    (config, inside), ratios = run_tpe(landscape, budget, strategy == "tpe-hyperband"), []
                else:
                    config, inside, ratios = run_ours(strategy, landscape, budget, confirm)
                if strategy == "halving":
                    estimates += ratios
                if config is None:
                    empty += 1
                    continue
                regrets.append(best - true_score(config, family))
                if inside is not None:
                    covered.append(inside)
            mean = f"{statistics.fmean(regrets):.3f}" if regrets else "-"
            error = f" ({statistics.stdev(regrets) / math.sqrt(len(regrets)):.3f})" if len(regrets) > 1 else ""
            coverage = f"{sum(covered) / len(covered):.0%}" if covered else "-"
            pooled[strategy] += covered
            row += [mean + error, f"{empty}/{seeds}"] + ([coverage] if not strategy.startswith("tpe") else [])
        rows.append(row)
    headers = ["budget (tokens)"] + [f"{s} {what}" for s in strategies
                                     for what in ("regret (se)", "no lock", "held-out CI covers")[
                                         : 2 if s.startswith("tpe") else 3]]
    cheapest = (DEMO_PROMPT + DEMO_ANSWER if family == "demos" else min(sum(tokens(c, family))
                                                                        for c in grid_configs())) * (TUNING + HELD_OUT)
    print(f"family {family!r}: best true score in the space {best:.3f}; cheapest config on all "
          f"{TUNING + HELD_OUT} instances {cheapest:,} tokens; {seeds} seeds a cell")
    print(tabulate(rows, headers=headers, disable_numparse=True))
    if any(pooled.values()):
        print("held-out 95% interval covers the true score, all budgets pooled: " + "; ".join(
            f"{strategy} {sum(found) / len(found):.1%} of {len(found)} locks"
            for strategy, found in pooled.items() if found))
    confirmed = {s: CONFIRMED.pop(s) for s in list(CONFIRMED)}
    if confirmed:
        print("sampled winners confirmed with fresh samples: " + "; ".join(
            f"{s} {sum(c)} of {len(c)}" for s, c in confirmed.items()))
    if estimates:
        quartiles = statistics.quantiles(estimates, n=4) if len(estimates) > 1 else estimates * 3
        print(f"halving's brackets, expected spend / actual: median {statistics.median(estimates):.2f} "
              f"(quartiles {quartiles[0]:.2f}, {quartiles[2]:.2f}) over {len(estimates)} brackets")
    print()


def grid_configs() -> list[dict[str, Any]]:
    return [{"prompt": t, "temperature": 0.0, "max_tokens": m, "n": 1, "stop": "\n"}
            for t in TEMPLATES for m in (4, 8, 32)]


if __name__ == "__main__":
    main()
