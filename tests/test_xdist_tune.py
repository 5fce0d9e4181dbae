"""`--llm-tune`, `--llm-record` and `--llm-live` under pytest-xdist: each target whole on one worker, the same
locks as without -n, the project's files written by the controller alone, limits shared, a killed worker's
recordings kept (session/distribute.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from openai_server import FakeOpenAI

from conftest import read_lock

# Four targets of a sum, each in its own file; the "Examples" prompt and a low temperature answer best.
TARGET = '''
import os
from pathlib import Path

import pytest
from pytest_llmtune import llm_eval, choice, uniform

CASES = [(a, a + OFFSET) for a in range(10)]
SPACE = {"model": "m", "prompt": choice(["What is {a} + {b}?", "Examples: What is {a} + {b}?"]),
         "temperature": uniform(0, 1)}


@llm_eval(space=SPACE, threshold=0.1, optimization_budget=BUDGET)
@pytest.mark.parametrize("a,b", CASES)
def test_sum(llm, a, b):
    BODY
    assert llm(a=a, b=b)[0].split()[0] == str(a + b)
'''


def target(offset: int, body: str = "pass", budget: str = "None") -> str:
    return TARGET.replace("OFFSET", str(offset)).replace("BODY", body).replace("BUDGET", budget)


def four_targets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(**{f"test_sum{n}": target(n) for n in range(4)},
                        test_plain="def test_plain():\n    assert True\n")


def project_files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith(".pytest")}


def cassette_files(root: Path) -> dict[str, bytes]:
    return {path: text for path, text in project_files(root).items() if path.startswith("llmtune_cassettes")}


def locks(root: Path) -> dict[str, object]:
    """Each target's lock without what says when or by what version it was written."""
    return {name: {key: value for key, value in entry.items() if key != "plugin_version"}
            for name, entry in read_lock(root)["targets"].items()}


def test_a_tune_on_two_workers_locks_what_one_process_locks(pytester: pytest.Pytester,
                                                            openai_server: FakeOpenAI) -> None:
    four_targets(pytester)
    alone = pytester.runpytest("--llm-tune", "-p", "no:randomly")
    assert alone.ret == pytest.ExitCode.OK, alone.stdout.str()
    first, sent = locks(pytester.path), openai_server.requests
    cassettes = cassette_files(pytester.path)
    (pytester.path / "llmtune.lock").unlink()
    for path in cassettes:
        (pytester.path / path).unlink()

    spread = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly")

    assert spread.ret == pytest.ExitCode.OK, spread.stdout.str()
    assert locks(pytester.path) == first
    assert openai_server.requests == 2 * sent  # the same requests again, each once
    assert cassette_files(pytester.path) == cassettes  # the controller wrote the same recordings, byte for byte
    spread.stdout.fnmatch_lines(["llmtune: endpoint *, concurrency 8 per worker", "*= llmtune =*"])
    started = sorted(line.split()[3] for line in spread.outlines if line.startswith("llmtune: gw"))
    assert started == [f"test_sum{n}.py::test_sum" for n in range(4)]  # where each target runs, as it starts
    summary = spread.outlines[spread.outlines.index(next(line for line in spread.outlines if "= llmtune =" in line)):]
    heads = [line.split(":")[0] for line in summary if line.startswith("test_sum") and " configs in " in line]
    assert heads == [f"test_sum{n}.py" for n in range(4)]  # whole, and in collection order
    plain = alone.outlines[alone.outlines.index(next(line for line in alone.outlines if "= llmtune =" in line)):]
    assert [line for line in summary if line.startswith("locked in")] == [
        line for line in plain if line.startswith("locked in")]
    assert not list(pytester.path.rglob(".*.journal"))


def test_each_target_runs_whole_on_one_worker(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(**{f"test_sum{n}": target(n, body='Path(f"{os.environ[\'PYTEST_XDIST_WORKER\']}-'
                                                            f'{n}.ran").touch()') for n in range(4)})

    result = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    ran = {path.stem for path in pytester.path.glob("*.ran")}
    by_target = {n: {name.split("-")[0] for name in ran if name.endswith(f"-{n}")} for n in range(4)}
    assert all(len(workers) == 1 for workers in by_target.values()), by_target
    assert {next(iter(workers)) for workers in by_target.values()} == {"gw0", "gw1"}


def test_a_worker_in_another_directory_writes_nothing_there(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                            tmp_path_factory: pytest.TempPathFactory) -> None:
    four_targets(pytester)
    pytester.makeini("[pytest]\n")  # the project's root, in its copy too
    elsewhere = tmp_path_factory.mktemp("worker")
    before = set(project_files(pytester.path))

    # xdist copies the project to the workers' directory (--rsyncdir), as it would to another host
    result = pytester.runpytest("--llm-tune", "-p", "no:randomly", "--tx", f"popen//chdir={elsewhere}",
                                "--tx", f"popen//chdir={elsewhere}", "--dist", "load", "--rsyncdir", str(pytester.path),
                                "-W", "ignore::DeprecationWarning")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert sorted(read_lock(pytester.path)["targets"]) == [f"test_sum{n}.py::test_sum" for n in range(4)]
    assert len(list((pytester.path / "llmtune_cassettes").rglob("*.json"))) == 4
    copied = elsewhere / pytester.path.name
    assert copied.is_dir(), sorted(elsewhere.rglob("*"))  # the workers ran there
    written = set(project_files(copied)) - before
    assert written == set(), written


def test_a_killed_worker_loses_no_recording_it_sent_and_the_others_lock(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, record_property: Callable[[str, object], None]) -> None:
    # test_sum0's body kills its worker once, at its 25th evaluation, before its request (one at a time: none is in
    # flight); the replacement worker resumes the search from the recordings the controller journalled
    kill = ('with Path("count").open("a") as count: count.write("x")'
            '\n    if len(Path("count").read_text()) >= 25 and not Path("killed").exists():'
            '\n        Path("killed").touch(); os.kill(os.getpid(), 9)')
    pytester.makepyfile(test_sum0=target(0, body=kill), **{f"test_sum{n}": target(n) for n in range(1, 4)})

    result = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly", "--llm-concurrency", "1")

    assert (pytester.path / "killed").exists()
    result.stdout.fnmatch_lines(["*replacing crashed worker*"])
    lock = read_lock(pytester.path)["targets"]
    assert sorted(lock) == [f"test_sum{n}.py::test_sum" for n in range(4)], result.stdout.str()
    bodies = [json.dumps(body, sort_keys=True) + str(header) for body, header in
              zip(openai_server.bodies, openai_server.sample_headers, strict=True)]
    repeated = len(bodies) - len(set(bodies))
    record_property("reliability", json.dumps({
        "tried": "SIGKILL of a pytest-xdist worker mid-tune (`--llm-tune -n 2`, 4 targets)", "lost": repeated,
        "detail": f"{len(lock)} of 4 targets locked; {len(bodies)} requests, {repeated} sent twice; a worker "
                  "took the target over and resumed its search from the recordings the controller journalled"}))
    assert repeated == 0, "a request was sent twice: the killed worker's recordings were lost"
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the instance that was running when its worker died
    result.stdout.fnmatch_lines(["*worker 'gw*' crashed while running 'test_sum0.py::test_sum*"])


PACING = """
from pathlib import Path

import pytest


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    from pytest_llmtune.plugin import SESSION_KEY

    worker = getattr(session.config, "workerinput", {}).get("workerid", "controller")
    pacers = session.config.stash[SESSION_KEY].pacer.by_name.values()
    Path(f"{worker}.pacing").write_text(" ".join(f"{p.rpm} {p.tpm} {p.shared is not None}" for p in pacers))
"""


def test_a_target_whose_worker_died_for_good_says_what_was_kept_and_what_to_run(
        pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    kill = ('with Path("count").open("a") as count: count.write("x")'
            '\n    if len(Path("count").read_text()) >= 25:'
            '\n        os.kill(os.getpid(), 9)')
    pytester.makepyfile(test_sum0=target(0, body=kill), test_sum1=target(1))

    result = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly", "--llm-concurrency", "1",
                                "--max-worker-restart", "0")

    assert result.ret != pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["test_sum0.py::test_sum: not tuned: its worker gw* died while running "
                                 "test_sum0.py::test_sum[[]*; the 24 new recordings it had sent are kept in its "
                                 "cassette, and a re-run replays them: `pytest --llm-tune test_sum0.py::test_sum`"])
    assert "test_sum0.py::test_sum" not in read_lock(pytester.path)["targets"]
    cassette = pytester.path / "llmtune_cassettes" / "test_sum0" / "test_sum.json"
    assert len(json.loads(cassette.read_text())["interactions"]) == 24  # the controller folded its journal in


def test_limits_are_shared_between_the_workers_that_tune(pytester: pytest.Pytester,
                                                        openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sum0=target(0), test_sum1=target(1))
    pytester.makeini("[pytest]\nllmtune_rpm = 6000\nllmtune_tpm = 900001\n")
    pytester.makeconftest(PACING)

    result = pytester.runpytest("--llm-tune", "-n", "3", "-p", "no:randomly")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    paced = {path.stem: path.read_text() for path in pytester.path.glob("*.pacing")}
    # two targets: two workers tune, each at half the limits (not a third), and they share a 429's pause
    assert (paced["gw0"], paced["gw1"], paced["gw2"]) == ("3000 450000 True",) * 3
    result.stdout.fnmatch_lines(["llmtune: endpoint *, concurrency 8 per worker, rpm 6000 and tpm 900001 shared: "
                                 "each worker that tunes paces its share"])
    from pytest_llmtune.session.distribute import share_of

    assert share_of(1, 4) == 1 and share_of(0, 2) == 0  # a limit of one is one each; none stays none


def test_a_429_pauses_every_worker_on_the_host(tmp_path: Path) -> None:
    from pytest_llmtune.llm.pacing import Pacer, PauseFile

    shared = PauseFile.for_lane(tmp_path, "default")
    one, other = Pacer(4, shared=shared), Pacer(4, shared=PauseFile.for_lane(tmp_path, "default"))
    with one.call() as answered:
        answered(429, {"retry-after": "2"})

    assert 1.5 < other._wait(0) <= 2.0  # the other process's pacer waits too
    assert PauseFile.for_lane(tmp_path, "another endpoint").remaining() == 0


@pytest.mark.parametrize("dist", ["each"])
def test_dist_each_is_refused_for_modes_that_send(pytester: pytest.Pytester, openai_server: FakeOpenAI,
                                                  dist: str) -> None:
    four_targets(pytester)

    result = pytester.runpytest("--llm-tune", "-n", "2", "--dist", dist)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--llm-tune does not run with --dist each: every worker would run every target*"])
    assert openai_server.requests == 0


def test_recording_and_live_gates_on_two_workers(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    four_targets(pytester)
    assert pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly").ret == pytest.ExitCode.OK
    tuned = read_lock(pytester.path)["targets"]
    # one more instance (its data, not its space): the lock is stale, and --llm-record scores the locked config
    # again, recording the one new response
    pytester.makepyfile(test_sum1=target(1).replace("range(10)", "range(11)"))
    cassette = pytester.path / "llmtune_cassettes" / "test_sum1" / "test_sum.json"
    recordings = len(json.loads(cassette.read_text())["interactions"])

    before = openai_server.requests
    recorded = pytester.runpytest("--llm-test", "--llm-record", "-n", "2", "-p", "no:randomly")

    assert recorded.ret == pytest.ExitCode.OK, recorded.stdout.str()
    recorded.stdout.fnmatch_lines(["test_sum1.py::test_sum: *re-scored*"])
    relocked = read_lock(pytester.path)["targets"]
    assert relocked["test_sum1.py::test_sum"]["scored_by"] == "rescore"
    assert {name: entry for name, entry in relocked.items() if name != "test_sum1.py::test_sum"} == {
        name: entry for name, entry in tuned.items() if name != "test_sum1.py::test_sum"}
    assert openai_server.requests == before + 1  # the new instance's, sent by a worker, written by the controller
    assert len(json.loads(cassette.read_text())["interactions"]) == recordings + 1
    assert not list(pytester.path.rglob(".*.journal"))
    offline = pytester.runpytest("--llm-test", "-n", "2", "-p", "no:randomly")
    assert offline.ret == pytest.ExitCode.OK, offline.stdout.str()

    before = openai_server.requests
    live = pytester.runpytest("--llm-test", "--llm-live", "-n", "2", "-p", "no:randomly")

    assert live.ret == pytest.ExitCode.OK, live.stdout.str()
    verdicts = [line.split(":")[0] for line in live.outlines if line.startswith("test_sum") and "::test_sum: " in line]
    assert verdicts == [f"test_sum{n}.py" for n in range(4)]  # in collection order, whichever finished first
    assert openai_server.requests - before == 41  # each instance's request once, on the worker of its target
    assert read_lock(pytester.path)["targets"] == relocked  # live writes nothing


def test_reports_of_a_tune_on_two_workers_are_whole(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    four_targets(pytester)

    result = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly", "-v", "--llm-report", "tune.json",
                                "--llm-report", "tune.html")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    report = json.loads((pytester.path / "tune.json").read_text())
    assert sorted(report["targets"]) == [f"test_sum{n}.py::test_sum" for n in range(4)]
    assert all(len(target["configs"]) == 16 for target in report["targets"].values())
    assert all(f"test_sum{n}.py::test_sum" in (pytester.path / "tune.html").read_text() for n in range(4))
    result.stdout.fnmatch_lines(["report written to *tune.json", "report written to *tune.html"])
    # -v: each target's instances under its locked config, as the worker that ran them saw them
    assert sum(line.startswith("each instance under the locked config") for line in result.outlines) == 4


def test_a_damaged_lockfile_is_kept_aside_by_the_controller(pytester: pytest.Pytester,
                                                            openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sum0=target(0), test_sum1=target(1))
    (pytester.path / "llmtune.lock").write_text("{ not json")

    result = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["warning: *llmtune.lock* kept as llmtune.lock.corrupt-*"])
    assert sorted(read_lock(pytester.path)["targets"]) == ["test_sum0.py::test_sum", "test_sum1.py::test_sum"]
    assert [path.read_text() for path in pytester.path.glob("llmtune.lock.corrupt-*")] == ["{ not json"]


def test_a_dist_mode_without_workers_tunes_in_one_process(pytester: pytest.Pytester,
                                                          openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sum0=target(0))

    result = pytester.runpytest("--llm-tune", "--dist", "loadgroup", "-p", "no:randomly")  # as in a team's addopts

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["*= llmtune =*", "test_sum0.py::test_sum: 16 configs in *"])
    assert "per worker" not in result.stdout.str()


def test_a_target_stays_whole_when_some_instances_have_an_xdist_group(pytester: pytest.Pytester,
                                                                      openai_server: FakeOpenAI) -> None:
    grouped = target(0, body='Path(f"{os.environ[\'PYTEST_XDIST_WORKER\']}-{a}.ran").touch()').replace(
        "CASES = [(a, a + 0) for a in range(10)]",
        "CASES = [pytest.param(a, a, marks=pytest.mark.xdist_group('g')) if a < 3 else (a, a) for a in range(10)]")
    assert "xdist_group('g')" in grouped
    pytester.makepyfile(test_sum0=grouped, test_plain="import pytest\n\n@pytest.mark.xdist_group('g')\n"
                        "def test_plain():\n    pass\n")

    result = pytester.runpytest("--llm-tune", "-n", "2", "--dist", "loadgroup", "-p", "no:randomly")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert len({path.stem.split("-")[0] for path in pytester.path.glob("*.ran")}) == 1  # one worker ran them all
    assert sorted(read_lock(pytester.path)["targets"]) == ["test_sum0.py::test_sum"]


def test_a_target_no_worker_ran_is_told_in_the_summary(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sum0=target(0), test_sum1=target(1))

    result = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly", "-k", "not test_sum1")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    result.stdout.fnmatch_lines(["test_sum1.py::test_sum: not tuned: test_sum1.py::test_sum[[]llmtune] was not "
                                 "selected*"])


def test_a_space_of_numpy_values_is_locked_under_xdist(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    numpy = target(0).replace('"temperature": uniform(0, 1)', '"temperature": choice(list(numpy.linspace(0, 1, 3)))')
    assert "linspace" in numpy
    pytester.makepyfile(test_sum0="import numpy\n" + numpy)

    alone = pytester.runpytest("--llm-tune", "-p", "no:randomly")
    assert alone.ret == pytest.ExitCode.OK, alone.stdout.str()
    first = locks(pytester.path)
    (pytester.path / "llmtune.lock").unlink()

    spread = pytester.runpytest("--llm-tune", "-n", "2", "-p", "no:randomly", "--llm-report", "r.json")

    assert spread.ret == pytest.ExitCode.OK, spread.stdout.str()
    assert locks(pytester.path) == first


@pytest.mark.parametrize("refusal", ["dollars", "key"])
def test_what_a_plain_run_refuses_at_collection_is_refused_alike_on_workers(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, refusal: str) -> None:
    """A worker's UsageError used to end it without a word: the controller printed an INTERNALERROR ("Unexpectedly
    no active workers available"). Now the run says what a plain one says, with its exit code, and sends nothing."""
    if refusal == "dollars":
        pytester.makeini("[pytest]\nllmtune_prices = m 0 0\n")
        pytester.makepyfile(test_sum0=target(0, budget="0.01"))
        expected = "*test_sum0.py::test_sum: optimization_budget=0.01 is in dollars, but every model it may call*"
    else:
        pytester.makeini("[pytest]\nllmtune_endpoints = m http://127.0.0.1:9/v1 MISSING_KEY\n")
        monkeypatch.delenv("MISSING_KEY", raising=False)
        pytester.makepyfile(test_sum0=target(0))
        expected = "*environment variable MISSING_KEY*which is not set*"

    plain, distributed = pytester.runpytest("--llm-tune"), pytester.runpytest("--llm-tune", "-n", "2")

    assert plain.ret == distributed.ret == pytest.ExitCode.USAGE_ERROR
    for result in (plain, distributed):
        result.stderr.fnmatch_lines([expected])
    assert "INTERNALERROR" not in distributed.stdout.str() + distributed.stderr.str()
    assert openai_server.requests == 0
