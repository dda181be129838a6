"""Reasoners: turn retrieved captions into an answer that cites its sources [S1]..[Sn]."""

from dam_pipeline.reasoning.base import Answer, Reasoner
from dam_pipeline.reasoning.extractive import ExtractiveReasoner

__all__ = ["Answer", "ExtractiveReasoner", "Reasoner", "build_reasoner"]


def build_reasoner(kind: str = "extractive") -> Reasoner:
    if kind == "extractive":
        return ExtractiveReasoner()
    raise ValueError(f"Unknown reasoner {kind!r}; this version offers 'extractive'.")
