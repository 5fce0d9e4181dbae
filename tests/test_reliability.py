"""Nothing paid for is lost: each test tries a way to lose recorded work and counts what was lost (must be 0).

Each test records a row (`record_property("reliability", ...)`); tests/conftest.py prints them as a table at the
end of the run, under xdist too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openai_server import FakeOpenAI
from processes import kill, survivors

from conftest import sentiment_test
from pytest_llmtune.evals import CodeResult, Isolation, isolation, run_code
from pytest_llmtune.evals.sandbox import MAX_TASKS
from pytest_llmtune.report.leaderboard import cut
from pytest_llmtune.store.cassette import Cassette, journal_path
from pytest_llmtune.store.lockfile import read as read_lock

Record = Callable[[str, object], None]
TARGET = "test_x.py::test_x"
RECORDER = textwrap.dedent('''
    import os, signal, sys
    from pathlib import Path
    import httpx2
    from pytest_llmtune.store.cassette import Cassettes

    base, directory, name, count, kill = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5]
    cassettes = Cassettes(directory, record=True)
    client = httpx2.Client(transport=cassettes.transport())
    with cassettes.use("test_x.py::test_x"):
        for i in range(count):
            body = {"model": "m", "messages": [{"role": "user", "content": f"Review: {name} {i}"}]}
            client.post(f"{base}/chat/completions", json=body, headers={"X-Llmtune-Sample": "0"})
    if kill == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # as a CI time limit or the OOM killer would: no save, no cleanup
    cassettes.save()
''')


def lost_row(record: Record, tried: str, lost: int, detail: str) -> None:
    record("reliability", json.dumps({"tried": tried, "lost": lost, "detail": detail}))


def recorder(tmp_path: Path, server: FakeOpenAI, name: str, count: int, kill: bool) -> subprocess.Popen[bytes]:
    script = tmp_path / "record.py"
    script.write_text(RECORDER)
    return subprocess.Popen([sys.executable, str(script), server.base_url, str(tmp_path / "cassettes"), name,
                             str(count), "kill" if kill else "save"])


def cassette_of(tmp_path: Path) -> Path:
    return tmp_path / "cassettes" / "test_x" / "test_x.json"


def test_kill_9_after_recording_loses_no_response(tmp_path: Path, openai_server: FakeOpenAI,
                                                  record_property: Record) -> None:
    process = recorder(tmp_path, openai_server, "solo", 200, kill=True)

    assert process.wait(timeout=120) == -signal.SIGKILL
    path = cassette_of(tmp_path)
    assert not path.exists() and journal_path(path).exists()  # never saved: only the journal holds them
    found = Cassette.load(path)
    found.save()  # the next run folds the journal into the file

    lost = 200 - len(Cassette.load(path).interactions)
    lost_row(record_property, "kill -9 of a process that recorded 200 responses and never saved", lost,
             f"{200 - lost} of 200 in the file after the next run; journal folded: {not journal_path(path).exists()}")
    assert lost == 0 and not journal_path(path).exists()


def test_four_processes_recording_into_one_cassette_lose_nothing(tmp_path: Path, openai_server: FakeOpenAI,
                                                                 record_property: Record) -> None:
    processes = [recorder(tmp_path, openai_server, f"p{n}", 250, kill=False) for n in range(4)]

    assert [process.wait(timeout=300) for process in processes] == [0, 0, 0, 0]
    path = cassette_of(tmp_path)
    data = json.loads(path.read_text())
    lost = 1000 - len(data["interactions"])
    lost_row(record_property, "4 processes recording 250 responses each into one cassette at once", lost,
             f"{len(data['interactions'])} of 1,000 in the file; valid JSON; journal left: "
             f"{journal_path(path).exists()}")
    assert lost == 0 and openai_server.requests == 1000 and not journal_path(path).exists()


def journalled(journal: Path) -> int:
    """Responses in a journal, a torn last line left out."""
    count = 0
    for line in journal.read_text().splitlines() if journal.exists() else []:
        try:
            json.loads(line)
        except ValueError:
            continue
        count += 1
    return count


def request_keys(server: FakeOpenAI, start: int = 0) -> list[str]:
    return [json.dumps([body, sample], sort_keys=True)
            for body, sample in zip(server.bodies[start:], server.sample_headers[start:], strict=True)]


def test_kill_9_in_the_middle_of_a_tune_repeats_at_most_the_requests_in_flight(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Record) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    openai_server.latency = 0.05
    tune = subprocess.Popen([sys.executable, "-m", "pytest", "--llm-tune", "-p", "no:cacheprovider", "-q"],
                            cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert openai_server.wait_for_requests(100, timeout=120)
    tune.send_signal(signal.SIGKILL)
    in_flight = openai_server.in_flight  # sent, being answered: paid, but to a process that is gone
    tune.wait(timeout=60)
    time.sleep(2 * openai_server.latency)  # the requests in flight at the kill are answered to nobody
    paid = request_keys(openai_server)

    on_disk = journalled(journal_path(pytester.path / CASSETTE))
    unrecorded = len(set(paid)) - on_disk  # paid for, and not on disk when the process died: in flight

    rerun = pytester.runpytest("--llm-tune")

    assert rerun.ret == pytest.ExitCode.OK
    repeated = len(set(request_keys(openai_server, len(paid))) & set(paid))
    lost_row(record_property, f"kill -9 of `pytest --llm-tune` after {len(paid)} paid requests",
             max(repeated - unrecorded, 0), f"{unrecorded} in flight at the kill ({in_flight} at the server); the "
             f"rerun repeated {repeated} and locked {len(read_lock(pytester.path / 'llmtune.lock'))} target")
    assert repeated <= unrecorded <= 8  # llmtune_concurrency: at most that many are in flight


def test_two_tunes_of_different_targets_at_once_keep_both_locks(pytester: pytest.Pytester,
                                                               openai_server: FakeOpenAI,
                                                               record_property: Record) -> None:
    pytester.makepyfile(test_one=sentiment_test(), test_two=sentiment_test())
    openai_server.latency = 0.01
    runs = [subprocess.Popen([sys.executable, "-m", "pytest", "--llm-tune", "-p", "no:cacheprovider", "-q", name],
                             cwd=pytester.path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name in ("test_one.py", "test_two.py")]

    assert [run.wait(timeout=300) for run in runs] == [0, 0]
    locked = read_lock(pytester.path / "llmtune.lock")
    lost = 2 - len(locked)
    lost_row(record_property, "two `pytest --llm-tune` runs at once, one target each, one lockfile", lost,
             f"targets in the lockfile: {', '.join(sorted(locked))}")
    assert lost == 0


def rows_table(rows: list[dict[str, Any]]) -> list[str]:
    """The summary's table (used by tests/conftest.py)."""
    from tabulate import tabulate

    return tabulate([[row["tried"], row["lost"], row["detail"]] for row in rows],
                    headers=["tried", "lost", "what happened"], tablefmt="simple").splitlines()



def test_a_replay_only_gate_replays_a_killed_runs_journal_and_writes_nothing(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Record) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    cassette = pytester.path / "llmtune_cassettes" / "test_sentiment" / "test_sentiment.json"
    entries = json.loads(cassette.read_text())["interactions"]
    journal = journal_path(cassette)  # as if the tune had been killed before writing the file: all in the journal
    journal.write_text("".join(json.dumps({"key": key, "interaction": interaction}) + "\n"
                               for key, interaction in Cassette.load(cassette).interactions.items()) + '{"key": "tor')
    cassette.unlink()
    requests = openai_server.requests

    gate = pytester.runpytest("--llm-test")

    assert gate.ret == pytest.ExitCode.OK and openai_server.requests == requests
    assert not cassette.exists() and journal.exists()  # a replay-only run writes nothing
    retune = pytester.runpytest("--llm-tune")  # the next recording run folds the journal in
    kept = len(json.loads(cassette.read_text())["interactions"])
    lost_row(record_property, "a tune killed before writing its cassette (journal only, torn last line), then gated",
             len(entries) - kept, f"the gate replayed from the journal; the next tune folded {kept} of "
             f"{len(entries)} into the file and made {openai_server.requests - requests} requests")
    assert retune.ret == pytest.ExitCode.OK and kept == len(entries) and not journal.exists()
    assert openai_server.requests == requests


def test_creates_memory_stays_within_its_size(openai_server: FakeOpenAI, record_property: Record) -> None:
    from pytest_llmtune.runtime.api import _PROCESS, CACHE_SIZE, clear_cache, create, set_cache_size

    clear_cache()
    set_cache_size(100)
    try:
        for number in range(300):
            create({"x": number}, model="m", prompt="Say {x}", temperature=0, price=(0.0, 0.0))
        kept = len(_PROCESS.cache)
    finally:
        set_cache_size(CACHE_SIZE)
        clear_cache()
    lost_row(record_property, "create(): 300 distinct deterministic calls with set_cache_size(100)", 0,
             f"{kept} responses kept in memory (the least recently used went first)")
    assert kept == 100


DAMAGE = {"truncated": b'{"version": 1, "interactions": [{"requ', "empty": b"", "not JSON": b"<html>",
          "wrong-typed": b'{"version": 1, "interactions": {}, "targets": []}', "not UTF-8": b"\xff\xfe\x00",
          "a future version": b'{"version": 9, "interactions": [], "targets": {}}'}
SAID = {"truncated": "not JSON", "empty": "empty", "not JSON": "not JSON", "wrong-typed": '"version": 1',
        "not UTF-8": "not UTF-8", "a future version": "upgrade with `pip install -U pytest-llmtune`"}


@pytest.fixture(scope="module")
def tuned_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A tuned project's lockfile and cassette, made once for the damage tests."""
    server = FakeOpenAI().start()
    root = tmp_path_factory.mktemp("tuned")
    (root / "test_sentiment.py").write_text(sentiment_test())
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test", "PYTEST_ADDOPTS": ""}
    subprocess.run([sys.executable, "-m", "pytest", "--llm-tune", "-q", "-p", "no:cacheprovider"], cwd=root, env=env,
                   check=True, stdout=subprocess.DEVNULL)
    server.stop()
    return {"lock": (root / "llmtune.lock").read_bytes(), "cassette": (root / CASSETTE).read_bytes()}


CASSETTE = "llmtune_cassettes/test_sentiment/test_sentiment.json"


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("which", ["lock", "cassette"])
@pytest.mark.parametrize("mode", ["--llm-test", "--llm-tune"])
def test_a_damaged_file_gives_one_error_and_is_never_overwritten(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, tuned_files: dict[str, bytes], record_property: Record,
        damage: str, which: str, mode: str) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    (pytester.path / CASSETTE).parent.mkdir(parents=True)
    (pytester.path / "llmtune.lock").write_bytes(tuned_files["lock"])
    (pytester.path / CASSETTE).write_bytes(tuned_files["cassette"])
    path = pytester.path / ("llmtune.lock" if which == "lock" else CASSETTE)
    path.write_bytes(DAMAGE[damage])

    result = pytester.runpytest(mode)

    output = result.stdout.str() + result.stderr.str()
    kept = [p for p in path.parent.iterdir() if p.name.startswith(f"{path.name}.corrupt-")]
    preserved = path.read_bytes() == DAMAGE[damage] or [p.read_bytes() for p in kept] == [DAMAGE[damage]]
    said = f"{path}" in output and SAID[damage] in output
    lost_row(record_property, f"{which} {damage}, {mode}", int(not preserved),
             f"exit {int(result.ret)}; " + (f"kept aside as {kept[0].name.split('.')[-1]}, new one written"
                                            if kept else "left as it was") + ("" if said else "; MESSAGE MISSING"))
    assert preserved and said and "INTERNALERROR" not in output
    refuses = mode == "--llm-test" or damage == "a future version"
    assert (result.ret != pytest.ExitCode.OK) == refuses and bool(kept) == (not refuses)


def test_a_budget_is_overrun_by_one_request_at_most(record_property: Record) -> None:
    from test_budgets import spend_with_threads

    spending = spend_with_threads(300)

    over = max(spending.spent - 1000 - 300, 0)
    lost_row(record_property, "8 requests at a time (250 tokens, at most 300) against a 1,000-token budget",
             int(over), f"spent {spending.spent:,.0f} tokens: the budget, and at most one request's worst case more")
    assert over == 0 and spending.spent >= 1000


FAULTS: dict[str, dict[str, Any]] = {
    "a 500": {"status": 500}, "a 503 with retry-after": {"status": 503, "retry_after": 0.1},
    "a timeout": {"status": 0, "kind": "slow", "delay": 1.5}, "a connection reset": {"status": 0, "kind": "reset"},
    "malformed JSON": {"status": 0, "kind": "malformed"}, "a 200 with no choices": {"status": 0, "kind": "no_choices"},
    "a truncated body": {"status": 0, "kind": "truncated"},
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_passing_fault_is_retried_never_recorded_and_never_scored(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Record, fault: str) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    pytester.makeini("[pytest]\nllmtune_timeout = 1\nllmtune_max_retries = 2\n")
    clean = pytester.runpytest("--llm-tune")  # the reference: the same tune with no fault
    reference = (pytester.path / "llmtune.lock").read_text()
    for path in (pytester.path / "llmtune.lock", pytester.path / CASSETTE):
        path.unlink()
    openai_server.fail_next(2, **FAULTS[fault])  # two in a row: the retries get through

    result = pytester.runpytest("--llm-tune")

    recorded = json.loads((pytester.path / CASSETTE).read_text())["interactions"]
    broken = [r for r in recorded if not json.loads(r["response"]["body"]["string"]).get("choices")]
    same = (pytester.path / "llmtune.lock").read_text() == reference
    lost_row(record_property, f"{fault} on 2 requests in a row, then answers", len(broken) + int(not same),
             f"exit {int(result.ret)}; retried; {len(broken)} broken answers recorded; lock "
             f"{'identical to a run with no fault' if same else 'DIFFERENT'}")
    assert clean.ret == result.ret == pytest.ExitCode.OK and not broken and same


@pytest.mark.parametrize("fault", ["a 500", "malformed JSON", "a connection reset"])
def test_a_fault_that_persists_stops_the_target_with_one_error_naming_the_endpoint(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Record, fault: str) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    pytester.makeini("[pytest]\nllmtune_max_retries = 1\n")
    openai_server.fail_next(10_000, **FAULTS[fault])

    result = pytester.runpytest("--llm-tune")

    text = result.stdout.str()
    cassette = pytester.path / CASSETTE
    recorded = cassette.exists() and json.loads(cassette.read_text())["interactions"]
    stopped = next((line.split("search stopped: ", 1)[1] for line in text.splitlines() if "search stopped: " in line),
                   "NO ERROR")
    lost_row(record_property, f"{fault} on every request", int(bool(recorded)),
             f"exit {int(result.ret)}; nothing recorded; {cut(stopped, 70)}, endpoint named")
    assert result.ret == pytest.ExitCode.TESTS_FAILED and not recorded
    result.stdout.fnmatch_lines(["*search stopped: * configs in a row failed the same way*",
                                 f"*requests go to {openai_server.base_url}*"])


# generated code: each escape is run as the machine isolates it, then without namespaces or cgroup, as on a
# machine that allows neither, to show the test catches the escape that the module docstring says is open there

SETSID_SPINNER = """
import os, time
print(os.getcwd(), flush=True)
if os.fork() == 0:
    os.setsid()  # a session of its own: out of the process group that is killed
    if os.fork() == 0:
        while True:
            pass
    os._exit(0)
time.sleep(0.2)
"""
CONNECT = """
import os, socket
print(os.getcwd(), flush=True)
socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
print("connected")
"""
FORKS_OF_150_MB = """
import os, time
print(os.getcwd(), flush=True)
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        block = b"x" * (150 * 2**20)  # written, so resident: 450 MB together
        time.sleep(1)
        os._exit(0)
    children.append(pid)
statuses = [os.waitpid(pid, 0)[1] for pid in children]
raise SystemExit(0 if statuses == [0, 0, 0] else 1)
"""
FORK_300 = """
import os, time
print(os.getcwd(), flush=True)
started = 0
try:
    for _ in range(300):
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        started += 1
finally:
    print(started, flush=True)
"""


NO_ISOLATION = Isolation((), None, ())  # as on a machine without `unshare` or a writable cgroup


@pytest.fixture
def unisolated(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Switch run_code to what a machine without `unshare` or a writable cgroup gives (or to `weaker`)."""
    from pytest_llmtune.evals import code

    def switch(weaker: Isolation = NO_ISOLATION) -> None:
        monkeypatch.setattr(code, "isolation", lambda: weaker)

    return switch


def needs(what: str) -> None:
    allowed = {"namespaces": isolation().pid_namespace and not isolation().network,
               "cgroup": isolation().cgroup_version is not None}
    if not allowed[what]:
        pytest.skip(f"this machine gives run_code no {what}: {'; '.join(isolation().escapes())}")


def escapes_of(program: str, **limits: Any) -> tuple[CodeResult, list[int]]:
    result = run_code(program, **limits)
    alive = survivors(result.stdout.split()[0])
    kill(alive)
    return result, alive


def test_run_code_leaves_no_process_behind_not_even_a_setsid_grandchild(
        record_property: Record, unisolated: Callable[..., None]) -> None:
    needs("namespaces")
    result, escaped = escapes_of(SETSID_SPINNER)
    unisolated()
    _, escaped_without = escapes_of(SETSID_SPINNER)

    lost_row(record_property, "run_code: a grandchild that calls setsid() and spins", len(escaped),
             f"{result.status}; processes left running: {len(escaped)} in a PID namespace, "
             f"{len(escaped_without)} without one (killed by the test)")
    assert result.passed and escaped == [] and len(escaped_without) == 1


def test_run_code_reaches_no_network_not_even_127_0_0_1(
        record_property: Record, unisolated: Callable[..., None], openai_server: FakeOpenAI) -> None:
    needs("namespaces")
    program = CONNECT.format(port=openai_server.base_url.split(":")[2].split("/")[0])
    result, _ = escapes_of(program)
    unisolated()
    without, _ = escapes_of(program)

    connected = int("connected" in result.stdout)
    lost_row(record_property, "run_code: a connection to the suite's server on 127.0.0.1", connected,
             f"{result.status}: {cut(result.reason, 45)}; without a network namespace: {without.status}")
    assert result.status == "failed" and "Network is unreachable" in result.reason
    assert without.passed and "connected" in without.stdout


def test_run_code_holds_memory_mb_for_all_its_processes_together(
        record_property: Record, unisolated: Callable[..., None]) -> None:
    needs("cgroup")
    result, _ = escapes_of(FORKS_OF_150_MB, memory_mb=256)
    unisolated()
    without, _ = escapes_of(FORKS_OF_150_MB, memory_mb=256)

    lost_row(record_property, "run_code: 3 forked processes writing 150 MB each, memory_mb=256",
             int(result.status != "memory"),
             f"{result.status} ({cut(result.reason, 50)}); without a cgroup: {without.status}, 450 MB")
    assert result.status == "memory" and "killed" in result.reason
    assert without.passed


def test_run_code_holds_its_task_limit_against_a_fork_loop(
        record_property: Record, unisolated: Callable[..., None]) -> None:
    needs("cgroup")
    result, escaped = escapes_of(FORK_300)
    unisolated()
    without, escaped_without = escapes_of(FORK_300)

    started, started_without = int(result.stdout.split()[-1]), int(without.stdout.split()[-1])
    lost_row(record_property, "run_code: a program forking 300 sleeping processes", max(started - MAX_TASKS, 0),
             f"{started} started (limit {MAX_TASKS} tasks), {len(escaped)} left running; without a cgroup: "
             f"{started_without} started")
    assert started < MAX_TASKS and "BlockingIOError" in result.stderr and escaped == []
    assert started_without == 300 and escaped_without == []  # a plain process group still takes them all down


SPINNERS = """
import os, signal
print(os.getcwd(), flush=True)
for sig in (signal.SIGXCPU, signal.SIGTERM, signal.SIGINT):
    signal.signal(sig, signal.SIG_IGN)
for _ in range(2):
    os.fork()
while True:
    pass
"""


def test_run_code_stops_processes_spinning_past_the_timeout(record_property: Record) -> None:
    """CPU: a process that ignores SIGXCPU gets SIGKILL at the hard limit; all of them stop at the deadline."""
    result, escaped = escapes_of(SPINNERS, timeout=1.5)

    lost_row(record_property, "run_code: 4 processes spinning, ignoring SIGXCPU and SIGTERM, timeout=1.5",
             len(escaped), f"{result.status} after {result.seconds:.1f} s; {len(escaped)} left running")
    assert result.status == "timeout" and result.seconds < 4 and escaped == []


AS_NOBODY = """
import json, sys
from pytest_llmtune.evals import isolation, run_code
result = run_code(sys.argv[1])
print(json.dumps({"unshare": isolation().unshare, "status": result.status, "stdout": result.stdout,
                  "reason": result.reason}))
"""


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    import pytest_llmtune

    env = ["env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp", f"PYTHONPATH={Path(pytest_llmtune.__file__).parents[1]}"]
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *env, *command],
                          capture_output=True, text=True, timeout=60)


def test_run_code_as_an_unprivileged_user_isolates_with_a_user_namespace(
        record_property: Record, openai_server: FakeOpenAI) -> None:
    """Most users are not root: `unshare --user --map-root-user` gives them the same namespaces."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to become user nobody")
    python = next((exe for exe in (sys.executable, "/usr/bin/python3")
                   if as_nobody(exe, "-c", "import pytest_llmtune.evals").returncode == 0), None)
    if python is None:
        pytest.skip("user nobody cannot run a Python that imports this checkout")
    port = openai_server.base_url.split(":")[2].split("/")[0]
    program = SETSID_SPINNER + CONNECT.format(port=port)

    done = as_nobody(python, "-c", AS_NOBODY, program)

    ran = json.loads(done.stdout)
    escaped = survivors(ran["stdout"].split()[0])
    kill(escaped)
    connected = "connected" in ran["stdout"]
    lost_row(record_property, "run_code as user nobody: a setsid() grandchild, then 127.0.0.1",
             len(escaped) + connected, f"{' '.join(Path(a).name for a in ran['unshare'][:3])} ...: "
             f"{len(escaped)} left running; {cut(ran['reason'], 40)}")
    assert "--user" in ran["unshare"] and "--net" in ran["unshare"]
    assert escaped == [] and not connected and "Network is unreachable" in ran["reason"]


ENTER_THE_CALLERS_NETWORK = """
import ctypes, os, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.umount2(b"/proc", 2)  # what is under it: the machine's /proc
net = os.open("/proc/{caller}/ns/net", os.O_RDONLY)
if libc.setns(net, 0) != 0:
    raise SystemExit(f"setns refused: errno {{ctypes.get_errno()}}")
socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
print("connected")
"""


def test_root_code_that_unmounts_its_proc_cannot_enter_the_callers_network(
        record_property: Record, unisolated: Callable[..., None], openai_server: FakeOpenAI) -> None:
    found = isolation()
    if os.geteuid() != 0 or "--user" not in found.unshare:
        pytest.skip(f"needs root with a user namespace: {found.escapes()}")
    port = openai_server.base_url.split(":")[2].split("/")[0]
    program = ENTER_THE_CALLERS_NETWORK.format(caller=os.getpid(), port=port)
    result = run_code(program)
    without_user = tuple(arg for arg in found.unshare if arg not in ("--user", "--map-root-user"))
    unisolated(Isolation(without_user, None, ()))
    without = run_code(program)

    lost_row(record_property, "run_code as root: ctypes unmounts /proc, enters the caller's network namespace",
             int("connected" in result.stdout),
             f"{result.status}: {cut(result.reason, 40)}; without a user namespace: {without.stdout.strip()}")
    assert result.status == "failed" and "connected" not in result.stdout
    assert without.passed and "connected" in without.stdout
