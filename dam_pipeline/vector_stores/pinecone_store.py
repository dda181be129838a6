"""Pinecone serverless through the official ``pinecone`` client (data plane by host).

Layout: the whole library lives in one namespace and each vector carries a ``partition``
metadata field. A search over any set of prefixes is then one query with a ``$in`` filter;
with a namespace per partition it would be one query per prefix, merged by hand. Vector ids
are ``<partition tag>#<object id>`` (the tag is a hash of the partition key: ids must be
ASCII), so the vectors of one partition are enumerated with
``list(prefix=...)`` (serverless) without scanning the index. The embedder an index is bound
to is kept as a record in a separate namespace that queries never see.

Limits respected: at most 1000 vectors and about 2 MB per upsert request, 1000 ids per
delete, 100 ids per fetch, metadata well under Pinecone's 40 KB per vector (long text is
cut on a character boundary).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from dam_pipeline.retry import call_with_retries
from dam_pipeline.text import register_secret
from dam_pipeline.vector_stores.base import (
    IncompatibleIndexError,
    Metadata,
    StoreFilter,
    VectorHit,
    VectorRecord,
    reindex_hint,
)

MAX_UPSERT_VECTORS = 1000
MAX_UPSERT_BYTES = 1_800_000
MAX_DELETE_IDS = 1000
MAX_FETCH_IDS = 100
MAX_METADATA_BYTES = 32_000
META_NAMESPACE = "__dam_meta__"
BINDING_ID = "embedder-binding"


def partition_tag(partition: str) -> str:
    return hashlib.sha256(partition.encode("utf-8")).hexdigest()[:16]


def fit_metadata(metadata: Metadata, limit: int = MAX_METADATA_BYTES) -> Metadata:
    """Cut the longest string values until the JSON fits in ``limit`` bytes."""
    meta = {k: v for k, v in metadata.items() if v is not None and v != ""}
    while len(json.dumps(meta, ensure_ascii=False).encode()) > limit:
        longest = max(
            (k for k, v in meta.items() if isinstance(v, str)), key=lambda k: len(meta[k])
        )
        value = meta[longest]
        meta[longest] = value[: max(0, len(value) - max(64, len(value) // 4))]
    return meta


class PineconeVectorStore:
    upsert_batch = 256

    def batch_writes(self) -> AbstractContextManager[None]:
        return nullcontext()  # nothing to defer: the index is maintained as it is written

    def __init__(
        self,
        api_key: str,
        host: str = "",
        index_name: str = "",
        namespace: str = "",
        attempts: int = 5,
    ) -> None:
        from pinecone import Pinecone

        if not api_key:
            raise ValueError("The Pinecone store needs PINECONE_API_KEY.")
        if not host and not index_name:
            raise ValueError("Set PINECONE_HOST (preferred) or PINECONE_INDEX_NAME.")
        register_secret(api_key)
        client = Pinecone(api_key=api_key)
        if not host:
            host = client.describe_index(index_name).host
        self.index = client.Index(host=host)
        self.namespace = namespace
        self.attempts = attempts
        self.location = host
        self._binding: tuple[str, int] | None = None

    def _call(self, what: str, call: Any) -> Any:
        return call_with_retries(call, f"pinecone {what}", attempts=self.attempts)

    @staticmethod
    def _full_id(partition: str, vector_id: str) -> str:
        """Pinecone ids and list prefixes must be ASCII; partition keys may not be."""
        return f"{partition_tag(partition)}#{vector_id}"

    def binding(self) -> tuple[str, int] | None:
        """Read once per process (it changes only through ``reset``): queries stay one call."""
        if self._binding is None:
            self._binding = self._read_binding()
        return self._binding

    def _read_binding(self) -> tuple[str, int] | None:
        fetched = self._call(
            "fetch", lambda: self.index.fetch(ids=[BINDING_ID], namespace=META_NAMESPACE)
        )
        record = fetched.vectors.get(BINDING_ID)
        if record is None or not record.metadata:
            return None
        return str(record.metadata["embedder"]), int(record.metadata["dimension"])

    def ensure_compatible(self, embedder: str, dimension: int) -> None:
        bound = self.binding()
        if bound is None:
            values = [0.0] * dimension
            values[0] = 1.0
            record = {
                "id": BINDING_ID,
                "values": values,
                "metadata": {"embedder": embedder, "dimension": dimension},
            }
            self._call(
                "upsert", lambda: self.index.upsert(vectors=[record], namespace=META_NAMESPACE)
            )
            self._binding = (embedder, dimension)
        elif bound != (embedder, dimension):
            raise IncompatibleIndexError(reindex_hint(bound[0], bound[1], embedder, dimension))

    def _upsert_batches(self, records: Sequence[VectorRecord]) -> Iterator[list[dict]]:
        batch: list[dict] = []
        size = 0
        for record in records:
            metadata = fit_metadata({**record.metadata, "document": record.document})
            item = {
                "id": self._full_id(str(record.metadata["partition"]), record.id),
                "values": [float(x) for x in np.asarray(record.vector, dtype=np.float32)],
                "metadata": metadata,
            }
            item_size = len(json.dumps(item).encode())
            if batch and (len(batch) >= MAX_UPSERT_VECTORS or size + item_size > MAX_UPSERT_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += item_size
        if batch:
            yield batch

    def upsert(self, records: Sequence[VectorRecord]) -> None:
        for batch in self._upsert_batches(records):
            self._call(
                "upsert", lambda b=batch: self.index.upsert(vectors=b, namespace=self.namespace)
            )

    def delete(self, ids: Sequence[str], partition: str) -> None:
        full = [self._full_id(partition, i) for i in ids]
        for start in range(0, len(full), MAX_DELETE_IDS):
            chunk = full[start : start + MAX_DELETE_IDS]
            self._call("delete", lambda c=chunk: self.index.delete(ids=c, namespace=self.namespace))

    def _partition_ids(self, partition: str) -> list[str]:
        ids: list[str] = []
        token = None
        while True:
            page = self._call(
                "list",
                lambda t=token: self.index.list_paginated(
                    prefix=f"{partition_tag(partition)}#",
                    namespace=self.namespace,
                    limit=100,
                    pagination_token=t,
                ),
            )
            ids.extend(v.id for v in page.vectors)
            token = page.pagination.next if page.pagination else None
            if not token:
                return ids

    def list_partition(self, partition: str) -> dict[str, Metadata]:
        ids = [full_id.split("#", 1)[1] for full_id in self._partition_ids(partition)]
        fetched = self.fetch([(vector_id, partition) for vector_id in ids])
        return {vector_id: metadata for vector_id, (_, metadata, _) in fetched.items()}

    def query(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None = None
    ) -> list[VectorHit]:
        filter_ = where.where() if where else None
        result = self._call(
            "query",
            lambda: self.index.query(
                vector=[float(x) for x in np.asarray(vector, dtype=np.float32)],
                top_k=top_k,
                namespace=self.namespace,
                filter=filter_,
                include_metadata=True,
            ),
        )
        hits = []
        for match in result.matches:
            metadata = dict(match.metadata or {})
            document = str(metadata.pop("document", ""))
            hits.append(
                VectorHit(
                    id=match.id.split("#", 1)[-1],
                    score=float(match.score),
                    document=document,
                    metadata=metadata,
                )
            )
        return hits

    def fetch(
        self, items: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[np.ndarray, Metadata, str]]:
        full = [self._full_id(partition, vector_id) for vector_id, partition in items]
        found: dict[str, tuple[np.ndarray, Metadata, str]] = {}
        for start in range(0, len(full), MAX_FETCH_IDS):
            chunk = full[start : start + MAX_FETCH_IDS]
            fetched = self._call(
                "fetch", lambda c=chunk: self.index.fetch(ids=c, namespace=self.namespace)
            )
            for full_id, record in fetched.vectors.items():
                metadata = dict(record.metadata or {})
                document = str(metadata.pop("document", ""))
                vector = np.asarray(record.values, dtype=np.float32)
                found[full_id.split("#", 1)[1]] = (vector, metadata, document)
        return found

    def count(self) -> int:
        stats = self._call("describe_index_stats", lambda: self.index.describe_index_stats())
        namespace = (stats.namespaces or {}).get(self.namespace)
        return int(namespace.vector_count) if namespace else 0

    def reset(self) -> None:
        self._binding = None
        for namespace in (self.namespace, META_NAMESPACE):
            self._call(
                "delete", lambda n=namespace: self.index.delete(delete_all=True, namespace=n)
            )
