"""`--llm-report summary.md` with `--llm-base-lock`: the verdict, the locked config, the score with its interval and
the cost per target; against the base branch's lock, the changed settings, the paired score difference (as the
statistics compute it, never a gain the data cannot show) and the instances whose result changed. Bad base locks are
refused before anything runs, and the GitHub workflow's gate steps produce the summary in a real git repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with vcrpy
from openai_server import FakeOpenAI

from conftest import read_lock, sentiment_test
from pytest_llmtune.report.markdown import render
from pytest_llmtune.search.stats import paired_difference

TARGET = "test_sentiment.py::test_sentiment"
WORKFLOW = Path(__file__).parent.parent / "examples" / "github-actions" / "llmtune.yml"


def retuned(pytester: pytest.Pytester) -> None:
    """Another search of the same target (another seed): another lock to compare with the first."""
    source = (pytester.path / "test_sentiment.py").read_text()
    pytester.makepyfile(test_sentiment=source.replace("threshold=", "seed=5, threshold=", 1))
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK


@pytest.fixture
def two_locks(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> pytest.Pytester:
    """base.lock from a first tune, llmtune.lock from a second one with another seed."""
    pytester.makepyfile(test_sentiment=sentiment_test())
    assert pytester.runpytest("--llm-tune").ret == pytest.ExitCode.OK
    shutil.copy(pytester.path / "llmtune.lock", pytester.path / "base.lock")
    retuned(pytester)
    return pytester


def test_a_tune_summary_holds_the_verdict_the_score_the_cost_and_the_config(pytester: pytest.Pytester,
                                                                            openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())

    result = pytester.runpytest("--llm-tune", "--llm-report", "summary.md")

    assert result.ret == pytest.ExitCode.OK
    text = (pytester.path / "summary.md").read_text()
    lock = read_lock(pytester.path)["targets"][TARGET]
    low, high = lock["interval"]
    assert text.startswith("## pytest-llmtune tune\n")
    assert (f"| `{TARGET}` | :white_check_mark: passed | pass_rate {lock['score']:.3f} [{low:.2f}, {high:.2f}] on "
            f"{lock['instances']} | {lock['tokens']['per_instance']:,.1f} tokens, "
            f"${lock['cost']['usd_per_instance']:.6f} |") in text
    assert f"| `temperature` | `{json.dumps(lock['config']['temperature'])}` |" in text
    assert "base lock" not in text  # nothing to compare with


def test_against_the_base_lock_it_shows_changed_settings_the_paired_difference_and_changed_instances(
        two_locks: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # the gate replays: nothing is sent

    result = two_locks.runpytest("--llm-test", "--llm-report", "summary.md", "--llm-base-lock", "base.lock")

    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    text = (two_locks.path / "summary.md").read_text()
    now, was = read_lock(two_locks.path)["targets"][TARGET], json.loads(
        (two_locks.path / "base.lock").read_text())["targets"][TARGET]
    assert now["config"] != was["config"]
    changed = [key for key in {*now["config"], *was["config"]} if now["config"].get(key) != was["config"].get(key)]
    for key in changed:
        assert f"| **`{key}`** |" in text
    assert f"({len(changed)} setting{'' if len(changed) == 1 else 's'} changed from the base lock, in bold)" in text
    shared = sorted(set(now["results"]) & set(was["results"]))
    mean, bounds = paired_difference([now["results"][k] for k in shared], [was["results"][k] for k in shared])
    assert bounds is not None
    low, high = bounds
    said = f"{mean:+.3f} [95% CI {low:+.3f}, {high:+.3f}]"
    assert f"the difference is {said}: " in text
    assert ("within noise" in text) == (low <= 0 <= high)
    flipped = sorted((k for k in shared if now["results"][k] != was["results"][k]), key=lambda k: int(k[4:]))
    if flipped:
        assert f"Instances whose result changed ({len(flipped)}):" in text
        assert f"| `{flipped[0]}` | {was['results'][flipped[0]]:.4g} | {now['results'][flipped[0]]:.4g} |" in text


def test_an_empty_base_lock_is_a_base_with_no_lockfile(pytester: pytest.Pytester, openai_server: FakeOpenAI) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    (pytester.path / "base.lock").write_text("")

    result = pytester.runpytest("--llm-tune", "--llm-report", "summary.md", "--llm-base-lock", "base.lock")

    assert result.ret == pytest.ExitCode.OK
    text = (pytester.path / "summary.md").read_text()
    assert "| new target |" in text and "The base lock has no entry for this target" in text


@pytest.mark.parametrize(("setup", "args", "error"), [
    (None, ["--llm-report", "s.md", "--llm-base-lock", "gone.lock"],
     "--llm-base-lock gone.lock: no such file. In a pull request, write the base branch's lockfile first"),
    ("{}", ["--llm-report", "s.json", "--llm-base-lock", "base.lock"],
     "--llm-base-lock base.lock compares the locks in the Markdown report, and no .md report is asked for: add "
     "--llm-report summary.md"),
    (None, ["--llm-report", "s.md", "--llm-base-lock", "."],
     "--llm-base-lock .: a directory, not a lockfile. In a pull request, write the base branch's lockfile first"),
    ("not json", ["--llm-report", "s.md", "--llm-base-lock", "base.lock"],
     "--llm-base-lock base.lock: *base.lock is not a lockfile*"),
])
def test_a_base_lock_that_cannot_be_compared_is_refused_before_anything_runs(
        pytester: pytest.Pytester, openai_server: FakeOpenAI, setup: str | None, args: list[str], error: str) -> None:
    pytester.makepyfile(test_sentiment=sentiment_test())
    if setup is not None:
        (pytester.path / "base.lock").write_text(setup)

    result = pytester.runpytest("--llm-tune", *args)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {error}*"])
    assert openai_server.requests == 0 and not (pytester.path / "llmtune.lock").exists()


def entry(results: dict[str, float], **fields: Any) -> dict[str, Any]:
    score = sum(results.values()) / len(results)
    return {"config": {"model": "m", "temperature": 0.2}, "score": score, "interval": [0.1, 0.9],
            "metric": "pass_rate", "mode": "max", "instances": len(results), "results": results,
            "tokens": {"per_instance": 10.0}, "cost": {"usd_per_instance": 1e-5}, **fields}


def test_the_same_lock_is_the_same_results_and_another_metric_does_not_compare() -> None:
    results = {f"i{n}": float(n % 2) for n in range(10)}
    data = {"kind": "gate", "targets": {"t": {"verdict": {"outcome": "passed"}}}}

    same = render(data, {"t": entry(results)}, {"t": entry(results)})
    other = render(data, {"t": entry(results)}, {"t": entry(results, metric="accuracy")})

    assert "+0.000 [95% CI +0.000, +0.000] on 10: the same results" in same and "changed" not in same
    assert ", as in the base lock:" in same
    assert "another metric" in other and "the scores do not compare" in other


def test_a_clear_gain_is_better_and_a_small_one_is_within_noise() -> None:
    base = {f"i{n}": 0.0 for n in range(30)}
    data = {"kind": "gate", "targets": {"t": {"verdict": {"outcome": "passed"}}}}

    clear = render(data, {"t": entry(dict.fromkeys(base, 1.0))}, {"t": entry(base)})
    small = render(data, {"t": entry({**base, "i0": 1.0})}, {"t": entry(base)})

    assert ": better" in clear and "Instances whose result changed (30):" in clear and "... and 10 more" in clear
    assert ": within noise" in small and "better" not in small


def test_the_workflows_gate_steps_write_the_summary_in_a_pull_request(two_locks: pytest.Pytester,
                                                                        tmp_path: Path) -> None:
    """The gate job's shell steps, as GitHub runs them: the base branch's lockfile is fetched from origin, the gate
    runs offline and its summary lands in $GITHUB_STEP_SUMMARY."""
    project, origin = two_locks.path, tmp_path / "origin.git"
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull}

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=project, env=env, check=True, capture_output=True)

    subprocess.run(["git", "init", "--bare", "-b", "main", str(origin)], env=env, check=True, capture_output=True)
    git("init", "-b", "main")
    shutil.move(project / "base.lock", project / "llmtune.lock.pr")  # the base branch holds the first lock
    shutil.move(project / "llmtune.lock", tmp_path / "pr.lock")
    shutil.move(project / "llmtune.lock.pr", project / "llmtune.lock")
    git("add", "-A")
    git("commit", "-m", "base")
    git("remote", "add", "origin", str(origin))
    git("push", "origin", "main")
    git("checkout", "-b", "pr")
    shutil.copy(tmp_path / "pr.lock", project / "llmtune.lock")
    git("commit", "-am", "re-tuned")
    summary = tmp_path / "step_summary.md"
    steps = yaml.safe_load(WORKFLOW.read_text())["jobs"]["gate"]["steps"]
    scripts = [step["run"] for step in steps if "run" in step and "pip install" not in step["run"]]
    bin_dir = str(Path(sys.executable).parent)
    for script in scripts:
        subprocess.run(["bash", "-e", "-c", script], cwd=project, check=True, capture_output=True, timeout=300,
                       env={**env, "GITHUB_BASE_REF": "main", "GITHUB_STEP_SUMMARY": str(summary),
                            "PATH": f"{bin_dir}:{env['PATH']}", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                            "PYTEST_ADDOPTS": "-p no:asyncio"})

    text = summary.read_text()
    assert text.startswith("## pytest-llmtune gate\n") and "against the base lock" in text
    assert "changed from the base lock, in bold" in text  # the base branch's lock came from origin
