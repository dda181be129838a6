"""More like this, and near-duplicate groups.

"Similar" ranks by the index's own vectors (caption embeddings, or image embeddings with
Titan). Near duplicates are judged on pixels instead: a 64-bit difference hash of each
normalized image, compared by Hamming distance, survives re-encoding, resizing and small
edits that change every byte. Candidate pairs come from ``max_distance + 1`` bit bands (two
hashes that differ in at most that many bits agree exactly on at least one band), so a
large library is not compared pair by pair; candidates are then checked exactly.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from dam_pipeline.retrieval.search import Filters, Hit, hit_from
from dam_pipeline.vector_stores import VectorStore
from dam_pipeline.vector_stores.base import Metadata

HASH_BITS = 64


def similar_to_vector(
    vector: np.ndarray,
    store: VectorStore,
    top_k: int = 5,
    filters: Filters | None = None,
    exclude: Iterable[str] = (),
    url_for: Callable[[str], str] | None = None,
) -> list[Hit]:
    filters = filters or Filters()
    excluded = set(exclude)
    raw = store.query(vector, top_k=top_k + len(excluded) + 10, where=filters.store_filter())
    hits: list[Hit] = []
    for found in raw:
        if found.id in excluded or not filters.accepts(found.metadata):
            continue
        if found.score < filters.min_score:
            continue
        hits.append(hit_from(found.metadata, found.id, found.score, len(hits) + 1, url_for))
        if len(hits) == top_k:
            break
    return hits


def similar_to_indexed(
    vector_id: str,
    partition: str,
    store: VectorStore,
    top_k: int = 5,
    filters: Filters | None = None,
    url_for: Callable[[str], str] | None = None,
) -> list[Hit] | None:
    """Images like an indexed one, or None when ``vector_id`` is not in the index."""
    fetched = store.fetch([(vector_id, partition)])
    if vector_id not in fetched:
        return None
    vector, _, _ = fetched[vector_id]
    return similar_to_vector(vector, store, top_k, filters, exclude=[vector_id], url_for=url_for)


def vector_for_image(data: bytes, max_side: int, captioner, embedder) -> np.ndarray:
    """Embed a new image the way the pipeline would (normalize, then caption and embed the
    caption, or embed the image itself with an image embedder), without storing it."""
    from PIL import Image

    from dam_pipeline.captioning import CaptionerError, ImageInput
    from dam_pipeline.imaging import normalize_image

    decoded = normalize_image(data, max_side=max_side)
    if getattr(embedder, "modality", "text") == "image":
        return embedder.embed_images([decoded.jpeg])[0]
    picture = Image.open(io.BytesIO(decoded.jpeg)).convert("RGB")
    (caption,) = captioner.caption_batch([ImageInput(image=picture)])
    if isinstance(caption, CaptionerError):
        raise RuntimeError(f"Could not caption the image: {caption}")
    return embedder.embed_documents([caption.text])[0]


def hamming(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@dataclass(frozen=True)
class DuplicateGroup:
    keys: list[str]
    max_distance: int
    """The largest Hamming distance between two members (0: the same picture)."""

    @property
    def similarity(self) -> float:
        return round(1 - self.max_distance / HASH_BITS, 4)


def duplicates_in(
    store: VectorStore, partitions: Iterable[str], max_distance: int = 6
) -> list[DuplicateGroup]:
    """Near-duplicate groups among the indexed images of these partitions."""
    metadata = [meta for p in partitions for meta in store.list_partition(p).values()]
    return near_duplicate_groups(metadata, max_distance)


def near_duplicate_groups(
    metadata: Iterable[Metadata], max_distance: int = 6
) -> list[DuplicateGroup]:
    """Groups of images whose perceptual hashes differ by at most ``max_distance`` bits
    (similarity = 1 - distance/64; 6 bits is about 0.9), largest groups first."""
    items = [(str(m["key"]), str(m["dhash"])) for m in metadata if m.get("dhash")]
    bands = max_distance + 1
    edges = [round(b * HASH_BITS / bands) for b in range(bands + 1)]
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, (_, digest) in enumerate(items):
        value = int(digest, 16)
        for band in range(bands):
            width = edges[band + 1] - edges[band]
            buckets[(band, (value >> edges[band]) & ((1 << width) - 1))].append(index)
    parent = list(range(len(items)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for members in buckets.values():
        for position, i in enumerate(members):
            for j in members[position + 1 :]:
                if hamming(items[i][1], items[j][1]) <= max_distance:
                    parent[root(i)] = root(j)
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(items)):
        groups[root(index)].append(index)
    result = []
    for members in groups.values():
        if len(members) < 2:
            continue
        worst = max(hamming(items[i][1], items[j][1]) for i in members for j in members if i < j)
        result.append(DuplicateGroup(sorted(items[i][0] for i in members), worst))
    return sorted(result, key=lambda g: (-len(g.keys), g.keys))
