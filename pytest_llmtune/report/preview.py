"""`pytest --llm-tune --co`: the plan of each target before anything is spent. No request is sent and no server
started: the candidates are drawn as the tune draws them (same seed), the rungs planned as the tune plans them,
and the tokens estimated from the target's recordings when it has some, else from the templates' text and
max_tokens. The worst case is every answer as long as max_tokens allows."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_llmtune.llm.cost import MESSAGE_OVERHEAD
from pytest_llmtune.report.leaderboard import cell, labels_for, legend, plural, render, split_tables, varying_keys
from pytest_llmtune.search.brackets import FirstBracket
from pytest_llmtune.search.demos import Demonstrations
from pytest_llmtune.search.finalists import FINALISTS
from pytest_llmtune.search.halving import TIES, Rung
from pytest_llmtune.search.judge_config import is_judge_request
from pytest_llmtune.search.spec import EvalSpec

__all__ = ["Sizes", "Tokens", "evaluations", "preview_lines", "recorded_sizes", "tokens_per_evaluation"]

FINALISTS_WORDS = ", finalists scored on the held-out instances"
CHARS_PER_TOKEN = 4  # a rough rule for English text, used only when there are no recordings to measure from


@dataclass(frozen=True)
class Sizes:
    """Tokens per request's prompt and per generated sample; `measured`: from recordings, not guessed."""

    prompt: float | None  # None: from each template's text
    sample: float | None  # None: half of max_tokens
    measured: int = 0  # the recordings they come from


@dataclass(frozen=True)
class Tokens:
    """A candidate's tokens per evaluation (one call of `llm`): expected, and the most it can spend."""

    prompt: float
    completion: float
    worst_completion: float | None  # None: no max_tokens, no bound


def recorded_sizes(interactions: Iterable[Mapping[str, Any]]) -> Sizes:
    """Tokens per prompt and per sample, from a target's recorded interactions (vcrpy's format); the judge's
    requests are not a config's."""
    prompts, samples = [], []
    for interaction in interactions:
        try:
            if is_judge_request(json.loads(interaction["request"]["body"] or "{}")):
                continue
        except (KeyError, TypeError, ValueError, AttributeError):
            pass
        try:
            body = json.loads(interaction["response"]["body"]["string"])
            usage, choices = body["usage"], len(body["choices"])
            prompts.append(float(usage["prompt_tokens"]))
            samples.append(float(usage["completion_tokens"]) / max(choices, 1))
        except (KeyError, TypeError, ValueError):
            continue
    if not prompts:
        return Sizes(None, None)
    return Sizes(statistics.fmean(prompts), statistics.fmean(samples), len(prompts))


def tokens_per_evaluation(config: Mapping[str, Any], sizes: Sizes, split_n: bool) -> Tokens:
    n = config.get("n", 1) if isinstance(config.get("n", 1), int) else 1
    most = config.get("max_tokens") if isinstance(config.get("max_tokens"), int) else None
    template = json.dumps(config.get("messages") or config.get("prompt") or "") + "".join(
        value.text(value.items) if not value.as_turns else json.dumps(value.turns(value.items))
        for value in config.values() if isinstance(value, Demonstrations))  # demonstrations lengthen the prompt
    messages = config.get("messages")
    chat = config.get("api", "chat") == "chat"  # each chat message costs its role and separators beyond its text
    overhead = MESSAGE_OVERHEAD * (len(messages) if isinstance(messages, list) else 1) if chat else 0
    prompt = sizes.prompt if sizes.prompt is not None else len(template) / CHARS_PER_TOKEN + overhead
    sample = sizes.sample if sizes.sample is not None else (most / 2 if most else 64.0)
    if most is not None:
        sample = min(sample, most)
    requests = n if split_n and config.get("temperature") != 0 else 1
    return Tokens(requests * prompt, n * sample, n * most if most is not None else None)


def evaluations(rungs: Sequence[Rung], held_out: int, confirm: int, ties: float = TIES) -> tuple[int, int]:
    """Evaluations of the plan (the winner alone on the held-out instances), and the most they can be: a rung
    may promote `ties` more configs on ties, and the other finalists are scored on the held-out instances too."""
    planned, most, seen, alive = 0, 0, 0, rungs[0].configs if rungs else 0
    for number, rung in enumerate(rungs):
        alive = rung.configs if number == 0 else min(alive, rung.configs + math.ceil(ties * rung.configs))
        planned += rung.configs * (rung.instances - seen)
        most += alive * (rung.instances - seen)
        seen = rung.instances
    return planned + held_out + confirm, most + FINALISTS * held_out + confirm


def preview_lines(name: str, spec: EvalSpec, first: FirstBracket, *, instances: int, held_out: int, sizes: Sizes,
                  split_n: bool, cost: Callable[[Mapping[str, Any], float, float], float], width: int) -> list[str]:
    """The target's plan: candidates, rungs, expected and worst-case tokens and dollars, what the budgets allow."""
    candidates, rungs, drawn = first.candidates, first.rungs, first.drawn
    tokens = [tokens_per_evaluation(config, sizes, split_n) for config in candidates]
    if first.refused is not None:  # what the tune would stop with, before the search
        return [f"{name}: {first.refused}. The tune measures answers first (pilot evaluations) and stops so if they "
                "confirm it; the cheapest candidate:", "  " + sizes_words(sizes),
                *candidate_lines(candidates, tokens, width)]
    planned, most = evaluations(rungs, held_out, first.confirm, first.fit.ties if first.fit else TIES)
    mean = statistics.fmean(t.prompt + t.completion for t in tokens)
    worst = [t.prompt + t.worst_completion if t.worst_completion is not None else None for t in tokens]
    lines = [f"{name}: {plural(len(candidates), 'candidate')}"
             + (f" (of {drawn} drawn)" if drawn != len(candidates) else "") + f", {instances} instances searched"
             + (f" (+{held_out} held out)" if held_out else ""),
             f"  rungs (configs x instances): {', then '.join(f'{r.configs} x {r.instances}' for r in rungs)}; "
             f"{planned:,} evaluations planned"
             + (f", at most {most:,} (ties promoted{FINALISTS_WORDS if held_out else ''})" if most > planned else ""),
             "  " + sizes_words(sizes)]
    expected_tokens = mean * planned
    dollars = statistics.fmean(cost(c, t.prompt, t.completion) for c, t in zip(candidates, tokens, strict=True))
    line = f"  expected: {expected_tokens:,.0f} tokens, ${dollars * planned:.4f}"
    if all(w is not None for w in worst):
        worst_tokens = max(w for w in worst if w is not None) * most
        worst_dollars = max(cost(c, t.prompt, t.worst_completion or 0) for c, t in zip(candidates, tokens,
                                                                                       strict=True)) * most
        line += f"; worst case: {worst_tokens:,.0f} tokens, ${worst_dollars:.4f}"
    else:
        line += "; worst case: no bound (a candidate has no max_tokens)"
    lines += [line, *budget_lines(spec, first)]
    if spec.cascade is not None:
        lines.append(f"  then cascades of up to {spec.max_stages} stages composed from the configs' results (no "
                     "request), the promising ones finished where they lack results, within what is left of the "
                     "optimization budget")
    return lines + candidate_lines(candidates, tokens, width)


def sizes_words(sizes: Sizes) -> str:
    if sizes.measured:
        return (f"tokens measured on {sizes.measured:,} recordings of this target: {sizes.prompt:.0f} a prompt, "
                f"{sizes.sample:.1f} an answer (capped at each candidate's max_tokens)")
    return (f"no recordings to measure from: prompts of about {CHARS_PER_TOKEN} characters a token of each "
            "template (without the instance's fields), answers half their max_tokens")


def budget_lines(spec: EvalSpec, first: FirstBracket) -> list[str]:
    lines = []
    budget, fit = spec.optimization_budget, first.fit
    if budget is None or fit is None:
        lines.append("  no optimization budget: the plan runs in full (set optimization_budget= to cap it)")
    else:
        paid = (f"pays for none of the {first.priced} candidates: {plural(len(fit.chosen), 'cheaper one')} drawn "
                f"further" if first.cheaper else f"pays for about {len(fit.chosen)} of the {first.priced} candidates")
        lines.append(f"  optimization budget {budget.words(budget.amount)}: {paid} (expected "
                     f"{budget.words(fit.expected)}{'' if fit.ties else ', ties not promoted'}). This is an estimate: "
                     "the tune first measures each prompt shape's answers (pilot evaluations, about 5% of the budget) "
                     "and fits the plan again, so it runs more candidates where answers are shorter than estimated "
                     "here and fewer where they are longer")
    if spec.inference_budget is not None:
        lines.append(f"  inference budget {spec.inference_budget.words(spec.inference_budget.amount)} per instance: "
                     f"{first.skipped} of the {first.drawn} drawn skipped before any request (n x max_tokens "
                     "alone can cost more)")
    return lines


def candidate_lines(candidates: Sequence[Mapping[str, Any]], tokens: Sequence[Tokens], width: int) -> list[str]:
    keys = varying_keys(candidates)
    labels = labels_for(candidates, keys)
    rows = [[str(number), *(cell(config, key, labels) for key in keys), f"{t.prompt + t.completion:.0f}",
             f"{t.prompt + t.worst_completion:.0f}" if t.worst_completion is not None else "no bound"]
            for number, (config, t) in enumerate(zip(candidates, tokens, strict=True))]
    table = render(rows, ["#", *keys, "tok/eval", "worst"])
    if max(map(len, table)) > width:  # tables that fit, one after another, each beginning with the number
        table = split_tables([row[:1] for row in rows], ["#"], [row[1:] for row in rows],
                             [*keys, "tok/eval", "worst"], width)
    return [*table, *legend(labels, width)]
