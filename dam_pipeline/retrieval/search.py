"""Dense retrieval over the vector index, with partition filters and a score floor."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dam_pipeline.embedding import Embedder
from dam_pipeline.vector_stores import IncompatibleIndexError, VectorStore
from dam_pipeline.vector_stores.base import reindex_hint


@dataclass(frozen=True)
class Hit:
    rank: int
    key: str
    score: float
    caption: str
    partition: str
    url: str
    tags: list[str] = field(default_factory=list)
    vector_id: str = ""


def search(
    question: str,
    embedder: Embedder,
    store: VectorStore,
    top_k: int = 5,
    partitions: Sequence[str] | None = None,
    min_score: float = 0.0,
    url_for: Callable[[str], str] | None = None,
) -> list[Hit]:
    """The ``top_k`` images whose captions are closest to ``question`` (cosine), best first;
    hits under ``min_score`` are dropped rather than returned as noise."""
    question = question.strip()
    if not question:
        raise ValueError("The question is empty: describe the image you are looking for.")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    query_vector = embedder.embed_query(question)
    bound = store.binding()
    if bound is not None and bound != (embedder.fingerprint, int(query_vector.shape[0])):
        raise IncompatibleIndexError(
            reindex_hint(bound[0], bound[1], embedder.fingerprint, int(query_vector.shape[0]))
        )
    raw = store.query(query_vector, top_k=top_k, partitions=partitions)
    hits = []
    for hit in raw:
        if hit.score < min_score:
            continue
        key = str(hit.metadata.get("key", ""))
        hits.append(
            Hit(
                rank=len(hits) + 1,
                key=key,
                score=round(hit.score, 4),
                caption=str(hit.metadata.get("caption", hit.document)),
                partition=str(hit.metadata.get("partition", "")),
                url=url_for(key) if url_for else key,
                tags=str(hit.metadata.get("tags", "")).split(),
                vector_id=hit.id,
            )
        )
    return hits
