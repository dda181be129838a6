"""Embedders: sentence-transformers by default."""

from __future__ import annotations

from functools import cache

from dam_pipeline.embedding.base import Embedder
from dam_pipeline.embedding.sentence_transformer import SentenceTransformerEmbedder

__all__ = ["Embedder", "SentenceTransformerEmbedder", "build_embedder"]


@cache
def build_embedder(model: str = "all-MiniLM-L6-v2", batch_size: int = 64) -> Embedder:
    """The embedder for ``model`` (``DAM_EMBEDDER_MODEL``); built once per process."""
    return SentenceTransformerEmbedder(model=model, batch_size=batch_size)
