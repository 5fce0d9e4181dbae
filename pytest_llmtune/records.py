"""Records that cross the layers: what a test body did, whether a target's evaluations share a setup, and a
target's verdict with the names of the report properties that carry it. Plain data: the session layer makes them,
the search core and the reporting layer read them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SCORE_DIGITS", "SUFFIX", "TARGET_PROPERTY", "VERDICT_PROPERTY", "BodyResult", "Sharing", "Verdict"]

SCORE_DIGITS = 6  # scores are locked, and compared, at this precision (the gate's and the lockfile's)
SUFFIX = "[llmtune]"  # the target's item: test_x[llmtune]
TARGET_PROPERTY = "llmtune_target"  # on the reports of a target's items: its instances and its verdict
VERDICT_PROPERTY = "llmtune_verdict"


@dataclass(frozen=True)
class BodyResult:
    """`returned` is what a passing body returned; `miss` the message of its failed assertion."""

    returned: Any = None
    miss: str | None = None

    @property
    def passed(self) -> bool:
        return self.miss is None


@dataclass(frozen=True)
class Sharing:
    """`reason` is None when evaluations may share the probe's setup; else why each needs its own."""

    reason: str | None
    direct: frozenset[str] = frozenset()  # argument names that are direct parameters


@dataclass(frozen=True)
class Verdict:
    """What the target item reports: `outcome` is "passed", "failed" or "skipped"."""

    outcome: str
    message: str
    properties: tuple[tuple[str, Any], ...] = ()
