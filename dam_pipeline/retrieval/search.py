"""Retrieval: dense (vector index), keyword (BM25) or both fused by reciprocal rank.

Dense candidates are ordered by caption similarity plus how well the question agrees with
the classifier's labels of each image (``label_agreement.py``).

Filters narrow by prefix and date inside the stores, and by tags after retrieval (from a
wider candidate pool). A minimum score keeps noise out: an empty answer is better than
unrelated images, and callers say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, date, datetime, time
from functools import cached_property

import numpy as np

from dam_pipeline.embedding import Embedder
from dam_pipeline.keys import encode_prefix
from dam_pipeline.places.gazetteer import fold, place_of
from dam_pipeline.retrieval.keyword_index import KeywordIndex, pg_query_text
from dam_pipeline.retrieval.label_agreement import rerank
from dam_pipeline.text import format_time
from dam_pipeline.vector_stores import IncompatibleIndexError, VectorStore
from dam_pipeline.vector_stores.base import Metadata, StoreFilter, reindex_hint

MODES = ("dense", "hybrid", "keyword")
RRF_K = 60
"""Reciprocal-rank fusion constant (Cormack et al.): 1 / (k + rank) from each list."""
MIN_POOL = 50
KEYWORD_WEIGHT = 0.25
"""Weight of the keyword ranking in hybrid fusion (``DAM_KEYWORD_WEIGHT``)."""


@dataclass(frozen=True)
class Filters:
    prefixes: Sequence[str] = ()
    date_from: date | None = None
    date_to: date | None = None
    tags: Sequence[str] = ()
    min_score: float = 0.0
    """Cosine similarity a hit needs, unless it matched the question's words."""
    places: tuple[str, ...] = ()
    """Place names asked for (any of them: city, large city near, region or country)."""
    near: tuple[float, float, float] | None = None
    """(lat, lon, km)."""
    only: tuple[tuple[str, str], ...] | None = None
    """(vector id, partition) of the only images that may be found (the photos of the
    people asked for), or None for no such limit."""

    def store_filter(self) -> StoreFilter:
        low, high = self.date_bounds
        return StoreFilter(
            partitions=tuple(encode_prefix(p) for p in self.prefixes),
            date_from=low,
            date_to=high,
            places=tuple(dict.fromkeys(fold(p) for p in self.places if p.strip())),
            near=self.near,
        )

    @cached_property
    def date_bounds(self) -> tuple[int | None, int | None]:
        return _epoch(self.date_from, time.min), _epoch(self.date_to, time.max)

    def accepts(self, metadata: Metadata) -> bool:
        """The filters the stores cannot apply (tags), and the date for keyword-only hits."""
        tags = set(str(metadata.get("tags", "")).lower().split())
        if any(tag.lower() not in tags for tag in self.tags):
            return False
        when = metadata.get("date_ts")
        low, high = self.date_bounds
        if low is not None and (when is None or when < low):
            return False
        if high is not None and (when is None or when > high):
            return False
        where = self.store_filter()
        return (not where.places and where.near is None) or where.accepts(metadata)


def _epoch(day: date | None, at: time) -> int | None:
    return None if day is None else int(datetime.combine(day, at, tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class Hit:
    rank: int
    key: str
    score: float
    """Cosine similarity to the question (BM25 score in keyword mode)."""
    caption: str
    partition: str
    url: str
    tags: list[str] = field(default_factory=list)
    vector_id: str = ""
    matched: str = "dense"
    """How it was found: dense, keyword or both."""
    date: str = ""
    normalized_hash: str = ""
    text: str = ""
    """Text read off the image (OCR, or the vision model's transcription)."""
    people: list[str] = field(default_factory=list)
    """The named people in the image (as they are named now)."""
    place: dict | None = None
    """Where it was taken: city, region, country, country_code (lat/lon unless coarse)."""
    video_key: str = ""
    """For a shot of a video: the video (``key`` is the shot's), and the shot's times."""
    start_seconds: float | None = None
    end_seconds: float | None = None
    rerank_score: float | None = None
    """The re-ranker's relevance, 0-10 (``score`` stays the first stage's similarity)."""
    relevance: float = 0.0
    """The one figure whose order is the result order, in every mode: similarity plus label
    agreement (dense), the fused rank score (hybrid) or BM25 (keyword), each relative to
    the best hit's, so the first is 1.0; after re-ranking, the re-ranker's score / 10."""
    similarity: float | None = None
    """Its parts: cosine similarity of the caption to the question,"""
    bm25: float | None = None
    """the keyword index's BM25 score (found by the question's words),"""
    label_agreement: float | None = None
    """and how well the classifier's labels agree with the question."""
    thumbnail: Callable[[str], str] | None = field(default=None, compare=False, repr=False)
    """Makes a data URI of a normalized image by its hash (``Library`` sets it), so that a
    notebook shows the image; not part of the data."""

    @property
    def label(self) -> str:
        """How a person names it: the key, or ``keynote.mov @ 01:13–01:21`` for a shot."""
        return moment_label(self.key, self.video_key, self.start_seconds, self.end_seconds)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "thumbnail"}
        data["label"] = self.label
        return data

    def _repr_html_(self) -> str:
        from dam_pipeline.display import hits_html

        return hits_html([self])


class Hits(list):
    """A list of hits that a notebook shows as a grid of thumbnails; with what re-ranking
    them cost (``usage``), and why they kept the first stage's order (``rerank_error``)."""

    usage: dict
    rerank_error: str = ""

    def _repr_html_(self) -> str:
        from dam_pipeline.display import hits_html

        return hits_html(self)


def moment_label(key: str, video_key: str, start: float | None, end: float | None) -> str:
    if not video_key or start is None or end is None:
        return key
    return f"{video_key} @ {format_time(start)}–{format_time(end)}"


def video_fields(metadata: Metadata) -> dict:
    """The video, start and end of a shot's metadata (nothing for an image)."""
    if not metadata.get("video_key"):
        return {}
    return {
        "video_key": str(metadata["video_key"]),
        "start_seconds": float(metadata.get("start_seconds", 0.0)),
        "end_seconds": float(metadata.get("end_seconds", 0.0)),
    }


def _url(key: str, video: dict, url_for: Callable[[str], str] | None) -> str:
    """Where to open it; a video's web address plays from the shot (a media fragment)."""
    target = video.get("video_key", key)
    url = url_for(target) if url_for else target
    if video and url.startswith(("http://", "https://")):
        url += f"#t={video['start_seconds']:g},{video['end_seconds']:g}"
    return url


def hit_from(
    metadata: Metadata,
    vector_id: str,
    score: float,
    rank: int,
    url_for: Callable[[str], str] | None,
    matched: str = "dense",
) -> Hit:
    key = str(metadata.get("key", ""))
    video = video_fields(metadata)
    return Hit(
        rank=rank,
        key=key,
        score=round(float(score), 4),
        relevance=round(float(score), 4),  # a search replaces it with its ranking's figure
        similarity=round(float(score), 4),
        caption=str(metadata.get("caption", "")),
        partition=str(metadata.get("partition", "")),
        url=_url(key, video, url_for),
        tags=str(metadata.get("tags", "")).split(),
        vector_id=vector_id,
        matched=matched,
        date=str(metadata.get("date", "")),
        normalized_hash=str(metadata.get("normalized_hash", "")),
        text=str(metadata.get("ocr_text", "")),
        place=place_of(metadata),
        **video,
    )


def _check_binding(store: VectorStore, embedder: Embedder, query_vector: np.ndarray) -> None:
    bound = store.binding()
    wanted = (embedder.fingerprint, int(query_vector.shape[0]))
    if bound is not None and bound != wanted:
        raise IncompatibleIndexError(reindex_hint(bound[0], bound[1], *wanted))


_ASKING = (
    r"(?:which|what|where|are|is|do|does|did|can|could|have|has|show|find|give|list|get|any|"
    r"there|me|us|i|we|you|all|some|a|an|the|my|our|of|in|with|that|those|these|how|many|count)"
)
_MEDIUM = r"(?:photos?|images?|pictures?|pics?|shots?|snaps?|photographs?)"
_SCAFFOLD = re.compile(
    rf"^\s*(?:(?:{_ASKING}|{_MEDIUM})\b[\s,]*)+"  # "which photos show", "do we have any"
    rf"(?:(?:shows?|showing|depicts?|depicting|contains?|containing|has|have|of|with)\b\s*)*",
    re.IGNORECASE,
)


_ASKS = re.compile(
    rf"\b(?:{_MEDIUM}|which|what|where|is|are|do|does|did|can|could|have|has|show|find|give|"
    r"list|get|any|there)\b",
    re.IGNORECASE,
)


def focus_question(question: str) -> str:
    """The subject of a question, without the words that ask for a picture ("which photos
    show", "do I have any images of"): every caption is "a photo of …", so those words match
    all images alike and lift unrelated ones towards the top. Kept whole if nothing is left."""
    scaffold = _SCAFFOLD.match(question)
    if scaffold is None or not _ASKS.search(scaffold.group(0)):
        return question  # "A man riding a horse": a description, left as written
    subject = question[scaffold.end() :].strip(" ?!.")
    return subject if len(subject) >= 2 else question


def fused_scores(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> dict[str, float]:
    """Reciprocal-rank fusion: each item scores sum(weight / (k + rank)) over the lists,
    best first."""
    weights = weights or [1.0] * len(rankings)
    scores: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights, strict=True):
        for position, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + position)
    return dict(sorted(scores.items(), key=lambda item: -item[1]))


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, k: int = RRF_K
) -> list[str]:
    """The fused ranking (``fused_scores``' order)."""
    return list(fused_scores(rankings, weights, k))


def search(
    question: str,
    embedder: Embedder,
    store: VectorStore,
    top_k: int = 5,
    filters: Filters | None = None,
    mode: str = "dense",
    keywords: KeywordIndex | None = None,
    url_for: Callable[[str], str] | None = None,
    keyword_weight: float = KEYWORD_WEIGHT,
) -> list[Hit]:
    """The ``top_k`` images that best match ``question``, best first."""
    question = question.strip()
    if not question:
        raise ValueError("The question is empty: describe the image you are looking for.")
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, not {top_k}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "keyword" and keywords is None:
        raise ValueError("keyword search needs the keyword index (materialize vector_index)")
    filters = filters or Filters()
    where = filters.store_filter()
    pool = max(MIN_POOL, top_k * (10 if filters.tags or filters.places or filters.near else 4))

    dense: dict[str, tuple[float, Metadata]] = {}
    query_vector = None
    if mode in ("dense", "hybrid"):
        query_vector = embedder.embed_query(focus_question(question))
        _check_binding(store, embedder, query_vector)
    lexical: dict[str, float] = {}
    found_by_words_only: dict[str, tuple[float, Metadata]] = {}
    if filters.only is not None:
        # a few known images (a person's photos): every one is scored, none is missed
        allowed = {vid for vid, _ in filters.only}
        if query_vector is not None:
            for vid, (vector, metadata, _) in store.fetch(list(filters.only)).items():
                if where.accepts(metadata):
                    dense[vid] = (float(vector @ query_vector), metadata)
            dense = _committed(dense, keywords)
        if keywords is not None and mode in ("keyword", "hybrid"):
            partitions = sorted({partition for _, partition in filters.only})
            found = keywords.search(question, max(pool, 10 * len(allowed)), partitions or None)
            lexical = {vid: value for vid, value in found if vid in allowed}
    elif mode == "hybrid" and keywords is not None and _fuses_in_one_query(store, keywords):
        # vectors and words in one database (pgvector): both candidate lists in one query,
        # then ordered exactly as for every other store (label agreement, then fusion)
        for hit, by_meaning, by_words in store.hybrid_query(
            query_vector, pg_query_text(question), pool, where, keyword_weight, RRF_K
        ):
            if by_meaning:
                dense[hit.id] = (hit.score, hit.metadata)
            else:
                found_by_words_only[hit.id] = (hit.score, hit.metadata)
            if by_words is not None:
                lexical[hit.id] = by_words
    else:
        if query_vector is not None:
            for hit in store.query(query_vector, top_k=pool, where=where):
                dense[hit.id] = (hit.score, hit.metadata)
            dense = _committed(dense, keywords)
        if keywords is not None and mode in ("keyword", "hybrid"):
            lexical = dict(keywords.search(question, pool, where.partitions or None))
    # what the classifier saw counts beside the caption (label_agreement.py)
    by_meaning = rerank(dense, query_vector, embedder) if query_vector is not None else []
    agreement = {vid: extra for vid, _, extra in by_meaning}
    by_words = sorted(lexical, key=lambda vid: -lexical[vid])
    if mode == "dense":
        relevance = {vid: fused for vid, fused, _ in by_meaning}
    elif mode == "keyword":
        relevance = {vid: lexical[vid] for vid in by_words}
    else:
        ranked = [[vid for vid, _, _ in by_meaning], by_words]
        relevance = fused_scores(ranked, [1.0, keyword_weight])
    missing = [
        (vid, "") for vid in relevance if vid not in dense and vid not in found_by_words_only
    ]
    fetched = store.fetch(_with_partitions(missing, keywords)) if missing else {}
    for vid, (vector, metadata, _) in fetched.items():
        similarity = float(vector @ query_vector) if query_vector is not None else lexical[vid]
        found_by_words_only[vid] = (similarity, metadata)
    best = max((abs(v) for v in relevance.values()), default=1.0) or 1.0
    hits: list[Hit] = []
    for vid in relevance:  # best first
        if vid in dense:
            score, metadata = dense[vid]
        elif vid in found_by_words_only:
            score, metadata = found_by_words_only[vid]
        else:
            continue  # in the keyword index but no longer in the store: skip
        if mode == "keyword":
            score = lexical[vid]
        found_by_words = vid in lexical
        if not filters.accepts(metadata):
            continue
        if mode != "keyword" and score < filters.min_score and not found_by_words:
            continue
        matched = "keyword" if found_by_words else "dense"
        if vid in dense and found_by_words:
            matched = "both"
        hit = hit_from(metadata, vid, score, len(hits) + 1, url_for, matched)
        hits.append(
            replace(
                hit,
                relevance=round(relevance[vid] / best, 4),
                similarity=None if mode == "keyword" else round(float(score), 4),
                bm25=round(lexical[vid], 4) if vid in lexical else None,
                label_agreement=_rounded(agreement.get(vid)),
            )
        )
        if len(hits) == top_k:
            break
    return hits


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 4)


def _committed(
    dense: dict[str, tuple[float, Metadata]], keywords: KeywordIndex | None
) -> dict[str, tuple[float, Metadata]]:
    """Only vectors whose partition sync has committed (their keyword document exists): a
    partition being written shows its old state until it is done, then its new one."""
    if keywords is None or not dense:
        return dense
    known = keywords.partitions_of(list(dense))
    return {vid: found for vid, found in dense.items() if vid in known}


def _fuses_in_one_query(store: VectorStore, keywords: KeywordIndex) -> bool:
    shares = getattr(store, "shares_database_with", None)
    return shares is not None and shares(keywords)


def _with_partitions(
    items: list[tuple[str, str]], keywords: KeywordIndex | None
) -> list[tuple[str, str]]:
    """Stores that shard by partition (Pinecone) need each id's partition to fetch it."""
    if keywords is None:
        return items
    partitions = keywords.partitions_of([vid for vid, _ in items])
    return [(vid, partitions.get(vid, "")) for vid, _ in items]
