"""The Python API, importable without Dagster: one function per thing a user does.

    from dam_pipeline import api
    api.search("a cat on a sofa", top_k=5, prefixes=["pets"], tags=["cat"])
    api.ask("which photos show coffee?").text
    api.similar(key="pets/chelsea.jpg")          # more like this indexed image
    api.similar(image="~/Downloads/new.jpg")     # ... or like a new image file
    api.duplicates(max_distance=6)               # near-duplicate groups

Components are chosen by the same environment variables as the pipeline (see Settings).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from datetime import date
from pathlib import Path

from dam_pipeline.imaging import ObjectStore
from dam_pipeline.keys import encode_prefix, vector_id
from dam_pipeline.reasoning import Answer, Reasoner
from dam_pipeline.retrieval import Filters, Hit, KeywordIndex
from dam_pipeline.retrieval import search as _search
from dam_pipeline.retrieval.similar import (
    DuplicateGroup,
    duplicates_in,
    similar_to_indexed,
    similar_to_vector,
    vector_for_image,
)
from dam_pipeline.settings import Settings
from dam_pipeline.sources.base import partition_of
from dam_pipeline.vector_stores import VectorStore, open_vector_store

VISION_IMAGES = 3
VISION_SIDE = 512


def open_index(settings: Settings) -> VectorStore:
    """The configured vector index, outside Dagster (secrets come from the environment)."""
    return open_vector_store(
        settings.vector_store,
        collection=settings.collection,
        path=settings.chroma_path,
        url=settings.chroma_url or None,
        pinecone_api_key=os.environ.get("PINECONE_API_KEY", ""),
        pinecone_host=settings.pinecone_host,
        pinecone_index_name=settings.pinecone_index_name,
        namespace=settings.pinecone_namespace,
    )


def open_keywords(settings: Settings) -> KeywordIndex | None:
    path = settings.layout.keywords
    return KeywordIndex(path) if path.exists() else None


def filters(
    prefixes: Sequence[str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    tags: Sequence[str] | None = None,
    min_score: float = 0.0,
) -> Filters:
    return Filters(tuple(prefixes or ()), date_from, date_to, tuple(tags or ()), min_score)


def search(
    question: str,
    top_k: int = 5,
    prefixes: Sequence[str] | None = None,
    min_score: float = 0.0,
    settings: Settings | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    tags: Sequence[str] | None = None,
    mode: str | None = None,
) -> list[Hit]:
    """Images that match ``question``, best first. ``mode``: hybrid (default), dense or
    keyword; filters: bucket prefixes, date range (taken, else modified), tags, min score."""
    settings = settings or Settings.from_env()
    return _search(
        question,
        settings.build_embedder(),
        open_index(settings),
        top_k=top_k,
        filters=filters(prefixes, date_from, date_to, tags, min_score),
        mode=mode or settings.search_mode,
        keywords=open_keywords(settings),
        url_for=settings.open_source().url_for,
    )


def thumbnails(
    settings: Settings, hits: Sequence[Hit], count: int = VISION_IMAGES
) -> dict[int, bytes]:
    """Source number -> small JPEG of the normalized image, for vision reasoning."""
    store = ObjectStore(settings.layout.objects)
    images = {}
    for number, hit in enumerate(hits[:count], start=1):
        if hit.normalized_hash and store.has(hit.normalized_hash):
            image = store.open_image(hit.normalized_hash, min_side=VISION_SIDE)
            image.thumbnail((VISION_SIDE, VISION_SIDE))
            out = io.BytesIO()
            image.save(out, format="JPEG", quality=80)
            images[number] = out.getvalue()
    return images


def ask(
    question: str,
    top_k: int = 5,
    prefixes: Sequence[str] | None = None,
    settings: Settings | None = None,
    reasoner: Reasoner | None = None,
    **search_options,
) -> Answer:
    """Search, then answer from the retrieved captions only, citing them as [S1]..[Sn]."""
    settings = settings or Settings.from_env()
    hits = search(question, top_k=top_k, prefixes=prefixes, settings=settings, **search_options)
    reasoner = reasoner or settings.build_reasoner()
    images = thumbnails(settings, hits) if settings.reasoner_vision else None
    return reasoner.answer(question, hits, images)


def similar(
    key: str | None = None,
    image: str | Path | None = None,
    top_k: int = 5,
    settings: Settings | None = None,
    prefixes: Sequence[str] | None = None,
    min_score: float = 0.0,
) -> list[Hit]:
    """Images most like an indexed one (``key``) or like a new image file (``image``), which
    is normalized, captioned and embedded the way the pipeline would, but not stored."""
    if (key is None) == (image is None):
        raise ValueError("Give either the key of an indexed image or the path of an image file.")
    settings = settings or Settings.from_env()
    store = open_index(settings)
    source = settings.open_source()
    narrowed = filters(prefixes, min_score=min_score)
    if key is not None:
        partition = encode_prefix(partition_of(key, settings.partition_depth))
        return similar_to_indexed(
            vector_id(source.source_id, key), partition, store, top_k, narrowed, source.url_for
        )
    data = Path(image).expanduser().read_bytes()
    vector = vector_for_image(
        data, settings.max_side, settings.build_captioner(), settings.build_embedder()
    )
    return similar_to_vector(vector, store, top_k, narrowed, url_for=source.url_for)


def duplicates(
    prefixes: Sequence[str] | None = None, max_distance: int = 6, settings: Settings | None = None
) -> list[DuplicateGroup]:
    """Groups of near-duplicate images (re-encoded, resized or lightly edited copies)."""
    settings = settings or Settings.from_env()
    store = open_index(settings)
    keywords = open_keywords(settings)
    if prefixes:
        partitions = [encode_prefix(p) for p in prefixes]
    else:
        partitions = keywords.partitions() if keywords else []
    return duplicates_in(store, partitions, max_distance)
