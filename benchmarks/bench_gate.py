"""The live check's statistics on simulated evals: false alarms on an unchanged config, power against real drops.

    python benchmarks/bench_gate.py [--runs 1000]

Each run draws instances whose true pass rates vary as in real evals (Beta(1.4, 0.6): mean 0.70, many easy
instances, some hard), a lock holding one sampled result per instance (as a tune records them), and a live run
of K samples per instance from the same config, its pass rates lowered by the drop. The check is the gate's own
`drift` (a one-sided paired permutation test at alpha 0.05, margin 0). A last table measures the winner's curse:
when the lock holds the search's results of the best of 16 equally good stochastic configs, they are luckier
than the config is, and a live check of the unchanged config fails more often than alpha; the tune's
confirmation run (the winner again, fresh samples: what the lock keeps) removes it.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tabulate import tabulate

from pytest_llmtune.search.drift import drift

ALPHA = 0.05
SIZES = (50, 200, 1000)
REPEATS = (1, 3)
DROPS = (0.05, 0.10, 0.20)


def rates(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.beta(1.4, 0.6, size=n)


def check(rng: np.random.Generator, p: np.ndarray, locked: np.ndarray, drop: float, repeat: int) -> bool:
    """True when the live check fails the target."""
    lowered = np.clip(p * (1 - drop / p.mean()), 0, 1)
    live = rng.binomial(1, np.broadcast_to(lowered, (repeat, len(p)))).T.astype(float)
    keys = [str(i) for i in range(len(p))]
    result = drift(dict(zip(keys, live.tolist(), strict=True)), dict(zip(keys, locked.tolist(), strict=True)),
                   float(locked.mean()), alpha=ALPHA)
    return result.worse


def rate(runs: int, seed: int, n: int, drop: float, repeat: int, configs: int = 1, confirmed: bool = False) -> float:
    rng = np.random.default_rng(seed)
    fails = 0
    for _ in range(runs):
        p = rates(rng, n)
        samples = rng.binomial(1, np.broadcast_to(p, (configs, n))).astype(float)
        locked = samples[int(np.argmax(samples.mean(axis=1)))]  # the search's winner: the luckiest of equals
        if confirmed:  # the tune's confirmation run: the winner again, fresh samples, and the lock keeps those
            locked = rng.binomial(1, p).astype(float)
        fails += check(rng, p, locked, drop, repeat)
    return fails / runs


def with_interval(share: float, runs: int) -> str:
    from scipy.stats import binomtest

    low, high = binomtest(round(share * runs), runs).proportion_ci(method="exact")
    return f"{share:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=1000, help="simulated runs per cell (default 1000)")
    args = parser.parse_args()
    started = time.perf_counter()
    alarms = [[f"{n}", *[with_interval(rate(2 * args.runs, 1, n, 0.0, k), 2 * args.runs) for k in REPEATS]]
              for n in SIZES]
    print(f"false-alarm rate of the live check on an unchanged config ({2 * args.runs} runs a cell, with the exact "
          f"95% interval of the rate; alpha {ALPHA})")
    print(tabulate(alarms, headers=["instances", *[f"K={k}" for k in REPEATS]], disable_numparse=True))
    power = [[f"{drop * 100:.0f} points", f"{n}", *[f"{rate(args.runs, 2, n, drop, k):.3f}" for k in REPEATS]]
             for drop in DROPS for n in SIZES]
    print(f"\npower: share of runs where the check fails a config whose pass rate dropped ({args.runs} runs a cell)")
    print(tabulate(power, headers=["drop", "instances", *[f"K={k}" for k in REPEATS]], disable_numparse=True))
    curse = [[f"{n}", *[f"{rate(args.runs, 3, n, 0.0, k, configs=16, confirmed=confirmed):.3f}"
                         for confirmed in (False, True) for k in REPEATS]] for n in SIZES]
    print(f"\nfalse alarms when the winner is the best of 16 equal stochastic configs (the winner's curse; "
          f"{args.runs} runs a cell), the lock holding the search's results or the confirmation run's")
    print(tabulate(curse, headers=["instances", *[f"{which} K={k}" for which in ("search", "confirmed")
                                                  for k in REPEATS]], disable_numparse=True))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
