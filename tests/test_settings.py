"""Ini settings: their types and defaults in `pytest --help`, and errors that say what was expected."""

from __future__ import annotations

import typing

import pytest

from pytest_llmtune.search.spec import STRATEGIES
from pytest_llmtune.session.settings import INI, Strategy


def test_help_gives_each_ini_setting_its_type_and_default(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")

    text = " ".join(result.stdout.str().split())  # argparse wraps the help at the terminal's width
    for name, ini in INI.items():
        kind = {int: "int", float: "float", bool: "bool", str: "string"}.get(ini.type)
        if kind is not None:
            assert f"{name} ({kind}):" in text
        assert " ".join(ini.help_text().split()) in text
    assert "llmtune_strategy ('halving' | 'random' | 'grid'):" in text
    assert "llmtune_split_n (bool | 'auto'):" in text
    assert "requests in flight at once, >= 1 (default: 8)" in text


def test_the_strategy_choices_are_the_searchs() -> None:
    assert typing.get_args(Strategy) == STRATEGIES


@pytest.mark.parametrize(("setting", "message"), [
    ("llmtune_concurrency=abc", "ini setting llmtune_concurrency = 'abc': expected a whole number"),
    ("llmtune_timeout=soon", "ini setting llmtune_timeout = 'soon': expected a number"),
    ("llmtune_local=maybe", "ini setting llmtune_local = 'maybe': expected true or false"),
    ("llmtune_split_n=sometimes", "ini setting llmtune_split_n = 'sometimes': expected true or false, or auto"),
    ("llmtune_strategy=best", "ini setting llmtune_strategy = 'best': expected one of halving, random, grid"),
    ("llmtune_eta=1", "ini setting llmtune_eta = 1 is too small: it must be at least 2"),
    ("llmtune_margin=-0.1", "ini setting llmtune_margin = -0.1 is too small: it must be at least 0"),
])
def test_a_bad_ini_value_is_refused_in_english(pytester: pytest.Pytester, setting: str, message: str) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    result = pytester.runpytest("--llm-test", "-o", setting)

    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_native_toml_settings_take_their_types(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", pytest='[pytest]\nllmtune_concurrency = 3\nllmtune_split_n = "auto"\n'
                                      'llmtune_prices = ["my-model 1.0 2.0"]\n')
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    result = pytester.runpytest("--llm-test")

    result.assert_outcomes(passed=1)


def test_a_wrongly_typed_toml_value_is_refused_in_english(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", pytest='[pytest]\nllmtune_concurrency = "many"\n')
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    result = pytester.runpytest("--llm-test")

    result.stderr.fnmatch_lines(["ERROR: ini setting llmtune_concurrency = 'many': expected a whole number"])


def test_the_replay_only_header_names_no_endpoint(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    result = pytester.runpytest("--llm-test")

    result.stdout.fnmatch_lines(["llmtune: test, replay only; lockfile llmtune.lock, cassettes llmtune_cassettes/",
                                 "llmtune: no request leaves this machine"])
    assert "api.openai.com" not in result.stdout.str()


def test_the_replaced_tolerance_says_what_replaced_it_in_toml_too(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", pytest="[pytest]\nllmtune_tolerance = 0.1\n")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    result = pytester.runpytest("--llm-test")

    result.stderr.fnmatch_lines(["ERROR: ini setting llmtune_tolerance is replaced*set llmtune_margin instead"])
