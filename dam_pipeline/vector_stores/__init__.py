"""Vector stores: embedded Chroma by default."""

from __future__ import annotations

from pathlib import Path

from dam_pipeline.vector_stores.base import (
    IncompatibleIndexError,
    VectorHit,
    VectorRecord,
    VectorStore,
)
from dam_pipeline.vector_stores.chroma import ChromaVectorStore

__all__ = [
    "ChromaVectorStore",
    "IncompatibleIndexError",
    "VectorHit",
    "VectorRecord",
    "VectorStore",
    "open_vector_store",
]

_OPEN: dict[tuple, VectorStore] = {}


def open_vector_store(
    kind: str = "chroma",
    collection: str = "dam_images",
    path: Path | None = None,
    url: str | None = None,
) -> VectorStore:
    """The store named by ``kind`` (``DAM_VECTOR_STORE``), opened once per process: an
    embedded Chroma folder must have a single client per process."""
    key = (kind, collection, str(path), url)
    if key not in _OPEN:
        if kind != "chroma":
            raise ValueError(f"Unknown vector store {kind!r}; this version offers 'chroma'.")
        _OPEN[key] = ChromaVectorStore(collection=collection, path=path, url=url)
    return _OPEN[key]
