"""The indexed library, opened: one method per user action (search, ask, similar,
duplicates, prefixes). The Python API, the CLI, the Dagster query job and the web app all
call these, so a question is answered the same way wherever it is asked.

Components are built from ``Settings`` on first use and kept for the life of the object;
the Dagster layer may hand in components it built from its resources instead.
"""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import date
from functools import cached_property
from pathlib import Path

from dam_pipeline import components
from dam_pipeline.captioning import Captioner
from dam_pipeline.costs import (
    Usage,
    combined,
    meter_of,
    report,
    spend_rows,
    usages_from_json,
    usages_to_json,
)
from dam_pipeline.costs.prices import FIRST_ESTIMATE
from dam_pipeline.embedding import Embedder
from dam_pipeline.embedding.visual import VisualEmbedder
from dam_pipeline.faces.people_store import PeopleStore, PersonSummary
from dam_pipeline.imaging import (
    HEADER_BYTES,
    DecodeBudget,
    NormalizeError,
    ObjectStore,
    decode_cost,
    header_problem,
    normalize_image,
    release_freed_memory,
    sniff_media_type,
)
from dam_pipeline.keys import decode_prefix, encode_prefix, shot_key, vector_id
from dam_pipeline.places.gazetteer import fold, place_of
from dam_pipeline.reasoning import Answer, Reasoner
from dam_pipeline.reasoning.extractive import MIN_RELEVANT_SCORE
from dam_pipeline.reranking import Candidate, VisionReranker
from dam_pipeline.retrieval import Filters, Hit, Hits, KeywordIndex, search
from dam_pipeline.retrieval.people_filter import names_in_question, subject_left
from dam_pipeline.retrieval.place_filter import places_in_question
from dam_pipeline.retrieval.search import moment_label, video_fields
from dam_pipeline.retrieval.similar import (
    DuplicateGroup,
    duplicates_in,
    similar_to_indexed,
    similar_to_vector,
    vector_for_image,
)
from dam_pipeline.search_request import (
    DEFAULT_TOP_K,
    DUPLICATE_DISTANCE,
    MAX_DUPLICATE_DISTANCE,
    MAX_TOP_K,
    QueryError,
    SearchRequest,
)
from dam_pipeline.settings import Settings
from dam_pipeline.sources import ObjectGoneError, Source, is_media_key, is_video_key
from dam_pipeline.sources.base import has_dot_segments, partition_of
from dam_pipeline.state import PipelineState
from dam_pipeline.vector_stores import VectorStore
from dam_pipeline.vector_stores.base import Metadata, StoreFilter

PIPELINE_ASSETS = ("raw_images", "normalized_images", "captions", "embeddings", "vector_index")
VISION_IMAGES = 3
VISION_SIDE = 512
NOTEBOOK_SIDE = 180
THUMBNAIL_THREADS = 4
RERANK_SIDE = 384
"""Thumbnails shown to the re-ranker: enough to judge a photo, few tokens each."""


class NotFoundError(QueryError):
    """The key, prefix or thumbnail asked for is not in the index."""


class EmptyIndexError(RuntimeError):
    """Nothing has been indexed yet."""


DIGEST = re.compile(r"[0-9a-f]{64}")
VIDEO_TYPES = {
    ".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".qt": "video/quicktime",
    ".webm": "video/webm", ".mkv": "video/x-matroska", ".avi": "video/x-msvideo",
}  # fmt: skip
"""Videos are served as their container's type; images as the type their bytes are
(``sniff_media_type``: never SVG or HTML, which a browser would run); anything else is a
download."""
MAX_SHOTS_LISTED = 500


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
    video_key: str = ""
    """For a shot of a video: the video, the shot's times, and every indexed shot of it."""
    start_seconds: float | None = None
    end_seconds: float | None = None
    shots: list[ShotSummary] = field(default_factory=list)
    place: dict | None = None
    """Where it was taken (as ``Hit.place``)."""

    @property
    def label(self) -> str:
        return moment_label(self.key, self.video_key, self.start_seconds, self.end_seconds)

    def to_dict(self) -> dict:
        return {**asdict(self), "label": self.label}


@dataclass(frozen=True)
class CostEstimate:
    """What ingesting the objects not captioned yet would cost (videos count one image
    each here: their shots are known only once decoded)."""

    captioner: str
    objects: int
    per_image: Usage
    cost_usd: float
    basis: str
    priced: bool
    """False: the model is not in the price table (DAM_PRICES), so the cost says 0."""

    def to_dict(self) -> dict:
        return {**asdict(self), "per_image": self.per_image.to_dict()}


@dataclass(frozen=True)
class ShotSummary:
    """One shot of a video, as its detail page lists them."""

    key: str
    start_seconds: float
    end_seconds: float
    normalized_hash: str
    caption: str


@dataclass(frozen=True)
class Original:
    """An original as the source holds it: a URL to send the user to, or its bytes."""

    url: str = ""
    data: bytes = b""
    path: Path | None = None
    """A local file to stream (videos: the player asks for byte ranges)."""
    media_type: str = "application/octet-stream"


_FROM_SETTINGS = object()
"""A component the library builds from its settings when first used."""


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
        visual_index: VectorStore | object | None = _FROM_SETTINGS,
    ) -> None:
        self.settings = settings
        self._given = {
            "source": source,
            "index": index,
            "visual_index": visual_index,
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
    def visual_index(self) -> VectorStore | None:
        """The visual vectors ("more like this" by looks), or None: the caption vectors."""
        given = self._given["visual_index"]
        if given is _FROM_SETTINGS:
            return components.open_visual_index(self.settings)
        return given  # type: ignore[return-value]

    @cached_property
    def visual_embedder(self) -> VisualEmbedder | None:
        if self.visual_index is None:
            return None
        return components.build_visual_embedder(self.settings)

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
    def reranker(self) -> VisionReranker | None:
        return components.build_reranker(self.settings, cache=self.state.cache)

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

    def search(self, question: str, **options: object) -> Hits:
        """Images that match ``question``, best first; ``options`` are the fields of
        ``SearchRequest`` (top_k, prefixes, tags, date_from, date_to, min_score, mode,
        sort), each with its one default."""
        return self.find(SearchRequest.of(question, **options))

    def find(self, request: SearchRequest) -> Hits:
        """The images a request asks for. ``mode`` None: ``DAM_SEARCH_MODE``; ``min_score``
        None: ``DAM_MIN_SCORE``; ``sort`` date puts the same relevant images newest first
        (when taken, else modified)."""
        mode = request.mode or self.settings.search_mode  # both validated: one of MODES
        self.require_index()
        top_k = request.top_k
        first_k = max(top_k, self.settings.rerank_top_n) if self.reranker else top_k
        filters = self.filters(
            request.prefixes,
            request.date_from,
            request.date_to,
            request.tags,
            self._min_score(request.min_score),
        )
        question, only = self._people_asked(request)
        question, named = self._places_asked(question)
        filters = replace(filters, places=(*request.places, *named), near=request.near)
        if only is not None:
            filters = replace(filters, only=only)
        found = search(
            question or "a photo of a person",
            self.embedder,
            self.index,
            top_k=first_k,
            filters=filters,
            mode=mode,
            keywords=self.keywords,
            url_for=self.source.url_for,
            keyword_weight=self.settings.keyword_weight,
        )
        found = self._with_people(found)
        if self.reranker is None:
            hits = self._shown(found)
        else:
            hits = self._reranked(request.question, found, top_k)
        return newest_first(hits) if request.sort == "date" else hits

    def _reranked(self, question: str, found: Sequence[Hit], top_k: int) -> Hits:
        """The first stage's candidates in the re-ranker's order (scored first, best
        first; a candidate it could not see keeps its place after them), cut to ``top_k``.
        If the re-ranker fails, the first stage's order stands and the hits say why."""
        assert self.reranker is not None
        candidates = self.rerank_candidates([hit.normalized_hash for hit in found])
        seen = {c.image_hash for c in candidates}
        shown = [hit for hit in found if hit.normalized_hash in seen]
        result = self.reranker.rerank(question, candidates)
        scores = {id(hit): score for hit, score in zip(shown, result.scores, strict=True)}
        order = sorted(
            range(len(found)),
            key=lambda i: (scores.get(id(found[i])) is None, -(scores.get(id(found[i])) or 0), i),
        )
        ordered, floor = [], 1.0
        for rank, i in enumerate(order[:top_k], start=1):
            score = scores.get(id(found[i]))
            # the re-ranker's score / 10; one it could not see stays below those before it
            floor = min(floor, score / 10 if score is not None else found[i].relevance)
            ordered.append(replace(found[i], rank=rank, rerank_score=score, relevance=floor))
        hits = self._shown(ordered)
        hits.usage, hits.rerank_error = result.usage, result.error
        if result.usage:
            spent = usages_from_json(result.usage)
            rows = spend_rows(
                spent, components.price_table(self.settings), "question", "", "rerank"
            )
            self.state.spend.record(rows)
        return hits

    def rerank_candidates(self, digests: Sequence[str]) -> list[Candidate]:
        """Thumbnails of these normalized images for the re-ranker, made side by side (an
        image no longer in the store is left out: it keeps its first-stage place)."""

        def one(digest: str) -> Candidate | None:
            try:
                return Candidate(digest, self.thumbnail(digest, side=RERANK_SIDE))
            except NotFoundError:
                return None

        with ThreadPoolExecutor(THUMBNAIL_THREADS) as pool:
            made = list(pool.map(one, list(dict.fromkeys(digests))))
        return [candidate for candidate in made if candidate is not None]

    def ask(self, question: str, *, spend_id: str = "question", **options: object) -> Answer:
        """``answer`` for a question and the options of ``SearchRequest``."""
        return self.answer(SearchRequest.of(question, **options), spend_id=spend_id)

    def answer(self, request: SearchRequest, *, spend_id: str = "question") -> Answer:
        """Search, then answer from the retrieved captions only, citing them as [S1]..[Sn];
        a vision reasoner also sees the top images. What the question cost at paid
        providers is in the answer and in the spend ledger (under ``spend_id``)."""
        hits = self.find(request)
        images = self.thumbnails(hits) if self.settings.reasoner_vision else None
        answer = self.reasoner.answer(request.question, hits, images)
        answer = replace(answer, rerank_error=getattr(hits, "rerank_error", ""))
        if asks_for_a_number(request.question):
            answer = replace(answer, text=f"{self._count(request)} {answer.text}")
        return self._priced(answer, spend_id, getattr(hits, "usage", None) or {})

    def _count(self, request: SearchRequest) -> str:
        """The number a "how many" question asks for, from the evidence: every image whose
        caption is at least ``MIN_RELEVANT_SCORE`` similar to it (up to ``COUNT_POOL``
        looked at, beyond top-k), with the threshold said; the photos of a person, counted
        exactly, when the question asks for nothing else."""
        subject, only = self._people_asked(request)
        rest, named = self._places_asked(subject)
        places = (*request.places, *named)
        if places and only is None and not subject_left(rest):
            where = StoreFilter(places=tuple(fold(p) for p in places))
            count = sum(1 for meta in self._indexed_metadata() if where.accepts(meta))
            noun = "photo was" if count == 1 else "photos were"
            return f"{count} {noun} taken in {' or '.join(places)}."
        if only is not None and not subject:
            names = " and ".join(self._names_asked(request))
            noun = "photo shows" if len(only) == 1 else "photos show"
            return f"{len(only)} {noun} {names}."
        pool = self.find(request.replace(top_k=COUNT_POOL, sort="relevance", mode="dense"))
        counted = [h for h in pool if (h.similarity or 0.0) >= MIN_RELEVANT_SCORE]
        more = " or more" if len(pool) == COUNT_POOL and len(counted) == COUNT_POOL else ""
        noun = "image matches" if len(counted) == 1 else "images match"
        return (
            f"{len(counted)}{more} {noun} (caption similarity at least "
            f"{MIN_RELEVANT_SCORE:.2f}, of the {len(pool)} closest looked at)."
        )

    def _priced(self, answer: Answer, spend_id: str, reranking: dict | None = None) -> Answer:
        """The answer with what it cost: its reasoner's calls (recorded in the ledger
        here) and the re-ranking of its sources (recorded by the search)."""
        prices = components.price_table(self.settings)
        reasoning = usages_from_json(answer.usage)
        self.state.spend.record(spend_rows(reasoning, prices, spend_id, "", "ask"))
        reranked = usages_from_json(reranking)
        usage = combined(reasoning, reranked)
        if not usage:
            return answer
        return replace(answer, cost_usd=prices.total(usage), usage=usages_to_json(usage))

    def similar(
        self,
        *,
        key: str | None = None,
        image: bytes | str | Path | None = None,
        top_k: int = DEFAULT_TOP_K,
        prefixes: Sequence[str] | None = None,
        min_score: float | None = None,
    ) -> Hits:
        """Images that look most like an indexed one (``key``) or like a new image (bytes
        or a file path, normalized as the pipeline would, not stored): ranked by the visual
        index when there is one, else by caption vectors (an image indexed before the
        visual index existed is compared by its caption until it is ingested again)."""
        if (key is None) == (image is None):
            raise QueryError("Give either the key of an indexed image or an image file.")
        _check_top_k(top_k)
        self.require_index()
        narrowed = self.filters(prefixes, min_score=self._min_score(min_score))
        url_for = self.source.url_for
        if key is not None:
            partition = encode_prefix(partition_of(key, self.settings.partition_depth))
            wanted = vector_id(self.source.source_id, key)
            for index in (self.visual_index, self.index):
                if index is None:
                    continue
                found = similar_to_indexed(wanted, partition, index, top_k, narrowed, url_for)
                if found is not None:
                    return self._shown(found)
            raise NotFoundError(f"{key!r} is not in the index: check the key, or ingest it.")
        data = image if isinstance(image, bytes) else Path(image).expanduser().read_bytes()
        head = data[:HEADER_BYTES]
        try:
            if refused := header_problem(head, self.settings.max_image_pixels or None):
                raise NormalizeError(refused)
            # the same decoding memory as an ingest: concurrent uploads wait their turn
            cost = decode_cost(head, self.settings.max_side, len(data))
            with self._upload_budget.reserve(cost):
                if self.visual_index is not None and self.visual_embedder is not None:
                    decoded = normalize_image(data, max_side=self.settings.max_side)
                    vector = self.visual_embedder.embed_images([decoded.jpeg])[0]
                    index = self.visual_index
                else:
                    vector = vector_for_image(
                        data, self.settings.max_side, self.captioner, self.embedder
                    )
                    index = self.index
            release_freed_memory()
        except NormalizeError as exc:
            raise QueryError(f"The file is not an image that can be read: {exc}.") from None
        return self._shown(similar_to_vector(vector, index, top_k, narrowed, url_for=url_for))

    @cached_property
    def _upload_budget(self) -> DecodeBudget:
        """What decoding uploaded images may hold at once (``DAM_DECODE_MEMORY_MB``)."""
        return DecodeBudget(self.settings.decode_memory_mb * 2**20)

    def duplicates(
        self, *, prefixes: Sequence[str] | None = None, max_distance: int = DUPLICATE_DISTANCE
    ) -> list[DuplicateGroup]:
        """Groups of near-duplicate images: re-encoded, resized or lightly edited copies
        (by pixels), and with the visual index also cropped, mirrored or grey ones (by
        looks)."""
        if not 0 <= max_distance <= MAX_DUPLICATE_DISTANCE:
            raise QueryError(
                f"max_distance is in bits of 64, from 0 to {MAX_DUPLICATE_DISTANCE}, "
                f"not {max_distance}."
            )
        self.require_index()
        self.filters(prefixes)  # refuses unknown prefixes
        partitions = [encode_prefix(p) for p in prefixes] if prefixes else self.partitions()
        return duplicates_in(self.index, partitions, max_distance, self.visual_index)

    # Places

    def _indexed_metadata(self) -> Iterator[Metadata]:
        """Every indexed photo's metadata, partition by partition: the one walk over the
        index that places, the map and place counts read (slow at a million photos)."""
        for partition in self.partitions():
            yield from self.index.list_partition(partition).values()

    KNOWN_PLACES_SECONDS = 300.0
    """How long the names of the library's places are kept between listings of the index."""

    def _places_asked(self, question: str) -> tuple[str, tuple[str, ...]]:
        """(the question without the places it names, those places), recognising only
        places the library's photos were taken in (``retrieval/place_filter.py``)."""
        if self.settings.location == "off" or not question:
            return question, ()
        cities, areas = self._known_places()
        if not cities and not areas:
            return question, ()
        found, rest = places_in_question(question, cities, areas)
        return (rest or question if found else question), tuple(found)

    def _known_places(self) -> tuple[list[str], list[str]]:
        now = time.monotonic()
        cached = getattr(self, "_places_cache", None)
        if cached is not None and now - cached[0] < self.KNOWN_PLACES_SECONDS:
            return cached[1]
        cities: set[str] = set()
        areas: set[str] = set()
        for meta in self._indexed_metadata():
            cities.update(str(meta.get(k) or "") for k in ("place_city", "place_near_city"))
            areas.update(str(meta.get(k) or "") for k in ("place_region", "place_country"))
        known = (sorted(cities - {""}), sorted(areas - {""}))
        self._places_cache = (now, known)
        return known

    MAP_POINTS = 5_000

    def map_points(self) -> list[dict]:
        """Photos with coordinates (at most ``MAP_POINTS``): key, lat, lon, place, hash."""
        points: list[dict] = []
        for meta in self._indexed_metadata():
            if "lat" not in meta or "lon" not in meta:
                continue
            points.append(
                {
                    "key": str(meta.get("key", "")),
                    "lat": float(meta["lat"]),
                    "lon": float(meta["lon"]),
                    "place": place_of(meta),
                    "normalized_hash": str(meta.get("normalized_hash", "")),
                }
            )
            if len(points) >= self.MAP_POINTS:
                break
        return points

    def places(self) -> list[dict]:
        """Countries, their regions and cities, with how many photos each."""
        tree: dict[tuple[str, str], dict] = {}
        for meta in self._indexed_metadata():
            country = str(meta.get("place_country") or "")
            if not country:
                continue
            entry = tree.setdefault(
                (country, str(meta.get("place_country_code") or "")),
                {"photos": 0, "regions": {}},
            )
            entry["photos"] += 1
            region = entry["regions"].setdefault(
                str(meta.get("place_region") or ""), {"photos": 0, "cities": {}}
            )
            region["photos"] += 1
            city = str(meta.get("place_near_city") or meta.get("place_city") or "")
            region["cities"][city] = region["cities"].get(city, 0) + 1
        return [
            {
                "country": country,
                "country_code": code,
                "photos": entry["photos"],
                "regions": [
                    {
                        "region": name,
                        "photos": region["photos"],
                        "cities": [
                            {"city": city, "photos": count}
                            for city, count in sorted(region["cities"].items(), key=lambda c: -c[1])
                        ],
                    }
                    for name, region in sorted(
                        entry["regions"].items(), key=lambda r: -r[1]["photos"]
                    )
                ],
            }
            for (country, code), entry in sorted(tree.items(), key=lambda t: -t[1]["photos"])
        ]

    # People

    @cached_property
    def people(self) -> PeopleStore:
        return self.state.people

    def _names_asked(self, request: SearchRequest) -> list[str]:
        """The people a request names: its ``people``, then known names in its question."""
        names = list(request.people)
        if self.settings.faces:
            found, _ = names_in_question(request.question, self.people.names())
            asked = {name.casefold() for name in names}
            names += [name for name in found if name.casefold() not in asked]
        return names

    def _people_asked(
        self, request: SearchRequest
    ) -> tuple[str, tuple[tuple[str, str], ...] | None]:
        """(what the photos should show once the names are out, "" if nothing, and the
        (vector id, partition) of the photos where every named person is), or the question
        and None when it names nobody."""
        if not request.people and not self.settings.faces:
            return request.question, None
        names = self._names_asked(request)
        if not names:
            return request.question, None
        _, question = names_in_question(request.question, names)
        known = self.people.known_names()
        photos: set[tuple[str, str]] | None = None
        for name in names:
            ids = known.get(name.casefold())
            if not ids:
                listing = ", ".join(sorted(self.people.names())) or "none yet"
                raise QueryError(
                    f"No person is named {name!r}: name one with `dam people name ID NAME` "
                    f"(named: {listing})."
                )
            theirs = self.people.photos_with(ids)
            photos = theirs if photos is None else photos & theirs
        source_id = self.source.source_id
        only = tuple(sorted((vector_id(source_id, key), part) for part, key in photos or ()))
        return subject_left(question), only

    def _with_people(self, hits: Sequence[Hit]) -> list[Hit]:
        """Each hit with the names of the people in it, as they are named now."""
        if not self.settings.faces or not hits:
            return list(hits)
        names = self.people.names_in_photos([hit.vector_id for hit in hits])
        return [replace(hit, people=names.get(hit.vector_id, [])) for hit in hits]

    def people_list(self, include_hidden: bool = False) -> list[PersonSummary]:
        """The people found in the library, the most photographed first."""
        return self.people.persons(include_hidden=include_hidden)

    def person(self, person_id: int) -> PersonSummary:
        return self.people.person(person_id)

    def person_faces(self, person_id: int) -> list[dict]:
        """Each face of a person: id, photo key and box."""
        return self.people.faces_of_person(person_id)

    def name_person(self, person_id: int, name: str) -> PersonSummary:
        """Name (or, with an empty name, un-name) a person; searches use it at once."""
        self.people.name(person_id, name)
        return self.people.person(person_id)

    def merge_people(self, into: int, other: int) -> PersonSummary:
        self.people.merge(into, other)
        return self.people.person(into)

    def hide_person(self, person_id: int, hidden: bool = True) -> None:
        self.people.hide(person_id, hidden)

    def detach_face(self, face_id: str) -> int:
        """Take a face out of its person (it never goes back); returns its new person."""
        return self.people.detach(face_id)

    def forget_person(self, person_id: int) -> int:
        """Delete a person's faces and keep their new faces from being grouped again."""
        gone = self.people.forget(person_id)
        if gone and (index := components.open_face_index(self.settings)) is not None:
            by_partition: dict[str, list[str]] = {}
            for face_id, partition in gone:
                by_partition.setdefault(partition, []).append(face_id)
            for partition, ids in by_partition.items():
                index.delete(ids, partition)
        return len(gone)

    def regroup_people(self) -> dict[str, int]:
        """Group every face again, keeping names and every decision a user made."""
        from dam_pipeline.faces.grouping import regroup

        return regroup(self.people)

    def delete_all_faces(self) -> int:
        """Every face descriptor and crop, every person and name: gone."""
        from dam_pipeline.stages.faces import delete_all_faces

        return delete_all_faces(
            self.people, self.state.cache, components.open_face_index(self.settings)
        )

    def faces_in_photo(self, key: str) -> list[dict]:
        return self.people.faces_in_photo(key)

    def face_chip(self, face_id: str) -> bytes:
        chip = self.people.face_chip(face_id)
        if chip is None:
            raise NotFoundError(f"No face {face_id}.")
        return chip

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
        """Remove a vanished prefix: its vectors, keyword documents, faces and manifests
        (the explicit way to apply a mass deletion). Returns how many vectors were removed."""
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
        if self.visual_index is not None:
            self.visual_index.delete(list(self.visual_index.list_partition(partition)), partition)
        faces = self.people.forget_partition(partition)
        if faces and (face_index := components.open_face_index(self.settings)) is not None:
            face_index.delete(faces, partition)
        for asset in (*PIPELINE_ASSETS, "faces"):
            self.state.manifests.delete(asset, partition)
        return len(vectors)

    def _exact_detail(self, key: str) -> ImageDetail:
        self.require_index()
        vid = vector_id(self.source.source_id, key)
        partition = encode_prefix(partition_of(key, self.settings.partition_depth))
        found = self.index.fetch([(vid, partition)])
        if vid not in found:
            raise NotFoundError(f"{key!r} is not in the index: check the key, or ingest it.")
        _, meta, _ = found[vid]
        video = video_fields(meta)
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
            url=self._url(video.get("video_key", key)),
            shots=self._shots_of(video["video_key"], meta, partition) if video else [],
            place=place_of(meta),
            **video,
        )

    def _url(self, key: str) -> str:
        """Where a person opens ``key``; "" if its file now points out of the library."""
        try:
            return self.source.url_for(key)
        except ValueError:
            return ""

    def _shots_of(self, video_key: str, meta: dict, partition: str) -> list[ShotSummary]:
        """Every indexed shot of a video, in order (one fetch: shot keys are numbered)."""
        count = min(int(meta.get("video_shots", 0) or 0), MAX_SHOTS_LISTED)
        keys = [shot_key(video_key, index) for index in range(count)]
        ids = {vector_id(self.source.source_id, key): key for key in keys}
        found = self.index.fetch([(vid, partition) for vid in ids])
        shots = [
            ShotSummary(
                key=ids[vid],
                start_seconds=float(m.get("start_seconds", 0.0)),
                end_seconds=float(m.get("end_seconds", 0.0)),
                normalized_hash=str(m.get("normalized_hash", "")),
                caption=str(m.get("caption", "")),
            )
            for vid, (_, m, _) in found.items()
        ]
        return sorted(shots, key=lambda shot: shot.start_seconds)

    def original(self, key: str) -> Original:
        """The original of an indexed image or video (named by the key of one of its shots,
        or its own): a URL for a bucket (presigned to be shown as the image type its bytes
        are, never as what the bucket says), the file or bytes for a folder. Only indexed
        keys are served, whatever the request holds; one that was since deleted, replaced
        or made unreadable is ``NotFoundError`` with what happened."""
        detail = self.detail(key)
        name = detail.video_key or detail.key
        try:
            if detail.video_key:
                media_type = VIDEO_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
            else:
                media_type = sniff_media_type(self.source.read_bytes(name, limit=64))
            local_path = getattr(self.source, "local_path", None)
            if local_path is None and not has_dot_segments(name):
                return Original(url=self.source.url_for(name, media_type=media_type))
            if detail.video_key and local_path is not None:
                path = local_path(name)
                if not path.is_file():
                    raise ValueError("it is no longer a file")
                return Original(path=path, media_type=media_type)
            # a key with ``.``/``..`` segments, which a browser would rewrite in a URL
            return Original(data=self.source.read_bytes(name), media_type=media_type)
        except ObjectGoneError:
            raise NotFoundError(
                f"{name!r} was deleted from the source after it was indexed; the next ingest "
                "removes it from the index."
            ) from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or exc
            raise NotFoundError(
                f"The original of {name!r} cannot be read now ({reason})."
            ) from None

    def status(self) -> dict[str, dict]:
        """Per prefix, what its last captions run left: images captioned, quarantined,
        failed and deferred, the last two by reason with an example (`dam status`)."""
        report: dict[str, dict] = {}
        for prefix in self.source.list_prefixes():
            manifest = self.state.manifests.read("captions", encode_prefix(prefix))
            if manifest is None:
                report[prefix] = {"captioned": 0, "note": "never ingested"}
                continue
            row: dict = {"captioned": len(manifest.ok())}
            for status in ("quarantined", "failed", "deferred"):
                records = [r for r in manifest if r.status == status]
                row[status] = len(records)
                if status == "quarantined" or not records:
                    continue
                reasons: dict[str, dict] = {}
                for record in records:
                    entry = reasons.setdefault(
                        record.failure or "unknown", {"images": 0, "example": record.reason}
                    )
                    entry["images"] += 1
                row[f"{status}_by_reason"] = reasons
            report[prefix] = row
        return report

    def spend(self) -> dict:
        """What paid providers were asked and what it cost: totals, then by provider/model,
        partition, stage and day (`dam cost`)."""
        return report(self.state.spend.rows())

    def estimate_ingest_cost(self, prefixes: Sequence[str] | None = None) -> CostEstimate:
        """What captioning the objects not captioned yet (by this captioner) would cost:
        their number times the mean usage per image measured so far for this model (the
        spend ledger), or ``FIRST_ESTIMATE`` before any was measured."""
        model_id = getattr(self.captioner, "model_id", "")
        fingerprint = self.captioner.fingerprint
        listed = [p.strip("/") for p in prefixes] if prefixes else self.source.list_prefixes()
        pending = 0
        for prefix in listed:
            manifest = self.state.manifests.read("captions", encode_prefix(prefix))
            done = {
                r.video_key or r.key
                for r in (manifest or ())
                if r.status in ("ok", "quarantined") and r.captioner == fingerprint
            }
            pending += sum(
                1
                for obj in self.source.iter_objects(prefix)
                if not obj.ignored and is_media_key(obj.key) and obj.key not in done
            )
        measured = [
            r for r in self.state.spend.rows() if r.stage == "captions" and r.model_id == model_id
        ]
        per_image, basis = FIRST_ESTIMATE, "the default estimate (no image captioned yet)"
        images = sum(r.usage.images for r in measured)
        if images:
            total = sum((r.usage for r in measured), Usage())
            per_image = Usage(
                requests=round(total.requests / images),
                input_tokens=round(total.input_tokens / images),
                output_tokens=round(total.output_tokens / images),
                images=1,
            )
            basis = f"the mean of {images} images captioned so far"
        prices = components.price_table(self.settings)
        paid = meter_of(self.captioner) is not None
        each = prices.cost(model_id, per_image) if paid else 0.0
        return CostEstimate(
            captioner=model_id or fingerprint,
            objects=pending,
            per_image=per_image if paid else Usage(),
            cost_usd=round(each * pending, 6),
            basis=basis if paid else "the local captioner calls no paid provider",
            priced=not paid or prices.price(model_id) is not None,
        )

    def detail(self, key: str) -> ImageDetail:
        """What the index holds about ``key`` (for a video's own key: its first indexed
        shot); ``NotFoundError`` if it is not indexed."""
        try:
            return self._exact_detail(key)
        except NotFoundError:
            if not is_video_key(key):
                raise
        partition = encode_prefix(partition_of(key, self.settings.partition_depth))
        ids = [vector_id(self.source.source_id, shot_key(key, i)) for i in range(16)]
        found = self.index.fetch([(vid, partition) for vid in ids])
        for vid in ids:
            if vid in found:
                return self._exact_detail(str(found[vid][1].get("key")))
        raise NotFoundError(f"{key!r} is not in the index: check the key, or ingest it.")

    def has_thumbnail(self, digest: str) -> bool:
        """Whether ``digest`` names a normalized image this library holds."""
        return bool(DIGEST.fullmatch(digest or "")) and self.objects.has(digest)

    def thumbnail(self, digest: str, side: int = 320) -> bytes:
        """A JPEG of at most ``side`` pixels of a normalized image, by its content hash
        (the only thing a request names: never a path)."""
        if not self.has_thumbnail(digest):
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


COUNT_POOL = 100
"""How many of the closest images a counting question looks at (the most a search returns)."""
_HOW_MANY = re.compile(r"\b(?:how many|count|number of)\b", re.IGNORECASE)


def asks_for_a_number(question: str) -> bool:
    """ "How many photos show food?", "count the cats", "the number of boats"."""
    return bool(_HOW_MANY.search(question))


def newest_first(hits: Hits) -> Hits:
    """The same hits by date, newest first (undated last; ties keep relevance order)."""
    dated = sorted(hits, key=lambda hit: hit.date or "", reverse=True)
    dated = sorted(dated, key=lambda hit: not hit.date)  # stable: undated to the end
    ordered = Hits(replace(hit, rank=rank) for rank, hit in enumerate(dated, start=1))
    ordered.usage = getattr(hits, "usage", {})
    ordered.rerank_error = getattr(hits, "rerank_error", "")
    return ordered


def _check_top_k(top_k: int) -> None:
    if not 1 <= top_k <= MAX_TOP_K:
        raise QueryError(f"top_k must be between 1 and {MAX_TOP_K}, not {top_k}.")
