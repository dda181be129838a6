"""The indexed library, opened: one method per user action (search, ask, similar,
duplicates, prefixes). The Python API, the CLI, the Dagster query job and the web app all
call these, so a question is answered the same way wherever it is asked.

Components are built from ``Settings`` on first use and kept for the life of the object;
the Dagster layer may hand in components it built from its resources instead.
"""

from __future__ import annotations

import base64
import io
import mimetypes
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from functools import cached_property
from pathlib import Path

from dam_pipeline import components
from dam_pipeline.captioning import Captioner
from dam_pipeline.embedding import Embedder
from dam_pipeline.imaging import NormalizeError, ObjectStore
from dam_pipeline.keys import decode_prefix, encode_prefix, vector_id
from dam_pipeline.reasoning import Answer, Reasoner
from dam_pipeline.retrieval import MODES, Filters, Hit, Hits, KeywordIndex, search
from dam_pipeline.retrieval.similar import (
    DuplicateGroup,
    duplicates_in,
    similar_to_indexed,
    similar_to_vector,
    vector_for_image,
)
from dam_pipeline.settings import Settings
from dam_pipeline.sources import Source
from dam_pipeline.sources.base import partition_of
from dam_pipeline.state import PipelineState
from dam_pipeline.vector_stores import VectorStore

MAX_TOP_K = 100
PIPELINE_ASSETS = ("raw_images", "normalized_images", "captions", "embeddings", "vector_index")
VISION_IMAGES = 3
VISION_SIDE = 512
NOTEBOOK_SIDE = 180


class QueryError(ValueError):
    """The request cannot be answered as asked (empty question, unknown prefix ...)."""


class NotFoundError(QueryError):
    """The key, prefix or thumbnail asked for is not in the index."""


class EmptyIndexError(RuntimeError):
    """Nothing has been indexed yet."""


DIGEST = re.compile(r"[0-9a-f]{64}")
RASTER_TYPES = {
    "image/jpeg", "image/png", "image/gif", "image/webp", "image/tiff", "image/bmp",
    "image/heic", "image/heif", "image/avif",
}  # fmt: skip
"""Originals are served with their own type only if it is one of these (never SVG or HTML,
which a browser would run); anything else is a download."""


@dataclass(frozen=True)
class ImageDetail:
    """Everything the index knows about one image."""

    key: str
    prefix: str
    partition: str
    caption: str
    tags: list[str]
    text: str
    """Text read off the image."""
    date: str
    date_taken: str
    last_modified: str
    captioner: str
    normalized_hash: str
    url: str
    assets: list[str] = field(default_factory=lambda: list(PIPELINE_ASSETS))
    """The Dagster assets (of partition ``partition``) it went through."""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Original:
    """An original as the source holds it: a URL to send the user to, or its bytes."""

    url: str = ""
    data: bytes = b""
    media_type: str = "application/octet-stream"


class Library:
    def __init__(
        self,
        settings: Settings,
        *,
        source: Source | None = None,
        index: VectorStore | None = None,
        embedder: Embedder | None = None,
        captioner: Captioner | None = None,
        reasoner: Reasoner | None = None,
    ) -> None:
        self.settings = settings
        self._given = {
            "source": source,
            "index": index,
            "embedder": embedder,
            "captioner": captioner,
            "reasoner": reasoner,
        }
        self._keywords: KeywordIndex | None = None

    # Components, built on first use

    @cached_property
    def source(self) -> Source:
        return self._given["source"] or components.open_source(self.settings)

    @cached_property
    def index(self) -> VectorStore:
        return self._given["index"] or components.open_vector_store(self.settings)

    @cached_property
    def embedder(self) -> Embedder:
        return self._given["embedder"] or components.build_embedder(self.settings)

    @cached_property
    def captioner(self) -> Captioner:
        return self._given["captioner"] or components.build_captioner(self.settings)

    @cached_property
    def reasoner(self) -> Reasoner:
        return self._given["reasoner"] or components.build_reasoner(self.settings)

    @cached_property
    def state(self) -> PipelineState:
        return components.open_state(self.settings)

    @cached_property
    def objects(self) -> ObjectStore:
        return self.state.objects

    @property
    def keywords(self) -> KeywordIndex | None:
        """The keyword index, once an ingest has created it (a server started before the
        first ingest finds it then, without a restart)."""
        if self._keywords is None:
            self._keywords = self.state.keyword_index(create=False)
        return self._keywords

    # What the library holds

    def require_index(self) -> None:
        """Refuse to query an index that was never built, without creating anything."""
        empty = (
            not self.settings.embedded_index_exists()
            or self.keywords is None
            or self.index.count() == 0
        )
        if empty:
            raise EmptyIndexError(
                f"The index is empty ({self.settings.data_dir}): run `dam ingest` first."
            )

    def partitions(self) -> list[str]:
        """Partition keys that have indexed images."""
        return self.keywords.partitions() if self.keywords else []

    def prefixes(self) -> list[str]:
        """The prefixes that have indexed images, as the user writes them."""
        return [decode_prefix(key) for key in self.partitions()]

    def filters(
        self,
        prefixes: Sequence[str] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        tags: Sequence[str] | None = None,
        min_score: float = 0.0,
    ) -> Filters:
        """Filters, checked: an unknown prefix is an error naming the known ones."""
        prefixes = [p.strip("/") for p in prefixes or ()]
        known = set(self.partitions())
        unknown = [p for p in prefixes if encode_prefix(p) not in known]
        if unknown:
            listing = ", ".join(repr(p) for p in self.prefixes()) or "none"
            raise QueryError(f"Unknown prefix {unknown[0]!r}: the indexed prefixes are {listing}.")
        if date_from and date_to and date_from > date_to:
            raise QueryError(f"The date range is empty: {date_from} is after {date_to}.")
        return Filters(tuple(prefixes), date_from, date_to, tuple(tags or ()), min_score)

    # User actions

    def search(
        self,
        question: str,
        *,
        top_k: int = 5,
        prefixes: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        min_score: float | None = None,
        mode: str | None = None,
    ) -> Hits:
        """Images that match ``question``, best first. ``mode``: dense, hybrid or keyword
        (default: ``DAM_SEARCH_MODE``); ``min_score`` default: ``DAM_MIN_SCORE``."""
        question = _checked_question(question)
        _check_top_k(top_k)
        mode = mode or self.settings.search_mode
        if mode not in MODES:
            raise QueryError(f"Unknown search mode {mode!r}: use one of {', '.join(MODES)}.")
        self.require_index()
        found = search(
            question,
            self.embedder,
            self.index,
            top_k=top_k,
            filters=self.filters(prefixes, date_from, date_to, tags, self._min_score(min_score)),
            mode=mode,
            keywords=self.keywords,
            url_for=self.source.url_for,
            keyword_weight=self.settings.keyword_weight,
        )
        return self._shown(found)

    def ask(self, question: str, **search_options) -> Answer:
        """Search, then answer from the retrieved captions only, citing them as [S1]..[Sn];
        a vision reasoner also sees the top images."""
        hits = self.search(question, **search_options)
        images = self.thumbnails(hits) if self.settings.reasoner_vision else None
        return self.reasoner.answer(question.strip(), hits, images)

    def similar(
        self,
        *,
        key: str | None = None,
        image: bytes | str | Path | None = None,
        top_k: int = 5,
        prefixes: Sequence[str] | None = None,
        min_score: float | None = None,
    ) -> Hits:
        """Images most like an indexed one (``key``) or like a new image (bytes or a file
        path), which is normalized, captioned and embedded as the pipeline would, not
        stored."""
        if (key is None) == (image is None):
            raise QueryError("Give either the key of an indexed image or an image file.")
        _check_top_k(top_k)
        self.require_index()
        narrowed = self.filters(prefixes, min_score=self._min_score(min_score))
        if key is not None:
            partition = encode_prefix(partition_of(key, self.settings.partition_depth))
            found = similar_to_indexed(
                vector_id(self.source.source_id, key),
                partition,
                self.index,
                top_k,
                narrowed,
                self.source.url_for,
            )
            if found is None:
                raise NotFoundError(f"{key!r} is not in the index: check the key, or ingest it.")
            return self._shown(found)
        data = image if isinstance(image, bytes) else Path(image).expanduser().read_bytes()
        try:
            vector = vector_for_image(data, self.settings.max_side, self.captioner, self.embedder)
        except NormalizeError as exc:
            raise QueryError(f"The file is not an image that can be read: {exc}.") from None
        return self._shown(
            similar_to_vector(vector, self.index, top_k, narrowed, url_for=self.source.url_for)
        )

    def duplicates(
        self, *, prefixes: Sequence[str] | None = None, max_distance: int = 6
    ) -> list[DuplicateGroup]:
        """Groups of near-duplicate images (re-encoded, resized or lightly edited copies)."""
        if not 0 <= max_distance <= 32:
            raise QueryError(f"max_distance is in bits of 64, from 0 to 32, not {max_distance}.")
        self.require_index()
        self.filters(prefixes)  # refuses unknown prefixes
        partitions = [encode_prefix(p) for p in prefixes] if prefixes else self.partitions()
        return duplicates_in(self.index, partitions, max_distance)

    def _shown(self, hits: Sequence[Hit]) -> Hits:
        """Hits that can show their thumbnails (in a notebook)."""
        return Hits(replace(hit, thumbnail=self.thumbnail_uri) for hit in hits)

    def thumbnail_uri(self, digest: str) -> str:
        """A small thumbnail as a data URI (empty if the image is not in the store)."""
        try:
            data = self.thumbnail(digest, side=NOTEBOOK_SIDE)
        except NotFoundError:
            return ""
        return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")

    def _min_score(self, asked: float | None) -> float:
        return self.settings.min_score if asked is None else asked

    def vanished_prefixes(self) -> list[str]:
        """Indexed prefixes the source no longer lists: every object under them was deleted
        (or the listing lost them). Their vectors stay searchable until ``forget_prefix``."""
        listed = {encode_prefix(p) for p in self.source.list_prefixes()}
        return [decode_prefix(key) for key in self.partitions() if key not in listed]

    def forget_prefix(self, prefix: str) -> int:
        """Remove a vanished prefix: its vectors, keyword documents and manifests (the
        explicit way to apply a mass deletion). Returns how many vectors were removed."""
        prefix = prefix.strip("/")
        if prefix not in self.vanished_prefixes():
            raise QueryError(
                f"{prefix!r} is not a vanished prefix (vanished: "
                f"{', '.join(repr(p) for p in self.vanished_prefixes()) or 'none'}); a prefix "
                "that still holds objects is synced by `dam ingest`."
            )
        partition = encode_prefix(prefix)
        vectors = list(self.index.list_partition(partition))
        if self.keywords is not None:  # the commit record first: readers stop showing them
            self.keywords.delete(sorted(self.keywords.ids(partition)))
        self.index.delete(vectors, partition)
        for asset in PIPELINE_ASSETS:
            self.state.manifests.delete(asset, partition)
        return len(vectors)

    def detail(self, key: str) -> ImageDetail:
        """What the index holds about ``key``; ``NotFoundError`` if it is not indexed."""
        self.require_index()
        vid = vector_id(self.source.source_id, key)
        partition = encode_prefix(partition_of(key, self.settings.partition_depth))
        found = self.index.fetch([(vid, partition)])
        if vid not in found:
            raise NotFoundError(f"{key!r} is not in the index: check the key, or ingest it.")
        _, meta, _ = found[vid]
        return ImageDetail(
            key=str(meta.get("key", key)),
            prefix=decode_prefix(str(meta.get("partition", partition))),
            partition=str(meta.get("partition", partition)),
            caption=str(meta.get("caption", "")),
            tags=str(meta.get("tags", "")).split(),
            text=str(meta.get("ocr_text", "")),
            date=str(meta.get("date", "")),
            date_taken=str(meta.get("date_taken", "")),
            last_modified=str(meta.get("last_modified", "")),
            captioner=str(meta.get("captioner", "")),
            normalized_hash=str(meta.get("normalized_hash", "")),
            url=self.source.url_for(key),
        )

    def original(self, key: str) -> Original:
        """The original of an indexed image: a URL for a bucket (presigned or public), the
        bytes for a folder. Only indexed keys are served, whatever the request holds."""
        detail = self.detail(key)
        if detail.url.startswith(("https://", "http://")):
            return Original(url=detail.url)
        media_type = mimetypes.guess_type(detail.key)[0] or ""
        return Original(
            data=self.source.read_bytes(detail.key),
            media_type=media_type if media_type in RASTER_TYPES else "application/octet-stream",
        )

    def thumbnail(self, digest: str, side: int = 320) -> bytes:
        """A JPEG of at most ``side`` pixels of a normalized image, by its content hash
        (the only thing a request names: never a path)."""
        if not DIGEST.fullmatch(digest or "") or not self.objects.has(digest):
            raise NotFoundError("No such thumbnail.")
        image = self.objects.open_image(digest, min_side=side)
        image.thumbnail((side, side))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=82)
        return out.getvalue()

    def thumbnails(
        self, hits: Sequence[Hit], count: int = VISION_IMAGES, side: int = VISION_SIDE
    ) -> dict[int, bytes]:
        """Source number -> small JPEG of the normalized image (for vision reasoning)."""
        images = {}
        for number, hit in enumerate(hits[:count], start=1):
            try:
                images[number] = self.thumbnail(hit.normalized_hash, side=side)
            except NotFoundError:
                continue  # its normalized image is gone: the reasoner reads the caption only
        return images


def _checked_question(question: str) -> str:
    question = (question or "").strip()
    if not question:
        raise QueryError("The question is empty: describe the image you are looking for.")
    return question


def _check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= MAX_TOP_K:
        raise QueryError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
