"""pytest-llmtune: tune, lock and gate LLM inference settings from pytest.

In tests:            from pytest_llmtune import llm_eval, choice, uniform, randint, demos
In application code: from pytest_llmtune import locked, create, endpoint_table, config_list_from_json
Evaluation helpers:  from pytest_llmtune.evals import check_program, extract_answer, vote

Names are imported on first use, so application code that calls `create` loads neither pytest nor scipy.

PYTEST_DONT_REWRITE: the plugin's own asserts are internal checks, not test assertions; an editable install is
imported before pytest could rewrite it, and this marker keeps pytest from warning about it in nested runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "llm_eval": "session.marker",
    **dict.fromkeys(["choice", "uniform", "loguniform", "randint", "lograndint", "qrandint", "InvalidSpaceError"],
                    "search.domains"),
    "default_space": "search.space", "demos": "search.demos",
    "LLM": "llm.client", "Usage": "usage",
    "LlmtuneError": "errors", "MissingRecordingError": "errors", "TemplateError": "errors",
    **dict.fromkeys(["create", "usage_summary", "reset_usage", "clear_cache", "set_cache_size", "CreateError",
                     "Response"], "runtime.api"),
    "locked": "runtime.locked_config", "config_list_from_json": "runtime.config_list",
    "endpoint_table": "llm.routes",
}

if TYPE_CHECKING:
    from pytest_llmtune.errors import LlmtuneError, MissingRecordingError, TemplateError
    from pytest_llmtune.llm.client import LLM
    from pytest_llmtune.llm.routes import endpoint_table
    from pytest_llmtune.runtime.api import (
        CreateError,
        Response,
        clear_cache,
        create,
        reset_usage,
        set_cache_size,
        usage_summary,
    )
    from pytest_llmtune.runtime.config_list import config_list_from_json
    from pytest_llmtune.runtime.locked_config import locked
    from pytest_llmtune.search.demos import demos
    from pytest_llmtune.search.domains import (
        InvalidSpaceError,
        choice,
        lograndint,
        loguniform,
        qrandint,
        randint,
        uniform,
    )
    from pytest_llmtune.search.space import default_space
    from pytest_llmtune.session.marker import llm_eval
    from pytest_llmtune.usage import Usage

__all__ = [
    "CreateError",
    "InvalidSpaceError",
    "LLM",
    "LlmtuneError",
    "MissingRecordingError",
    "Response",
    "TemplateError",
    "Usage",
    "__version__",
    "choice",
    "clear_cache",
    "config_list_from_json",
    "create",
    "default_space",
    "demos",
    "endpoint_table",
    "llm_eval",
    "locked",
    "lograndint",
    "loguniform",
    "qrandint",
    "randint",
    "reset_usage",
    "set_cache_size",
    "uniform",
    "usage_summary",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'pytest_llmtune' has no attribute {name!r}")
    return getattr(importlib.import_module(f"pytest_llmtune.{_LAZY[name]}"), name)
