"""The Reasoner interface (search-then-reason): answer only from the retrieved sources."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from dam_pipeline.retrieval import Hit


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    sources: list[Hit]
    """The hits given to the reasoner, numbered S1..Sn in order."""
    cited: list[int] = field(default_factory=list)
    """1-based source numbers the answer cites."""
    reasoner: str = ""

    @property
    def cited_hits(self) -> list[Hit]:
        return [self.sources[n - 1] for n in self.cited]


class Reasoner(Protocol):
    name: str

    def answer(self, question: str, sources: Sequence[Hit]) -> Answer: ...
