"""A second stage over the first stage's top candidates (``DAM_RERANKER``)."""

from dam_pipeline.reranking.vision import (
    Candidate,
    MalformedScores,
    Reranked,
    VisionReranker,
    parse_scores,
)

__all__ = ["Candidate", "MalformedScores", "Reranked", "VisionReranker", "parse_scores"]
