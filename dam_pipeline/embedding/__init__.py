"""Embedders: sentence-transformers on captions (default), or Titan multimodal on images."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from dam_pipeline.embedding.base import Embedder
from dam_pipeline.embedding.sentence_transformer import DEFAULT_CACHE, SentenceTransformerEmbedder

__all__ = ["Embedder", "SentenceTransformerEmbedder", "build_embedder"]


@cache
def build_embedder(
    model: str = "all-MiniLM-L6-v2",
    batch_size: int = 64,
    provider: str = "sentence-transformers",
    dimension: int = 1024,
    region: str = "",
    endpoint_url: str = "",
    timeout: float = 30.0,
    model_cache: Path | None = None,
) -> Embedder:
    """The embedder named by ``provider`` (``DAM_EMBEDDER``): ``sentence-transformers`` with
    ``model`` (packaged name, local path or cached hub name) or ``bedrock-titan`` (Titan
    multimodal, ``dimension`` 256/384/1024; ``timeout`` is each request's deadline, an item
    gets 3x it across its attempts). Built once per process and configuration."""
    if provider == "sentence-transformers":
        cache = model_cache if model_cache is not None else DEFAULT_CACHE
        return SentenceTransformerEmbedder(model=model, batch_size=batch_size, cache=cache)
    if provider == "bedrock-titan":
        from dam_pipeline.embedding.bedrock_titan import TITAN_MULTIMODAL, TitanMultimodalEmbedder

        titan_model = model if model.startswith("amazon.") else TITAN_MULTIMODAL
        return TitanMultimodalEmbedder(
            titan_model, dimension, region, endpoint_url, timeout=timeout
        )
    raise ValueError(
        f"Unknown embedder {provider!r}: "
        "set DAM_EMBEDDER to sentence-transformers or bedrock-titan."
    )
