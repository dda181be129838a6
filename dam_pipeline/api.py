"""The Python API: search and ask, importable without Dagster.

    from dam_pipeline.api import search, ask
    hits = search("a cat on a sofa", top_k=5)
    answer = ask("which photos show coffee?")

Components are chosen by the same environment variables as the pipeline (see Settings).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from dam_pipeline.embedding import Embedder
from dam_pipeline.keys import encode_prefix
from dam_pipeline.reasoning import Answer, Reasoner, build_reasoner
from dam_pipeline.retrieval import Hit
from dam_pipeline.retrieval import search as _search
from dam_pipeline.settings import Settings
from dam_pipeline.sources import Source
from dam_pipeline.vector_stores import VectorStore, open_vector_store


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


def _components(settings: Settings | None) -> tuple[Settings, Embedder, VectorStore, Source]:
    settings = settings or Settings.from_env()
    return (
        settings,
        settings.build_embedder(),
        open_index(settings),
        settings.open_source(),
    )


def search(
    question: str,
    top_k: int = 5,
    prefixes: Sequence[str] | None = None,
    min_score: float = 0.0,
    settings: Settings | None = None,
) -> list[Hit]:
    """Images that match ``question``, best first; ``prefixes`` limits the bucket folders."""
    _, embedder, store, source = _components(settings)
    partitions = [encode_prefix(p) for p in prefixes] if prefixes else None
    return _search(
        question,
        embedder,
        store,
        top_k=top_k,
        partitions=partitions,
        min_score=min_score,
        url_for=source.url_for,
    )


def ask(
    question: str,
    top_k: int = 5,
    prefixes: Sequence[str] | None = None,
    settings: Settings | None = None,
    reasoner: Reasoner | None = None,
) -> Answer:
    """Search, then answer from the retrieved captions only, citing them as [S1]..[Sn]."""
    settings = settings or Settings.from_env()
    hits = search(question, top_k=top_k, prefixes=prefixes, settings=settings)
    return (reasoner or build_reasoner(settings.reasoner)).answer(question, hits)
