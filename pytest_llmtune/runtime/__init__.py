"""The runtime API for application code: `locked`, `create`, AutoGen's config lists and the usage summary (no
pytest, no scipy)."""

from pytest_llmtune.runtime.api import (
    CreateError,
    ModelUsage,
    Response,
    TokenUsage,
    UsageSummary,
    clear_cache,
    create,
    reset_usage,
    set_cache_size,
    usage_summary,
)
from pytest_llmtune.runtime.config_list import config_list_from_json
from pytest_llmtune.runtime.locked_config import locked

__all__ = ["CreateError", "ModelUsage", "Response", "TokenUsage", "UsageSummary", "clear_cache",
           "config_list_from_json", "create", "locked", "reset_usage", "set_cache_size", "usage_summary"]
