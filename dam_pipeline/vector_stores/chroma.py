"""ChromaDB: embedded (a folder, the default) or a shared server (``chroma run``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dam_pipeline.vector_stores.base import (
    IncompatibleIndexError,
    Metadata,
    StoreFilter,
    VectorHit,
    VectorRecord,
    reindex_hint,
)

PAGE_SIZE = 1000


def _client(path: Path | None, url: str | None):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False, allow_reset=True)
    if url:
        from urllib.parse import urlparse

        parsed = urlparse(url)
        return chromadb.HttpClient(
            host=parsed.hostname or "localhost",
            port=parsed.port or 8000,
            ssl=parsed.scheme == "https",
            settings=settings,
        )
    assert path is not None
    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(path), settings=settings)


class ChromaVectorStore:
    def __init__(self, collection: str, path: Path | None = None, url: str | None = None) -> None:
        try:
            self.client = _client(path, url)
            self.collection_name = collection
            self.collection = self.client.get_or_create_collection(
                collection, metadata={"hnsw:space": "cosine"}, embedding_function=None
            )
        except Exception as exc:
            if not url:
                raise
            raise ConnectionError(
                f"Could not reach the Chroma server at {url} ({type(exc).__name__}): start it "
                "(`chroma run --path … --port …`) or fix DAM_CHROMA_URL."
            ) from None
        self.location = url or str(path)

    def ensure_compatible(self, embedder: str, dimension: int) -> None:
        meta = dict(self.collection.metadata or {})
        built_with, built_dim = meta.get("embedder"), meta.get("dimension")
        if built_with is None:
            if self.collection.count():
                return  # an index from before models were recorded: trust it
            meta.update({"embedder": embedder, "dimension": dimension})
            meta.pop("hnsw:space", None)  # fixed at creation; chroma refuses to "change" it
            self.collection.modify(metadata=meta)
            return
        if built_with != embedder or int(built_dim) != dimension:
            raise IncompatibleIndexError(
                reindex_hint(built_with, int(built_dim), embedder, dimension)
            )

    def binding(self) -> tuple[str, int] | None:
        meta = self.collection.metadata or {}
        if meta.get("embedder") is None:
            return None
        return str(meta["embedder"]), int(meta["dimension"])

    def upsert(self, records: Sequence[VectorRecord]) -> None:
        step = self.client.get_max_batch_size()
        for start in range(0, len(records), step):
            batch = records[start : start + step]
            self.collection.upsert(
                ids=[r.id for r in batch],
                embeddings=np.stack([r.vector for r in batch]).astype(np.float32),
                documents=[r.document for r in batch],
                metadatas=[r.metadata for r in batch],
            )

    def delete(self, ids: Sequence[str], partition: str = "") -> None:
        ids = list(ids)
        for start in range(0, len(ids), PAGE_SIZE):
            self.collection.delete(ids=ids[start : start + PAGE_SIZE])

    def list_partition(self, partition: str) -> dict[str, Metadata]:
        found: dict[str, Metadata] = {}
        offset = 0
        while True:
            page = self.collection.get(
                where={"partition": partition},
                include=["metadatas"],
                limit=PAGE_SIZE,
                offset=offset,
            )
            found.update(zip(page["ids"], page["metadatas"] or [], strict=True))
            if len(page["ids"]) < PAGE_SIZE:
                return found
            offset += PAGE_SIZE

    def query(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None = None
    ) -> list[VectorHit]:
        total = self.collection.count()
        if total == 0 or top_k <= 0:
            return []
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=min(top_k, total),
            where=where.where() if where else None,
            include=["metadatas", "documents", "distances"],
        )
        return [
            VectorHit(id=id_, score=1.0 - float(distance), document=doc or "", metadata=meta or {})
            for id_, distance, doc, meta in zip(
                result["ids"][0],
                result["distances"][0],
                result["documents"][0],
                result["metadatas"][0],
                strict=True,
            )
        ]

    def fetch(
        self, items: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[np.ndarray, Metadata, str]]:
        if not items:
            return {}
        ids = list(dict.fromkeys(vector_id for vector_id, _ in items))
        got = self.collection.get(ids=ids, include=["embeddings", "metadatas", "documents"])
        return {
            id_: (np.asarray(vector, dtype=np.float32), meta or {}, doc or "")
            for id_, vector, meta, doc in zip(
                got["ids"], got["embeddings"], got["metadatas"], got["documents"], strict=True
            )
        }

    def count(self) -> int:
        return self.collection.count()

    def reset(self) -> None:
        """Drop every vector (and the model binding): the way to re-index from scratch."""
        self.client.delete_collection(self.collection_name)
        self.collection = self.client.get_or_create_collection(
            self.collection_name, metadata={"hnsw:space": "cosine"}, embedding_function=None
        )
