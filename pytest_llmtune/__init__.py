"""pytest-llmtune: tune, lock and gate LLM inference settings from pytest.

    from pytest_llmtune import llm_eval, choice, uniform, randint
"""

from typing import TYPE_CHECKING, Any

from pytest_llmtune.domains import (
    InvalidSpaceError,
    choice,
    lograndint,
    loguniform,
    qrandint,
    randint,
    uniform,
)
from pytest_llmtune.errors import LlmtuneError, MissingRecordingError, TemplateError
from pytest_llmtune.marker import llm_eval
from pytest_llmtune.space import default_space

__version__ = "0.1.0"

if TYPE_CHECKING:
    from pytest_llmtune.client import LLM, Usage


def __getattr__(name: str) -> Any:
    if name in ("LLM", "Usage"):  # the client module is imported only when asked for
        from pytest_llmtune import client

        return getattr(client, name)
    raise AttributeError(f"module 'pytest_llmtune' has no attribute {name!r}")

__all__ = [
    "LLM",
    "InvalidSpaceError",
    "LlmtuneError",
    "MissingRecordingError",
    "TemplateError",
    "Usage",
    "__version__",
    "choice",
    "default_space",
    "llm_eval",
    "lograndint",
    "loguniform",
    "qrandint",
    "randint",
    "uniform",
]
