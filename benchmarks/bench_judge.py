"""How far `llm.judge` agrees with an exact check, on examples/capitals' task, with the local models as judges.

    python benchmarks/bench_judge.py      # starts SmolLM2-135M and Gemma 3 270M on 127.0.0.1; about 10 minutes

SmolLM2 answers "What is the capital of X?" for the 40 countries of examples/capitals under two configs (zero-shot
chat at temperature 0.8, and the three-shot completion prompt at temperature 0), so that some answers are right
and some wrong; the example's exact check (`names_capital`) says which. Each judge then grades every answer through
the same request path the tune uses (`LLM.judge`, temperature 0), with the capital as the reference answer and
without it; a grade of 3 or more of 5 counts as "right". The table gives agreement with the exact check, Cohen's
kappa (agreement beyond chance: 0 is a coin with the judge's bias, 1 perfect), and the replies without a grade
(each a miss in a tune). Pairwise: for each country with one right and one wrong answer, which the judge prefers,
asked in both orders (a tie when the orders disagree).
"""

from __future__ import annotations

import concurrent.futures as cf
import warnings

import openai
from _project import example
from tabulate import tabulate

from pytest_llmtune.llm.client import LLM, Endpoint, Lane
from pytest_llmtune.llm.judge import Ungraded
from pytest_llmtune.llm.local import GEMMA, LocalModel, LocalServer, default_model_path, threads_for
from pytest_llmtune.search.judge_config import JudgeConfig

POOL = cf.ThreadPoolExecutor(8)  # requests in flight: the servers' slots
RUBRIC = "The answer names the capital city of the country asked about."


def kappa(judge: list[bool], truth: list[bool]) -> float:
    n = len(truth)
    observed = sum(j == t for j, t in zip(judge, truth, strict=True)) / n
    p_judge, p_truth = sum(judge) / n, sum(truth) / n
    chance = p_judge * p_truth + (1 - p_judge) * (1 - p_truth)
    return (observed - chance) / (1 - chance) if chance < 1 else 0.0


def main() -> None:
    warnings.simplefilter("ignore")  # local models have no price: their cost counts as 0
    capitals = example("capitals", "test_capitals.py")
    countries = capitals.COUNTRIES
    names_capital = capitals.names_capital
    threads = threads_for(2)
    servers = {"smollm2": LocalServer(default_model_path(), alias="smollm2", threads=threads),
               "gemma3-270m": LocalServer(LocalModel("gemma3-270m", GEMMA).path(), alias="gemma3-270m",
                                          threads=threads)}
    try:
        for server in servers.values():
            server.start()
        lanes = {name: Lane(openai.OpenAI(base_url=s.base_url, api_key="none"), concurrency=8,
                            chat=name == "smollm2") for name, s in servers.items()}
        endpoint = Endpoint(openai.OpenAI(base_url=servers["smollm2"].base_url, api_key="none"), routes=lanes)
        configs = [{"model": "smollm2", "api": "chat", "prompt": capitals.ZERO_SHOT,  # type: ignore[attr-defined]
                    "temperature": 0.8, "max_tokens": 12, "seed": 7},
                   {"model": "smollm2", "api": "completions", "prompt": capitals.THREE_SHOT,  # type: ignore[attr-defined]
                    "temperature": 0, "max_tokens": 8, "stop": ["\n"]}]
        def answer(config: dict[str, object], case: dict[str, str]) -> tuple[object, str, str, str, bool]:
            text = LLM(config, endpoint)(case)[0].strip().split("\n")[0]
            return (case, f"What is the capital of {case['country']}?", case["capital"], text,
                    names_capital(text, case["capital"]))

        answers = list(POOL.map(lambda pair: answer(*pair), [(c, case) for c in configs for case in countries]))
        truth = [a[4] for a in answers]
        print(f"{len(answers)} answers by SmolLM2-135M, {sum(truth)} right by the exact check", flush=True)
        judges = {"smollm2 (chat)": JudgeConfig("smollm2", max_tokens=48),
                  "smollm2 (completions)": JudgeConfig("smollm2", api="completions", max_tokens=48),
                  "gemma3-270m (completions)": JudgeConfig("gemma3-270m", api="completions", max_tokens=48)}
        rows: list[list[object]] = []
        for label, config in judges.items():
            for with_reference in (True, False):
                def grade(found: tuple[object, str, str, str, bool], config: JudgeConfig = config,
                          with_reference: bool = with_reference) -> tuple[bool | None, int]:
                    _, question, capital, text, _right = found
                    llm = LLM(configs[0], endpoint, judge=config)
                    try:
                        judged = llm.judge(RUBRIC, text or "(empty)", context=question,
                                           reference=capital if with_reference else None)
                    except Ungraded:
                        return None, llm.judge_usage.tokens
                    return judged.grade >= 3, llm.judge_usage.tokens

                graded = list(POOL.map(grade, answers))
                said = [bool(g) for g, _ in graded]  # an ungraded reply is a miss, as in a tune
                ungraded, tokens = sum(g is None for g, _ in graded), sum(t for _, t in graded)
                agreement = sum(s == t for s, t in zip(said, truth, strict=True)) / len(truth)
                rows.append([label, "reference" if with_reference else "rubric only", len(truth),
                             f"{agreement:.2f}", f"{kappa(said, truth):+.2f}", ungraded,
                             f"{sum(said) / len(said):.2f}", f"{tokens:,}"])
                print(tabulate([rows[-1]], tablefmt="plain"), flush=True)
            rows.append(pairwise_row(label, config, endpoint, configs[0], answers))
        print(tabulate(rows, ["judge", "mode", "answers", "agreement", "kappa", "ungraded (= judged wrong)",
                              "judged right", "judge tokens"], tablefmt="github"))
        print(f"exact check: {sum(truth) / len(truth):.2f} right")
    finally:
        for server in servers.values():
            server.stop()


def pairwise_row(label: str, config: JudgeConfig, endpoint: Endpoint, answering: dict[str, object],
                 answers: list[tuple[object, str, str, str, bool]]) -> list[object]:
    """Countries with a right and a wrong answer: how often the judge prefers the right one."""
    by_country: dict[str, list[tuple[str, str, str, bool]]] = {}
    for _, question, capital, text, right in answers:
        by_country.setdefault(question, []).append((question, capital, text, right))
    pairs = [(next(a for a in found if a[3]), next(a for a in found if not a[3])) for found in by_country.values()
             if any(a[3] for a in found) and not all(a[3] for a in found)]
    def prefer(pair: tuple[tuple[str, str, str, bool], tuple[str, str, str, bool]]) -> tuple[str | None, int]:
        right, wrong = pair
        llm = LLM(answering, endpoint, judge=config)
        try:
            preferred = llm.judge.pairwise(RUBRIC, right[2] or "(empty)", wrong[2] or "(empty)", context=right[0],
                                           reference=right[1])
        except Ungraded:
            return None, llm.judge_usage.tokens
        return preferred.winner, llm.judge_usage.tokens

    found = list(POOL.map(prefer, pairs))
    winners = [w for w, _ in found]
    wins, ties, losses = winners.count("a"), winners.count("tie"), winners.count("b")
    return [label, "pairwise, reference", len(pairs), f"{wins / max(1, len(pairs)):.2f} right preferred",
            f"ties {ties}, wrong preferred {losses}", winners.count(None), "", f"{sum(t for _, t in found):,}"]


if __name__ == "__main__":
    main()
