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
from dam_pipeline.vector_stores.pgvector_store import PgVectorStore
from dam_pipeline.vector_stores.pinecone_store import PineconeVectorStore

__all__ = [
    "ChromaVectorStore",
    "IncompatibleIndexError",
    "PgVectorStore",
    "PineconeVectorStore",
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
    pinecone_api_key: str = "",
    pinecone_host: str = "",
    pinecone_index_name: str = "",
    namespace: str = "",
    pgvector_url: str = "",
    chroma_idle_seconds: float = 300.0,
) -> VectorStore:
    """The store named by ``kind`` (``DAM_VECTOR_STORE``): ``chroma`` (an embedded folder, or
    a server with ``url``), ``pinecone`` or ``pgvector`` (a Postgres table). Opened once per
    process and configuration (a Chroma folder is reached through its local server,
    ``local_chroma``)."""
    key = (
        kind,
        collection,
        str(path),
        url,
        pinecone_host,
        pinecone_index_name,
        namespace,
        pgvector_url,
    )
    if key not in _OPEN:
        if kind == "chroma":
            _OPEN[key] = ChromaVectorStore(
                collection=collection,
                path=path,
                url=url or None,
                idle_seconds=chroma_idle_seconds,
            )
        elif kind == "pinecone":
            _OPEN[key] = PineconeVectorStore(
                pinecone_api_key, pinecone_host, pinecone_index_name, namespace
            )
        elif kind == "pgvector":
            _OPEN[key] = PgVectorStore(pgvector_url, collection)
        else:
            raise ValueError(
                f"Unknown vector store {kind!r}: set DAM_VECTOR_STORE to chroma, pinecone or "
                "pgvector."
            )
    return _OPEN[key]
