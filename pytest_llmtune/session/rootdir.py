"""Option values that pytest takes for test paths: a path given to our options as a separate argument.

pytest chooses the rootdir and the ini file from the command line's paths (`Config.parse`, `determine_setup`) before
it loads the plugins that declare their options, so `--llm-report /abs/gate.html` reads, at that moment, as the
unknown option `--llm-report` and the test path `/abs/gate.html`. No plugin can be loaded earlier; the run is
refused when such a value moved the rootdir, and `--opt=PATH` is the form that works.
"""

from __future__ import annotations

from pathlib import Path

import pytest

__all__ = ["PATH_OPTIONS", "refuse_moved_rootdir"]

PATH_OPTIONS = ("--llm-report", "--llm-local-model")  # options whose value is a path


def refuse_moved_rootdir(config: pytest.Config) -> None:
    """pytest chooses the rootdir and the ini file from the command line's paths before it loads plugins, so the
    value of a plugin's option given as a separate argument (`--llm-report /abs/gate.html`) counts as a test path
    when it exists. A UsageError when such a value moved the rootdir (the ini and the lockfile would be lost); the
    `--opt=PATH` form is safe."""
    args = list(config.invocation_params.args)
    values = [(option, args[i + 1]) for i, option in enumerate(args[:-1]) if option in PATH_OPTIONS]
    values = [(option, value) for option, value in values if (config.invocation_params.dir / value).exists()]
    if not values:
        return
    chosen = _rootdir_from(config, [value for _, value in values])
    unmoved = _rootdir_from(config, [])
    if chosen is None or chosen == unmoved:
        return
    option, value = values[0]
    raise pytest.UsageError(
        f"{option} {value}: pytest took this value for a test path when it chose the rootdir ({chosen}, not "
        f"{unmoved}), because it reads the command line before it loads plugins' options; write {option}={value}")


def _rootdir_from(config: pytest.Config, extra: list[str]) -> Path | None:
    """The rootdir pytest's `determine_setup` chooses for the command line's paths plus `extra`; None if that
    internal is not as pinned (tests/test_pytest_contract.py checks it)."""
    try:
        from _pytest.config.findpaths import determine_setup  # no public API chooses a rootdir

        found = determine_setup(inifile=config.option.inifilename, override_ini=config.option.override_ini,
                                args=[*config.option.file_or_dir, *extra], rootdir_cmd_arg=config.option.rootdir,
                                invocation_dir=config.invocation_params.dir)
    except (ImportError, TypeError, pytest.UsageError):
        return None
    return Path(found[0])
