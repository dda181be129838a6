"""Retrieval: from a question (or an image) to ranked images."""

from dam_pipeline.retrieval.keyword_index import KeywordDocument, KeywordIndex
from dam_pipeline.retrieval.search import (
    MODES,
    Filters,
    Hit,
    Hits,
    reciprocal_rank_fusion,
    search,
)

__all__ = [
    "MODES",
    "Filters",
    "Hit",
    "Hits",
    "KeywordDocument",
    "KeywordIndex",
    "reciprocal_rank_fusion",
    "search",
]
