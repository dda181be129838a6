"""The Python API, importable without Dagster: one function per thing a user does.

    from dam_pipeline import api
    api.search("a cat on a sofa", top_k=5, prefixes=["pets & animals"], tags=["cat"])
    api.ask("which photos show coffee?").text
    api.similar(key="pets & animals/chelsea the cat.jpg")   # more like an indexed image
    api.similar(image="~/Downloads/new.jpg")                # ... or like a new image file
    api.duplicates(max_distance=6)                          # near-duplicate groups

Each function reads the configuration from the environment (see ``Settings``) unless given
``settings``, and runs the same code as the CLI, the Dagster query job and the web app
(``dam_pipeline.library.Library``). The default search mode is ``DAM_SEARCH_MODE`` (dense).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from dam_pipeline.library import EmptyIndexError, Library, QueryError
from dam_pipeline.reasoning import Answer
from dam_pipeline.retrieval import Hits
from dam_pipeline.retrieval.similar import DuplicateGroup
from dam_pipeline.settings import Settings

__all__ = ["EmptyIndexError", "QueryError", "ask", "duplicates", "prefixes", "search", "similar"]


def _library(settings: Settings | None) -> Library:
    return Library(settings or Settings.from_env())


def search(
    question: str,
    *,
    top_k: int = 5,
    prefixes: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    min_score: float | None = None,
    mode: str | None = None,
    sort: str = "relevance",
    settings: Settings | None = None,
) -> Hits:
    """Images that match ``question``, best first (``sort="date"``: newest first); filters:
    prefixes, tags (all required), a date range (taken, else modified) and a minimum
    similarity."""
    return _library(settings).search(
        question,
        top_k=top_k,
        prefixes=prefixes,
        tags=tags,
        date_from=date_from,
        date_to=date_to,
        min_score=min_score,
        mode=mode,
        sort=sort,
    )


def ask(question: str, *, settings: Settings | None = None, **search_options) -> Answer:
    """Search (same options), then answer from the retrieved captions only, citing them."""
    return _library(settings).ask(question, **search_options)


def similar(
    *,
    key: str | None = None,
    image: bytes | str | Path | None = None,
    top_k: int = 5,
    prefixes: Sequence[str] | None = None,
    min_score: float | None = None,
    settings: Settings | None = None,
) -> Hits:
    """Images most like an indexed one (``key``) or a new image (bytes or a path)."""
    return _library(settings).similar(
        key=key, image=image, top_k=top_k, prefixes=prefixes, min_score=min_score
    )


def duplicates(
    *,
    prefixes: Sequence[str] | None = None,
    max_distance: int = 6,
    settings: Settings | None = None,
) -> list[DuplicateGroup]:
    """Groups of near-duplicate images (re-encoded, resized or lightly edited copies)."""
    return _library(settings).duplicates(prefixes=prefixes, max_distance=max_distance)


def prefixes(*, settings: Settings | None = None) -> list[str]:
    """The prefixes that have indexed images."""
    return _library(settings).prefixes()
