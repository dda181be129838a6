"""The pipeline's memory between runs, and where each part of it lives.

| part                 | embedded profile (default)      | shared profile                        |
|----------------------|---------------------------------|---------------------------------------|
| manifests            | ``<data_dir>/manifests`` JSONL  | Postgres ``dam_manifests``            |
| content cache        | ``<data_dir>/cache`` SQLite     | Postgres ``dam_caption_cache`` / ...  |
| keyword index        | ``<data_dir>/index`` SQLite FTS5| Postgres ``dam_keywords`` (tsvector)  |
| normalized images    | ``<data_dir>/objects``          | ``DAM_OBJECT_STORE`` (S3)             |
| request rate limits  | ``<data_dir>/cache`` SQLite     | Postgres ``dam_rate_limits``          |
| spend ledger         | ``<data_dir>/cache`` SQLite     | Postgres ``dam_spend``                |
| faces, people, names | ``<data_dir>/people`` SQLite    | Postgres ``dam_faces``, ``dam_persons``|
| provider outages     | ``<data_dir>/cache`` SQLite     | Postgres ``dam_outages``              |

The shared profile (``DAM_STATE_URL`` + ``DAM_OBJECT_STORE``) keeps nothing on a worker's
disk, so runs of one library can go to many machines. The vector index is chosen apart
(``DAM_VECTOR_STORE``); the shared profile needs one every machine reaches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dam_pipeline.cache import ContentCache, PostgresContentCache, SqliteContentCache
from dam_pipeline.costs import PostgresSpendLedger, SpendLedger, SqliteSpendLedger
from dam_pipeline.faces.people_store import PeopleStore, PostgresPeopleStore, SqlitePeopleStore
from dam_pipeline.imaging.object_store import FolderObjectStore, ObjectStore, S3ObjectStore
from dam_pipeline.manifests import FolderManifestStore, ManifestStore, PostgresManifestStore
from dam_pipeline.outages import OutageBoard, PostgresOutageBoard, SqliteOutageBoard
from dam_pipeline.postgres import database
from dam_pipeline.rate_limit import PostgresRateLimiter, RateLimiter, SqliteRateLimiter
from dam_pipeline.retrieval.keyword_index import (
    KeywordIndex,
    PostgresKeywordIndex,
    SqliteKeywordIndex,
)


@dataclass
class PipelineState:
    """Opens each store on first use, from one description of where state lives."""

    manifests_dir: Path
    objects_dir: Path
    cache_file: Path
    keywords_file: Path
    rate_limits_file: Path
    spend_file: Path | None = None
    people_file: Path | None = None
    state_url: str = ""
    object_store_url: str = ""
    s3_client: Callable[[], Any] | None = None
    """Makes the S3 client of the object store, only if it is used (building one costs)."""

    @property
    def shared(self) -> bool:
        return bool(self.state_url)

    @cached_property
    def manifests(self) -> ManifestStore:
        if self.state_url:
            return PostgresManifestStore(database(self.state_url))
        return FolderManifestStore(self.manifests_dir)

    @cached_property
    def cache(self) -> ContentCache:
        if self.state_url:
            return PostgresContentCache(database(self.state_url))
        return SqliteContentCache(self.cache_file)

    @cached_property
    def objects(self) -> ObjectStore:
        if self.object_store_url:
            if self.s3_client is None:
                raise ValueError("DAM_OBJECT_STORE is an S3 URL but no S3 client was given")
            return S3ObjectStore(self.object_store_url, self.s3_client())
        return FolderObjectStore(self.objects_dir)

    def keyword_index(self, create: bool = True) -> KeywordIndex | None:
        """The keyword index; with ``create=False``, None where none was ever written (a
        read must not create an empty index in the data directory)."""
        if self.state_url:
            return PostgresKeywordIndex(database(self.state_url))
        if not create and not self.keywords_file.exists():
            return None
        return SqliteKeywordIndex(self.keywords_file)

    @cached_property
    def spend(self) -> SpendLedger:
        """What paid providers were asked and what it cost, per run and partition."""
        if self.state_url:
            return PostgresSpendLedger(database(self.state_url))
        return SqliteSpendLedger(self.spend_file or self.cache_file.with_name("spend.sqlite"))

    def rate_limiter(self, name: str, requests_per_minute: float) -> RateLimiter:
        """The request schedule ``name``, shared with every run that uses the same state."""
        if self.state_url:
            return PostgresRateLimiter(self.state_url, name, requests_per_minute)
        return SqliteRateLimiter(self.rate_limits_file, name, requests_per_minute)

    @cached_property
    def people(self) -> PeopleStore:
        """Faces, persons and names: with the library's state, so names are shared."""
        if self.state_url:
            return PostgresPeopleStore(database(self.state_url))
        return SqlitePeopleStore(self.people_file or self.cache_file.with_name("people.sqlite"))

    @cached_property
    def outages(self) -> OutageBoard:
        """Provider endpoints known to be down, shared by every run using this state."""
        if self.state_url:
            return PostgresOutageBoard(self.state_url)
        return SqliteOutageBoard(self.rate_limits_file)
