"""The VectorStore interface: one vector per object, addressed by a deterministic id."""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

Metadata = dict[str, Any]


@dataclass(frozen=True)
class StoreFilter:
    """What a vector query may be narrowed by inside the store: partitions and a date range
    (seconds since the epoch, on the photo's date taken or else its last-modified time)."""

    partitions: tuple[str, ...] = ()
    date_from: int | None = None
    date_to: int | None = None
    places: tuple[str, ...] = ()
    """Folded place names (``places.gazetteer.fold``): a city, large city near it, region
    or country equal to any of them."""
    near: tuple[float, float, float] | None = None
    """(lat, lon, km): taken within ``km`` of the point."""

    def conditions(self) -> list[dict[str, Any]]:
        """The filter in the Mongo-like syntax Chroma and Pinecone share (``near`` as its
        bounding box: ``accepts`` then keeps the circle)."""
        out: list[dict[str, Any]] = []
        if self.partitions:
            out.append({"partition": {"$in": list(self.partitions)}})
        if self.date_from is not None:
            out.append({"date_ts": {"$gte": self.date_from}})
        if self.date_to is not None:
            out.append({"date_ts": {"$lte": self.date_to}})
        if self.places:
            names = list(self.places)
            out.append({"$or": [{f"{f}_folded": {"$in": names}} for f in PLACE_FIELDS]})
        if self.near is not None:
            south, north, west, east = bounding_box(*self.near)
            out += [{"lat": {"$gte": south}}, {"lat": {"$lte": north}}]
            if west <= east:  # a box across the antimeridian is left to ``accepts``
                out += [{"lon": {"$gte": west}}, {"lon": {"$lte": east}}]
        return out

    def accepts(self, metadata: Metadata) -> bool:
        """Whether a stored record passes the filter (as the stores' own filters judge it: a
        record without a date fails any date bound)."""
        if self.partitions and metadata.get("partition") not in self.partitions:
            return False
        when = metadata.get("date_ts")
        if self.date_from is not None and (when is None or when < self.date_from):
            return False
        if self.date_to is not None and (when is None or when > self.date_to):
            return False
        if self.places and not any(
            metadata.get(f"{field}_folded") in self.places for field in PLACE_FIELDS
        ):
            return False
        return self.near is None or within(metadata, *self.near)

    def where(self) -> dict[str, Any] | None:
        conditions = self.conditions()
        if not conditions:
            return None
        return conditions[0] if len(conditions) == 1 else {"$and": conditions}


PLACE_FIELDS = ("place_city", "place_near_city", "place_region", "place_country")


def bounding_box(lat: float, lon: float, km: float) -> tuple[float, float, float, float]:
    """(south, north, west, east) around a circle of ``km``."""
    dlat = km / 111.2
    dlon = km / max(1e-6, 111.2 * math.cos(math.radians(min(89.9, abs(lat)))))
    west, east = lon - dlon, lon + dlon
    if dlon >= 180:
        west, east = -180.0, 180.0
    west = west + 360 if west < -180 else west
    east = east - 360 if east > 180 else east
    return max(-90.0, lat - dlat), min(90.0, lat + dlat), west, east


def within(metadata: Metadata, lat: float, lon: float, km: float) -> bool:
    try:
        here = float(metadata["lat"]), float(metadata["lon"])
    except (KeyError, TypeError, ValueError):
        return False
    p1, p2 = math.radians(lat), math.radians(here[0])
    a = (
        math.sin((p2 - p1) / 2) ** 2
        + math.cos(p1) * math.cos(p2) * math.sin(math.radians(here[1] - lon) / 2) ** 2
    )
    return 2 * 6371.0 * math.asin(min(1.0, math.sqrt(a))) <= km


class IncompatibleIndexError(RuntimeError):
    """The index was built with another embedding model or dimension."""


@dataclass(frozen=True)
class VectorRecord:
    id: str
    vector: np.ndarray
    document: str
    metadata: Metadata = field(default_factory=dict)


@dataclass(frozen=True)
class VectorHit:
    id: str
    score: float
    """Cosine similarity, 1 is identical."""
    document: str
    metadata: Metadata


class VectorStore(Protocol):
    upsert_batch: int
    """How many records the pipeline hands ``upsert`` at once: each call is one unit of
    work, so a store with a bulk path (pgvector's COPY) takes many."""

    def batch_writes(self) -> AbstractContextManager[None]:
        """Around a run's writes (many ``upsert`` calls): a store may defer work that is
        cheaper once at the end (pgvector builds its HNSW index once after a large load)."""
        ...

    def ensure_compatible(self, embedder: str, dimension: int) -> None:
        """Bind the index to one embedder; raise ``IncompatibleIndexError`` on a mismatch."""
        ...

    def binding(self) -> tuple[str, int] | None:
        """The (embedder, dimension) the index is bound to, or None while it is empty."""
        ...

    def upsert(self, records: Sequence[VectorRecord]) -> None:
        """Insert or replace by id (idempotent), batching within the store's limits."""
        ...

    def delete(self, ids: Sequence[str], partition: str) -> None:
        """Remove these vectors of one partition."""
        ...

    def reset(self) -> None:
        """Drop every vector and the model binding: the way to re-index from scratch."""
        ...

    def list_partition(self, partition: str) -> dict[str, Metadata]:
        """id -> metadata of every vector of one partition."""
        ...

    def query(
        self, vector: np.ndarray, top_k: int, where: StoreFilter | None = None
    ) -> list[VectorHit]: ...

    def fetch(
        self, items: Sequence[tuple[str, str]]
    ) -> dict[str, tuple[np.ndarray, Metadata, str]]:
        """For (id, partition) pairs: id -> (vector, metadata, document), for those that exist."""
        ...

    def count(self) -> int: ...


def reindex_hint(built_with: str, built_dim: int, wanted: str, wanted_dim: int) -> str:
    return (
        f"The vector index was built with {built_with} ({built_dim}-d vectors) but the "
        f"configured embedder is {wanted} ({wanted_dim}-d). Vectors of different models cannot "
        "be compared. Either set the embedder back, or re-index: run `dam reset-index` and "
        "re-materialize the assets (or point DAM_COLLECTION at a new collection)."
    )
