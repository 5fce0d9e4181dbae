"""A candidate: what the search chose, and what a run of it sends to the model.

Today a candidate is one config with one stage: each call of `llm` sends that config's request. The type is the
seam for what comes next, without the features: a cascade renders to several stages (a cheap config first, a
stronger one when a check rejects its answer), demonstrations chosen by the search are rendered into a stage's
template, and a stage's model names the endpoint it lives on. The lockfile holds `config`; the search core ranks
candidates by the number it gives them.
"""

from __future__ import annotations

from dataclasses import dataclass

from pytest_llmtune.search.cascade import stages_of
from pytest_llmtune.search.evaluation import Config

__all__ = ["Candidate"]


@dataclass(frozen=True)
class Candidate:
    config: Config

    @property
    def stages(self) -> tuple[Config, ...]:
        """The configs a call may send, in order: a cascade's stages, or the config itself."""
        return tuple(stages_of(self.config))
