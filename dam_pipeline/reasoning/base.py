"""The Reasoner interface (search-then-reason): answer only from the retrieved sources."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    error: str = ""
    """Why the language model could not answer (the hits are still in ``sources``)."""
    dropped_citations: list[int] = field(default_factory=list)
    """Citations of sources that do not exist, removed from the text."""
    cost_usd: float = 0.0
    """What the question cost at the paid providers (reasoner, re-ranker)."""
    usage: dict = field(default_factory=dict)
    """provider/model -> requests, tokens and images the question used."""
    rerank_error: str = ""
    """Why the re-ranker left the first stage's order (it failed), if it did."""

    def _repr_html_(self) -> str:
        from dam_pipeline.display import answer_html

        return answer_html(self)

    @property
    def cited_hits(self) -> list[Hit]:
        return [self.sources[n - 1] for n in self.cited]

    def to_dict(self) -> dict:
        """The answer as JSON-ready data: text, citations (source -> key) and the hits."""
        return {
            "question": self.question,
            "answer": self.text,
            "citations": [{"source": f"S{n}", "key": self.sources[n - 1].key} for n in self.cited],
            "hits": [hit.to_dict() for hit in self.sources],
            "reasoner": self.reasoner,
            "error": self.error,
            "cost_usd": round(self.cost_usd, 6),
            "usage": self.usage,
            "rerank_error": self.rerank_error,
        }


def neutralize(text: str) -> str:
    """Text from an image (caption, OCR, EXIF, file name) cannot close a source fence or
    forge a citation: brackets and angle brackets become look-alikes."""
    return text.replace("<", "‹").replace(">", "›").replace("[", "(").replace("]", ")")


class Reasoner(Protocol):
    name: str

    def answer(
        self, question: str, sources: Sequence[Hit], images: Mapping[int, bytes] | None = None
    ) -> Answer:
        """``images``: source number -> JPEG, for reasoners that can look at them."""
        ...
