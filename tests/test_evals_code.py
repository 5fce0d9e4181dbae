"""run_code in real subprocesses: outcomes, limits, the group kill, the write guard; pass@k, extract_code, choose."""

from __future__ import annotations

import math
import resource
import time
from pathlib import Path

import pytest
from processes import survivors

from pytest_llmtune.evals import CodeResult, check_program, choose, extract_code, pass_at_k, run_code

ADD = "def add(a, b):\n    return a + b\n"


# outcomes


def test_a_passing_program_passes_with_its_output() -> None:
    result = run_code("print('hello')")

    assert (result.passed, result.status, result.returncode) == (True, "passed", 0)
    assert result.stdout == "hello\n"
    assert result.seconds < 5


def test_a_failing_assertion_fails_with_the_error_as_reason() -> None:
    result = run_code("assert 1 + 1 == 3, 'bad sum'")

    assert (result.passed, result.status, result.returncode) == (False, "failed", 1)
    assert result.reason == "AssertionError: bad sum"
    assert "main.py" in result.stderr


def test_an_endless_loop_times_out_and_the_call_returns_soon_after() -> None:
    started = time.monotonic()
    result = run_code("while True:\n    pass", timeout=1.0)

    assert (result.status, result.returncode) == ("timeout", None)
    assert "after 1 s" in result.reason
    assert time.monotonic() - started < 1.0 + 2.0


def test_a_sleeping_program_times_out_on_the_wall_clock() -> None:
    assert run_code("import time\ntime.sleep(60)", timeout=0.5).status == "timeout"


def test_a_huge_output_is_truncated_without_being_held_in_the_parent() -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux
    result = run_code("print('x' * 10**8)", max_output=1000)
    growth_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024

    assert result.passed
    assert result.stdout == "x" * 1000
    assert growth_mb < 50  # the 100 MB line was drained and dropped, not buffered


def test_an_endless_print_loop_times_out_with_its_output_truncated() -> None:
    result = run_code("while True:\n    print('spam' * 1000)", timeout=1.0, max_output=5000)

    assert result.status == "timeout"
    assert len(result.stdout) == 5000


def test_stderr_keeps_its_tail_where_the_traceback_is() -> None:
    result = run_code("import sys\nsys.stderr.write('noise\\n' * 100000)\nraise KeyError('last')", max_output=2000)

    assert len(result.stderr) == 2000
    assert result.reason == "KeyError: 'last'"


def test_an_abort_is_a_crash_named_by_its_signal() -> None:
    result = run_code("import os\nos.abort()")

    assert (result.status, result.returncode, result.reason) == ("crashed", -6, "killed by SIGABRT")


def test_a_segfault_is_a_crash() -> None:
    result = run_code("import ctypes\nctypes.string_at(0)")

    assert (result.status, result.reason) == ("crashed", "killed by SIGSEGV")


def test_a_huge_allocation_is_refused_as_out_of_memory() -> None:
    result = run_code("bytearray(10**10)", memory_mb=256)

    assert result.status == "memory"
    assert "MemoryError" in result.reason


def test_a_growing_program_is_stopped_at_the_memory_limit() -> None:
    result = run_code("chunks = []\nwhile True:\n    chunks.append(bytearray(10**6))", memory_mb=128)

    assert result.status == "memory"


def test_a_file_larger_than_the_size_limit_cannot_be_written() -> None:
    result = run_code("open('big', 'wb').write(b'x' * 17 * 2**20)")

    assert result.status == "failed"
    assert "File too large" in result.reason


# processes


def test_a_forked_child_left_sleeping_is_killed_when_the_program_ends() -> None:
    forked = "import os, time\nprint(os.getcwd())\nif os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
    started = time.monotonic()
    result = run_code(forked, timeout=10)

    assert result.passed
    assert time.monotonic() - started < 5  # the child holds the pipes open; killing it closes them
    assert survivors(result.stdout.strip()) == []


def test_a_tree_of_forked_sleepers_dies_on_timeout() -> None:
    program = "import os, time\nprint(os.getcwd(), flush=True)\nfor _ in range(4):\n    os.fork()\n"
    program += "print(os.getpid(), flush=True)\ntime.sleep(60)\n"
    result = run_code(program, timeout=1.5)
    workdir, *pids = result.stdout.split()

    assert result.status == "timeout"
    assert len(set(pids)) == 16
    assert survivors(workdir) == []


def test_starting_another_program_is_refused() -> None:
    result = run_code("import subprocess\nsubprocess.run(['true'])")

    assert result.status == "failed"
    assert "starting a program (subprocess.Popen) is refused" in result.reason


# the working directory and the environment


def test_the_program_runs_in_a_fresh_directory_that_is_removed_afterwards() -> None:
    result = run_code("import os\nopen('notes.txt', 'w').write('kept?')\nprint(os.getcwd())")
    workdir = Path(result.stdout.strip())

    assert result.passed
    assert workdir.name.startswith("llmtune-code-")
    assert not workdir.exists()


def test_writing_inside_the_working_directory_is_allowed() -> None:
    program = (
        "import os, shutil, tempfile\nos.makedirs('a/b')\nopen('a/b/f', 'w').write('x')\nos.rename('a/b/f', 'g')\n"
        "shutil.rmtree('a')\ntempfile.NamedTemporaryFile().write(b'x')\nopen(os.devnull, 'w').write('x')\n"
    )
    assert run_code(program).passed


def test_writing_outside_the_working_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "escaped.txt"
    result = run_code(f"open({str(target)!r}, 'w').write('x')")

    assert result.status == "failed"
    assert "PermissionError" in result.reason and "writing outside the working directory" in result.reason
    assert not target.exists()


@pytest.mark.parametrize(
    "statement",
    [
        "os.mkdir(TARGET)",
        "os.open(TARGET, os.O_CREAT | os.O_WRONLY)",
        "pathlib.Path(TARGET).touch()",
        "os.symlink(os.path.dirname(TARGET), 'link')\nopen('link/' + os.path.basename(TARGET), 'w')",
        "os.chdir(os.path.dirname(TARGET))\nopen(os.path.basename(TARGET), 'w')",
        "d = os.open(os.path.dirname(TARGET), os.O_RDONLY)\nos.open('escaped', os.O_CREAT | os.O_WRONLY, dir_fd=d)",
        "import posix\nd = posix.open(os.path.dirname(TARGET), os.O_RDONLY)\n"
        "posix.open('escaped', os.O_CREAT | os.O_WRONLY, dir_fd=d)",
    ],
    ids=["mkdir", "os.open", "touch", "through-a-symlink", "after-chdir", "os.open-dir_fd", "posix.open-dir_fd"],
)
def test_every_way_of_creating_a_file_outside_is_refused(tmp_path: Path, statement: str) -> None:
    target = tmp_path / "escaped"
    result = run_code(f"import os, pathlib\nTARGET = {str(target)!r}\n{statement}\n")

    assert "PermissionError" in result.reason
    assert not target.exists()


def test_removing_or_renaming_a_file_outside_is_refused(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    result = run_code(f"import os\ntry:\n    os.remove({str(keep)!r})\nexcept PermissionError:\n"
                      f"    os.rename({str(keep)!r}, 'stolen')\n")

    assert "PermissionError" in result.reason
    assert keep.read_text() == "mine"


def test_the_child_sees_no_api_key_and_a_home_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fake-parent-key")
    program = "import os\nassert 'OPENAI_API_KEY' not in os.environ\nprint(os.environ['HOME'] == os.getcwd())\n"
    result = run_code(program)

    assert result.passed, result.reason
    assert result.stdout == "True\n"
    assert "sk-fake" not in result.stdout + result.stderr


def test_bad_limits_are_refused_with_the_value_and_the_constraint() -> None:
    with pytest.raises(ValueError, match=r"The value of `timeout` is 0, but must be `0 < timeout <= 86400.0`"):
        run_code("pass", timeout=0)


# check_program


def test_check_program_runs_prompt_completion_and_a_humaneval_check() -> None:
    prompt = "def add(a, b):\n"
    test = "def check(candidate):\n    assert candidate(2, 3) == 5\n"

    assert check_program("    return a + b\n", test, entry_point="add", prompt=prompt).passed
    assert check_program("    return a - b\n", test, entry_point="add", prompt=prompt).status == "failed"


def test_check_program_without_entry_point_runs_plain_assertions() -> None:
    result = check_program(ADD, "assert add(1, 2) == 4")

    assert isinstance(result, CodeResult)
    assert result.reason.startswith("AssertionError")


# extract_code


def test_extract_code_takes_the_first_python_fence() -> None:
    text = "Here:\n```text\nnot code\n```\n```python\nx = 1\n```\nand\n```python\ny = 2\n```"

    assert extract_code(text) == "x = 1\n"


def test_extract_code_falls_back_to_a_plain_fence_then_to_the_text() -> None:
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("print(2)") == "print(2)"


def test_extract_code_keeps_an_unclosed_fence_to_the_end() -> None:
    assert extract_code("```py\ndef f():\n    return 1") == "def f():\n    return 1"


def test_extract_code_does_not_take_a_pyproject_fence_for_python() -> None:
    assert extract_code("```pyproject\na = 1\n```\n```python\nb = 2\n```") == "b = 2\n"


# pass_at_k


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(10, 0, 1, 0.0), (10, 10, 5, 1.0), (10, 3, 1, 0.3), (10, 3, 8, 1.0), (5, 2, 2, 0.7), (200, 1, 100, 0.5)],
)
def test_pass_at_k_matches_the_closed_form(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_pass_at_k_equals_the_numerically_stable_product_of_the_paper() -> None:
    n, c, k = 100, 13, 10
    product = 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))

    assert pass_at_k(n, c, k) == pytest.approx(product)


def test_pass_at_k_refuses_k_larger_than_n() -> None:
    with pytest.raises(ValueError, match=r"The value of `k` is 11, but must be `1 <= k <= n = 10`"):
        pass_at_k(10, 2, 11)


# choose


def test_choose_picks_the_candidate_passing_most_tests_and_reports_the_counts() -> None:
    candidates = [
        "def add(a, b):\n    return a * b\n",  # right for (2, 2) only
        ADD,
        "def add(a, b):\n    while True: pass\n",
    ]
    tests = ["assert add(2, 2) == 4", "assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
    chosen = choose(candidates, tests, timeout=1.0)

    assert (chosen.index, chosen.passed, chosen.total) == (1, (1, 3, 0), 3)


def test_choose_breaks_ties_toward_the_earliest_candidate() -> None:
    assert choose(["def f():\n    return 2\n", "def f():\n    return 2.0\n"], ["assert f() == 2"]).index == 0


def test_choose_with_a_prompt_prefix_runs_each_completion_after_it() -> None:
    chosen = choose(["    return a - b\n", "    return a + b\n"], ["assert add(1, 1) == 2"], prompt="def add(a, b):\n")

    assert chosen.passed == (0, 1)


def test_numerical_libraries_are_told_to_start_one_thread_not_one_a_core() -> None:
    pytest.importorskip("numpy")
    program = "import os, numpy\nprint(os.environ['OMP_NUM_THREADS'], len(os.listdir('/proc/self/task')))\n"
    result = run_code(program)

    assert result.passed, result.reason
    assert result.stdout.split() == ["1", "1"]  # OpenBLAS would add a thread per extra core
