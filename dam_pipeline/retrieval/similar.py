"""More like this, and near-duplicate groups.

"Similar" ranks by the visual index (what images look like: ``embedding.visual``), else by
the index's own vectors (caption embeddings, or image embeddings with Titan). Near
duplicates are judged on pixels: a 64-bit difference hash of each normalized image, compared
by Hamming distance, survives re-encoding, resizing and small edits that change every byte;
and, with a visual index, on looks, which also join crops, mirrored and grey copies.
Candidate pairs by pixels come from ``max_distance + 1`` bit bands (two hashes that differ
in at most that many bits agree exactly on at least one band), so a large library is not
compared pair by pair; candidates are then checked exactly.
"""

from __future__ import annotations

import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from dam_pipeline.keys import video_of
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


LOOKS_ALIKE = 0.86
"""Two photos whose visual vectors are at least this similar are one picture (a crop, a
mirrored, grey, darker, turned or re-encoded copy). Chosen on the even-id half of
``coco_dev`` and its edited copies as just above the most similar pair of different photos
there (0.859); on the odd half it joined no pair of 51,030 different photos and 97–100% of
each kind of copy, except a quarter cut from one corner (8%): ``bench.similar_quality``."""
MAX_LOOKS_IMAGES = 10_000
"""At most this many photos are compared by looks in one request (their vectors are read
from the visual index: 50 MB); beyond it only pixels are compared (narrow by prefix)."""


@dataclass(frozen=True)
class DuplicateGroup:
    keys: list[str]
    max_distance: int | None
    """The largest Hamming distance between two members joined by pixels (0: the same
    picture); None when looks alone joined them."""
    looks: float | None = None
    """The lowest visual similarity of the members joined by looks (a crop, a mirrored or
    grey copy, which pixels miss); None when pixels alone joined them."""

    @property
    def similarity(self) -> float:
        scores = [] if self.max_distance is None else [1 - self.max_distance / HASH_BITS]
        scores += [] if self.looks is None else [self.looks]
        return round(min(scores), 4)

    @property
    def joined_by(self) -> str:
        """``pixels``, ``looks`` or ``pixels and looks``."""
        ways = [
            w for w, v in (("pixels", self.max_distance), ("looks", self.looks)) if v is not None
        ]
        return " and ".join(ways)

    def to_dict(self) -> dict:
        """What every front end shows of a group (the CLI's and the API's JSON, the job)."""
        return {"keys": self.keys, "similarity": self.similarity, "by": self.joined_by}


def duplicates_in(
    store: VectorStore,
    partitions: Iterable[str],
    max_distance: int = 6,
    visual_store: VectorStore | None = None,
    min_looks: float = LOOKS_ALIKE,
) -> list[DuplicateGroup]:
    """Near-duplicate groups among the indexed images of these partitions: by pixels, and
    by looks when a visual index is given."""
    stored = {p: store.list_partition(p) for p in partitions}
    metadata = [meta for found in stored.values() for meta in found.values()]
    pairs: list[tuple[str, str, float]] = []
    photos = [(vid, p) for p, found in stored.items() for vid, m in found.items()
              if not m.get("video_key")]  # fmt: skip
    if visual_store is not None and 1 < len(photos) <= MAX_LOOKS_IMAGES:
        fetched = visual_store.fetch(photos)
        ids = [vid for vid, _ in photos if vid in fetched]
        keys = {vid: str(stored[p][vid]["key"]) for vid, p in photos}
        vectors = np.stack([fetched[vid][0] for vid in ids]) if ids else np.zeros((0, 1))
        pairs = [(keys[ids[i]], keys[ids[j]], s) for i, j, s in looks_alike(vectors, min_looks)]
    return near_duplicate_groups(metadata, max_distance, pairs)


def looks_alike(
    vectors: np.ndarray, threshold: float, block: int = 1024
) -> Iterable[tuple[int, int, float]]:
    """Index pairs (i < j) whose vectors' similarity is at least ``threshold``, block by
    block (memory: ``block`` rows against all)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    for start in range(0, len(vectors), block):
        scores = vectors[start : start + block] @ vectors.T
        for i, j in zip(*np.nonzero(scores >= threshold), strict=True):
            if start + i < j:
                yield int(start + i), int(j), round(float(scores[i, j]), 4)


def near_duplicate_groups(
    metadata: Iterable[Metadata],
    max_distance: int = 6,
    looks_pairs: Iterable[tuple[str, str, float]] = (),
) -> list[DuplicateGroup]:
    """Groups of images whose perceptual hashes differ by at most ``max_distance`` bits
    (similarity = 1 - distance/64; 6 bits is about 0.9), largest groups first.

    Videos are grouped as videos: two are near duplicates (the same clip re-encoded) when
    at least half the shots of the shorter one match a shot of the other. Blank shots are
    never indexed, so black openings do not make two videos alike; a shot that looks like
    a photo does not make the video a duplicate of it ("similar" finds that)."""
    items = [
        (str(m["key"]), str(m.get("video_key", "")), str(m["dhash"]))
        for m in metadata
        if m.get("dhash")
    ]
    shots_of: dict[str, int] = defaultdict(int)
    for _, video, _ in items:
        if video:
            shots_of[video] += 1
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    worst: dict[tuple[str, str], int] = {}
    matched: dict[tuple[str, str], set[str]] = defaultdict(set)
    for i, j in _close_pairs([digest for _, _, digest in items], max_distance):
        (key_i, video_i, hash_i), (key_j, video_j, hash_j) = items[i], items[j]
        if bool(video_i) != bool(video_j) or (video_i and video_i == video_j):
            continue  # a photo and a shot, or two shots of one video
        a, b = sorted((video_i or key_i, video_j or key_j))
        worst[(a, b)] = max(worst.get((a, b), 0), hamming(hash_i, hash_j))
        if video_i:  # which shots of each video found a match
            matched[(a, b)].update((key_i, key_j))
    for a, b in worst:
        if a in shots_of:
            shorter = min(shots_of[a], shots_of[b])
            videos = [video_of(k) for k in matched[(a, b)]]
            if min(videos.count(a), videos.count(b)) * 2 < shorter:
                continue
        parent[root(a)] = root(b)
    alike: dict[tuple[str, str], float] = {}
    for a, b, score in looks_pairs:  # photos only: a shot's looks are its video's business
        alike[(a, b)] = score
        parent[root(a)] = root(b)
    groups: dict[str, list[str]] = defaultdict(list)
    for node in list(parent):
        groups[root(node)].append(node)
    result = []
    for members in groups.values():
        if len(members) < 2:
            continue
        inside = set(members)
        distances = [d for (a, b), d in worst.items() if a in inside and b in inside]
        scores = [s for (a, b), s in alike.items() if a in inside and b in inside]
        result.append(
            DuplicateGroup(
                sorted(members),
                max(distances) if distances else None,
                min(scores) if scores else None,
            )
        )
    return sorted(result, key=lambda g: (-len(g.keys), g.keys))


def _close_pairs(digests: list[str], max_distance: int) -> Iterable[tuple[int, int]]:
    """Index pairs whose hashes differ by at most ``max_distance`` bits, each once: two such
    hashes agree exactly on at least one of ``max_distance + 1`` bit bands."""
    bands = max_distance + 1
    edges = [round(b * HASH_BITS / bands) for b in range(bands + 1)]
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for index, digest in enumerate(digests):
        value = int(digest, 16)
        for band in range(bands):
            width = edges[band + 1] - edges[band]
            buckets[(band, (value >> edges[band]) & ((1 << width) - 1))].append(index)
    seen: set[tuple[int, int]] = set()
    for members in buckets.values():
        for position, i in enumerate(members):
            for j in members[position + 1 :]:
                pair = (min(i, j), max(i, j))
                if pair not in seen and hamming(digests[i], digests[j]) <= max_distance:
                    seen.add(pair)
                    yield pair
