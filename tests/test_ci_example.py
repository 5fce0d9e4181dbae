"""examples/github-actions/llmtune.yml: the pull-request job gates offline with no secret, the scheduled job
checks drift with the key from the repository's secrets, and every flag it passes to pytest exists."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # PyYAML comes with vcrpy; its stubs are not a dev dependency

WORKFLOW = Path(__file__).parent.parent / "examples" / "github-actions" / "llmtune.yml"
KEY_FROM_SECRETS = "${{ secrets.OPENAI_API_KEY }}"


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return loaded


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    found: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]  # YAML 1.1: a bare `on` is true
    return found


def pytest_commands(job: dict[str, Any]) -> list[list[str]]:
    lines = [line.split("#", 1)[0] for step in job["steps"] for line in step.get("run", "").splitlines()]
    commands = [shlex.split(line) for line in lines]
    return [words for words in commands if words[:1] == ["pytest"]]


def environments(workflow: dict[Any, Any], job: dict[str, Any]) -> list[dict[str, str]]:
    """Every env a job's steps see: the workflow's, the job's, each step's."""
    return [workflow.get("env") or {}, job.get("env") or {}, *(step.get("env") or {} for step in job["steps"])]


def test_it_runs_on_pull_requests_weekly_and_by_hand(workflow: dict[Any, Any]) -> None:
    on = triggers(workflow)

    assert {"pull_request", "schedule", "workflow_dispatch"} <= set(on)
    minute, hour, day, month, weekday = on["schedule"][0]["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit()  # once a week


def test_the_pull_request_job_gates_offline_with_no_secret(workflow: dict[Any, Any]) -> None:
    gate = workflow["jobs"]["gate"]

    assert gate["if"] == "github.event_name == 'pull_request'"
    assert pytest_commands(gate) == [["pytest", "--llm-test", "--llm-report", "summary.md", "--llm-base-lock",
                                      "base.lock"]]
    assert "secrets" not in yaml.safe_dump(gate)
    assert all("OPENAI_API_KEY" not in env for env in environments(workflow, gate))
    setup = next(step for step in gate["steps"] if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["cache"] == "pip"


def test_the_scheduled_job_checks_drift_with_the_key_from_secrets_only(workflow: dict[Any, Any]) -> None:
    drift = workflow["jobs"]["drift"]

    assert "pull_request" not in drift["if"]
    [command] = pytest_commands(drift)
    assert command[:5] == ["pytest", "--llm-test", "--llm-live", "--llm-repeat", "3"]
    keys = [env["OPENAI_API_KEY"] for env in environments(workflow, drift) if "OPENAI_API_KEY" in env]
    assert keys == [KEY_FROM_SECRETS]
    assert "sk-" not in WORKFLOW.read_text()
    [junit] = [word.split("=", 1)[1] for word in command if word.startswith("--junit-xml=")]
    report = command[command.index("--llm-report") + 1]
    upload = next(step for step in drift["steps"] if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert upload["with"]["path"].split() == [junit, report]  # the junit XML and the HTML report
    assert upload["if"] == "always()"  # a failed check is the one whose report is wanted


def test_every_flag_the_workflow_passes_to_pytest_exists(workflow: dict[Any, Any],
                                                         pytester: pytest.Pytester) -> None:
    known = set(re.findall(r"--[a-z][a-z-]*", pytester.runpytest("--help").stdout.str()))
    used = {word.split("=", 1)[0] for job in workflow["jobs"].values() for command in pytest_commands(job)
            for word in command if word.startswith("--")}

    assert {"--llm-test", "--llm-live", "--llm-repeat"} <= used
    assert used <= known, used - known
