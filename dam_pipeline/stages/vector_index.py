"""vector_index: make the partition's slice of the index equal to its embeddings manifest.

Readers in other processes see the partition change at once: vectors are written first,
then the keyword index (the commit record) in one transaction, then stale vectors removed.

Upserts what is new or changed, deletes vectors of objects that are gone, and refuses a
mass deletion: if more than ``max_delete_share`` of the partition's vectors would vanish at
once, nothing is deleted and the summary says so (a storage outage must not empty an index).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dam_pipeline.cache import ContentCache
from dam_pipeline.keys import decode_prefix, vector_id
from dam_pipeline.manifests import RETRIED, EmbeddingRecord, IndexedRecord, Manifest
from dam_pipeline.places.gazetteer import Gazetteer, LocationMode, place_metadata, place_of
from dam_pipeline.retrieval.keyword_index import KeywordDocument, KeywordIndex
from dam_pipeline.retrieval.label_agreement import labels_metadata
from dam_pipeline.stages.embeddings import visual_hash
from dam_pipeline.stages.progress import batched, log, progress, timed
from dam_pipeline.vector_stores import VectorRecord, VectorStore
from dam_pipeline.vector_stores.base import Metadata

CAPTION_METADATA_LIMIT = 2000


@dataclass(frozen=True)
class PlaceNaming:
    """How the index names where photos were taken: the gazetteer and ``DAM_LOCATION``."""

    gazetteer: Gazetteer | None
    mode: LocationMode = "on"


def vector_metadata(
    record: EmbeddingRecord, partition_key: str, places: PlaceNaming | None = None
) -> dict:
    caption = record.caption
    assert caption is not None
    meta = {
        "key": record.key,
        "partition": partition_key,
        "prefix": decode_prefix(partition_key),
        "caption": f"{caption.caption} {caption.facts}".strip()[:CAPTION_METADATA_LIMIT],
        "tags": " ".join(caption.tags),
        "content_hash": record.content_hash or "",
        "input_hash": record.input_hash,
        "embedder": record.embedder,
        "captioner": caption.captioner,
        "last_modified": caption.last_modified,
        "normalized_hash": caption.normalized_hash or "",
        "dhash": caption.dhash,
        "ocr_text": caption.ocr_text[:CAPTION_METADATA_LIMIT],
    }
    if caption.video_key:  # a shot: where in which video
        meta.update(
            video_key=caption.video_key,
            start_seconds=caption.start_seconds,
            end_seconds=caption.end_seconds,
            video_shots=caption.video_shots,
        )
    if caption.labels:  # what the classifier saw, for scoring questions against it
        meta["labels"] = labels_metadata(caption.labels)
    if caption.exif.get("date_taken"):
        meta["date_taken"] = caption.exif["date_taken"]
    when = photo_date(caption.exif.get("date_taken"), caption.last_modified)
    if when is not None:
        meta["date"] = when.isoformat()
        meta["date_ts"] = int(when.timestamp())
    if places is not None:
        meta.update(place_metadata(caption.exif, places.gazetteer, places.mode))
    return meta


def photo_date(date_taken: str | None, last_modified: str) -> datetime | None:
    """When the photo was taken (EXIF), else when the object last changed; UTC."""
    for value in (date_taken, last_modified):
        if value:
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def keyword_document(
    record: EmbeddingRecord, partition_key: str, source_id: str, metadata: dict | None = None
) -> KeywordDocument:
    """``metadata``: the vector's, whose place names become searchable words."""
    caption = record.caption
    assert caption is not None
    place = place_of(metadata or {})
    where = " ".join(
        str(place[k]) for k in ("city", "near_city", "region", "country") if place and place.get(k)
    )
    return KeywordDocument(
        vector_id=vector_id(source_id, record.key),
        partition=partition_key,
        key=record.key.replace("/", " ").replace("_", " ").replace("-", " "),
        caption=caption.caption,
        tags=" ".join(caption.tags),
        text=caption.ocr_text,
        facts=f"{caption.facts} {where}".strip(),
    )


@dataclass(frozen=True)
class SyncPlan:
    """What one sync of a partition does to its vectors; computed without touching them."""

    upsert: list[str] = field(default_factory=list)
    """Ids of vectors that are new or whose metadata changed."""
    delete: list[str] = field(default_factory=list)
    """Ids to remove now: objects gone from the source, or no longer indexable."""
    kept: set[str] = field(default_factory=set)
    """Ids left as they are although not desired: failed captions (retried next run) and,
    when the guard refused a mass deletion, the objects that seem gone."""
    would_delete: int = 0
    deletion_blocked: bool = False


def plan_sync(
    desired: dict[str, Metadata],
    existing: dict[str, Metadata],
    listed_keys: set[str],
    failed: set[str],
    max_delete_share: float,
) -> SyncPlan:
    """Compare the vectors the manifest wants (id -> metadata) with those the index holds.

    A vector whose object is still listed but no longer indexable (quarantined) is always
    removed. Vectors of objects gone from the listing are removed too, unless more than
    ``max_delete_share`` of the partition would vanish at once: that looks like a storage
    outage, not a clean-up, so nothing of it is deleted and the plan says so.
    """
    upsert = [
        vid
        for vid, wanted in desired.items()
        if (stored := existing.get(vid)) is None
        or any(stored.get(name) != value for name, value in wanted.items())
        or any(name not in wanted for name in stored)  # a field it no longer has (a place)
    ]
    stale = [vid for vid in existing if vid not in desired and vid not in failed]
    gone = [vid for vid in stale if existing[vid].get("key") not in listed_keys]
    share_gone = len(gone) / len(existing) if existing else 0.0
    blocked = bool(gone) and share_gone > max_delete_share
    if blocked:
        gone_set = set(gone)
        return SyncPlan(
            upsert=upsert,
            delete=[vid for vid in stale if vid not in gone_set],
            kept=failed | gone_set,
            would_delete=len(gone),
            deletion_blocked=True,
        )
    return SyncPlan(upsert=upsert, delete=stale, kept=set(failed))


def index_partition(
    embeddings: Manifest,
    store: VectorStore,
    cache: ContentCache,
    source_id: str,
    partition_key: str,
    max_delete_share: float = 0.5,
    keywords: KeywordIndex | None = None,
    visual_store: VectorStore | None = None,
    places: PlaceNaming | None = None,
) -> Manifest:
    """Sync the partition's vectors (and its keyword documents, when a keyword index is
    given; and its visual vectors, when a visual index is given) with the embeddings
    manifest: plan, then apply. ``places`` names where photos were taken."""
    summary: dict = {}
    ok = embeddings.ok()
    if ok:
        store.ensure_compatible(ok[0].embedder, ok[0].dimension)
    records = {vector_id(source_id, r.key): r for r in ok}
    desired = {vid: vector_metadata(r, partition_key, places) for vid, r in records.items()}
    failed = {vector_id(source_id, r.key) for r in embeddings if r.status in RETRIED}

    with timed(summary, "seconds_listing_index"):
        existing = store.list_partition(partition_key)
    plan = plan_sync(desired, existing, {r.key for r in embeddings}, failed, max_delete_share)
    with timed(summary, "seconds_upserting"):
        _upsert(
            store,
            cache,
            [(vid, records[vid], desired[vid]) for vid in plan.upsert],
            lambda r: (r.embedder, r.input_hash),
        )
    if plan.deletion_blocked:
        log.error(
            "NOT deleting %d of %d vectors of partition %r (more than %.0f%% at once): this "
            "looks like a storage outage, not a clean-up. Check the source; raise "
            "DAM_MAX_DELETE_SHARE if the deletions are real.",
            plan.would_delete,
            len(existing),
            partition_key,
            max_delete_share * 100,
        )
    # The keyword index is the commit record (readers show only vectors it holds): the
    # partition's additions and removals become visible together in its one transaction,
    # after the new vectors are in and before the removed ones go.
    if keywords is not None:
        with timed(summary, "seconds_keyword_index"):
            _sync_keywords(keywords, plan, records, partition_key, source_id, desired)
    with timed(summary, "seconds_deleting"):
        store.delete(plan.delete, partition_key)
    if visual_store is not None:
        with timed(summary, "seconds_visual_index"):
            visual = _sync_visual(
                visual_store, cache, embeddings, records, desired, failed, partition_key,
                max_delete_share,
            )  # fmt: skip
        summary.update(visual_upserted=len(visual.upsert), visual_deleted=len(visual.delete))

    indexed = [
        IndexedRecord(
            key=r.key, vector_id=vector_id(source_id, r.key), status=r.status, reason=r.reason
        )
        for r in embeddings
    ]
    summary.update(
        seen=len(indexed),
        indexed=len(ok),
        quarantined=sum(r.status == "quarantined" for r in indexed),
        failed=sum(r.status == "failed" for r in indexed),
        deferred=sum(r.status == "deferred" for r in indexed),
        upserted=len(plan.upsert),
        unchanged=len(ok) - len(plan.upsert),
        deleted=len(plan.delete),
        deletion_blocked=plan.deletion_blocked,
        embedder=ok[0].embedder if ok else "",
        dimension=ok[0].dimension if ok else 0,
        would_delete=plan.would_delete,
    )
    log.info(
        "vector_index %r: %d upserted, %d deleted",
        partition_key,
        len(plan.upsert),
        len(plan.delete),
    )
    return Manifest(records=indexed, summary=summary)


def _upsert(
    store: VectorStore,
    cache: ContentCache,
    items: list[tuple[str, EmbeddingRecord, Metadata]],
    vector_of: Callable[[EmbeddingRecord], tuple[str, str]],
) -> None:
    """Upsert in batches, with the vectors from the content cache; ``vector_of`` names each
    record's vector there: (embedder fingerprint, input hash)."""
    bar = progress(len(items), "indexing")
    for batch in batched(items, store.upsert_batch):
        embedder = vector_of(batch[0][1])[0]
        vectors = cache.get_vectors(embedder, [vector_of(r)[1] for _, r, _ in batch])
        absent = [r.key for _, r, _ in batch if vector_of(r)[1] not in vectors]
        if absent:
            raise RuntimeError(
                f"{len(absent)} vectors are missing from the cache (e.g. {absent[0]!r}); "
                "re-materialize the embeddings asset for this partition"
            )
        store.upsert(
            [
                VectorRecord(
                    id=vid, vector=vectors[vector_of(r)[1]], document=r.text, metadata=meta
                )
                for vid, r, meta in batch
            ]
        )
        bar.update(len(batch))
    bar.close()


def _sync_visual(
    visual_store: VectorStore,
    cache: ContentCache,
    embeddings: Manifest,
    records: dict[str, EmbeddingRecord],
    desired: dict[str, Metadata],
    failed: set[str],
    partition_key: str,
    max_delete_share: float,
) -> SyncPlan:
    """The visual index in step with the partition: the same ids and metadata as the main
    index (so filters and hits read alike), the visual vector instead of the caption's."""
    looks = {vid: r for vid, r in records.items() if r.visual}
    if looks:
        first = next(iter(looks.values()))
        sample = cache.get_vectors(first.visual, [visual_hash(first.caption)])
        if sample:
            dimension = len(next(iter(sample.values())))
            visual_store.ensure_compatible(first.visual, dimension)
    existing = visual_store.list_partition(partition_key)
    plan = plan_sync(
        {vid: desired[vid] for vid in looks},
        existing,
        {r.key for r in embeddings},
        failed | (set(records) - set(looks)),
        max_delete_share,
    )
    _upsert(
        visual_store,
        cache,
        [(vid, looks[vid], desired[vid]) for vid in plan.upsert],
        lambda r: (r.visual, visual_hash(r.caption)),
    )
    visual_store.delete(plan.delete, partition_key)
    return plan


def _sync_keywords(
    keywords: KeywordIndex,
    plan: SyncPlan,
    records: dict[str, EmbeddingRecord],
    partition_key: str,
    source_id: str,
    desired: dict[str, dict],
) -> None:
    """Keep the keyword index in step: the same upserts and deletions as the vectors."""
    have = keywords.ids(partition_key)
    refresh = set(plan.upsert)
    todo = [r for vid, r in records.items() if vid in refresh or vid not in have]
    keywords.replace(
        [
            keyword_document(r, partition_key, source_id, desired[vector_id(source_id, r.key)])
            for r in todo
        ],
        [vid for vid in have if vid not in records and vid not in plan.kept],
    )
