"""The Python API, importable without Dagster: one function per thing a user does.

    from dam_pipeline import api
    api.search("a cat on a sofa", top_k=5, prefixes=["pets & animals"], tags=["cat"])
    api.find(api.SearchRequest.of("a cat", sort="date"))  # the request every front end builds
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
from dam_pipeline.search_request import DEFAULT_TOP_K, DUPLICATE_DISTANCE, SearchRequest
from dam_pipeline.settings import Settings

__all__ = [
    "EmptyIndexError",
    "QueryError",
    "SearchRequest",
    "answer",
    "ask",
    "duplicates",
    "find",
    "prefixes",
    "search",
    "similar",
]


def _library(settings: Settings | None) -> Library:
    return Library(settings or Settings.from_env())


def search(
    question: str,
    *,
    top_k: int | None = None,
    prefixes: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    min_score: float | None = None,
    mode: str | None = None,
    sort: str | None = None,
    settings: Settings | None = None,
) -> Hits:
    """Images that match ``question``, best first (``sort="date"``: newest first); filters:
    prefixes, tags (all required), a date range (taken, else modified) and a minimum
    similarity. None means the default of ``SearchRequest``."""
    request = SearchRequest.of(
        question, top_k=top_k, prefixes=prefixes, tags=tags, date_from=date_from,
        date_to=date_to, min_score=min_score, mode=mode, sort=sort,
    )  # fmt: skip
    return find(request, settings=settings)


def find(request: SearchRequest, *, settings: Settings | None = None) -> Hits:
    """The images a ``SearchRequest`` asks for (what every front end builds)."""
    return _library(settings).find(request)


def ask(question: str, *, settings: Settings | None = None, **options) -> Answer:
    """Search (the options of ``search``), then answer from the retrieved captions only,
    citing them."""
    return answer(SearchRequest.of(question, **options), settings=settings)


def answer(request: SearchRequest, *, settings: Settings | None = None) -> Answer:
    """The answer to a ``SearchRequest``'s question, from the images it finds."""
    return _library(settings).answer(request)


def similar(
    *,
    key: str | None = None,
    image: bytes | str | Path | None = None,
    top_k: int = DEFAULT_TOP_K,
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
    max_distance: int = DUPLICATE_DISTANCE,
    settings: Settings | None = None,
) -> list[DuplicateGroup]:
    """Groups of near-duplicate images (re-encoded, resized or lightly edited copies)."""
    return _library(settings).duplicates(prefixes=prefixes, max_distance=max_distance)


def prefixes(*, settings: Settings | None = None) -> list[str]:
    """The prefixes that have indexed images."""
    return _library(settings).prefixes()
