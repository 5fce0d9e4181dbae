"""The runtime API for application code: `locked`, `create` and the usage summary (no pytest, no scipy)."""

from pytest_llmtune.runtime.api import (
    CreateError,
    ModelUsage,
    Response,
    TokenUsage,
    UsageSummary,
    clear_cache,
    create,
    locked,
    reset_usage,
    usage_summary,
)

__all__ = ["CreateError", "ModelUsage", "Response", "TokenUsage", "UsageSummary", "clear_cache", "create",
           "locked", "reset_usage", "usage_summary"]
