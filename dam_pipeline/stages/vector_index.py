"""vector_index: make the partition's slice of the index equal to its embeddings manifest.

Upserts what is new or changed, deletes vectors of objects that are gone, and refuses a
mass deletion: if more than ``max_delete_share`` of the partition's vectors would vanish at
once, nothing is deleted and the summary says so (a storage outage must not empty an index).
"""

from __future__ import annotations

from datetime import UTC, datetime

from dam_pipeline.cache import ContentCache
from dam_pipeline.keys import decode_prefix, vector_id
from dam_pipeline.manifests import EmbeddingRecord, IndexedRecord, Manifest
from dam_pipeline.retrieval.keyword_index import KeywordDocument, KeywordIndex
from dam_pipeline.stages.progress import batched, log, progress, timed
from dam_pipeline.vector_stores import VectorRecord, VectorStore

UPSERT_BATCH = 256
CAPTION_METADATA_LIMIT = 2000


def vector_metadata(record: EmbeddingRecord, partition_key: str) -> dict:
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
    if caption.exif.get("date_taken"):
        meta["date_taken"] = caption.exif["date_taken"]
    when = photo_date(caption.exif.get("date_taken"), caption.last_modified)
    if when is not None:
        meta["date"] = when.isoformat()
        meta["date_ts"] = int(when.timestamp())
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
    record: EmbeddingRecord, partition_key: str, source_id: str
) -> KeywordDocument:
    caption = record.caption
    assert caption is not None
    return KeywordDocument(
        vector_id=vector_id(source_id, record.key),
        partition=partition_key,
        key=record.key.replace("/", " ").replace("_", " ").replace("-", " "),
        caption=caption.caption,
        tags=" ".join(caption.tags),
        text=caption.ocr_text,
        facts=caption.facts,
    )


def _changed(stored: dict | None, record: EmbeddingRecord, partition_key: str) -> bool:
    if stored is None:
        return True
    wanted = vector_metadata(record, partition_key)
    return any(stored.get(field) != value for field, value in wanted.items())


def index_partition(
    embeddings: Manifest,
    store: VectorStore,
    cache: ContentCache,
    source_id: str,
    partition_key: str,
    max_delete_share: float = 0.5,
    keywords: KeywordIndex | None = None,
) -> Manifest:
    """Sync the partition's vectors (and its keyword documents, when a keyword index is
    given) with the embeddings manifest."""
    summary: dict = {}
    ok = embeddings.ok()
    if ok:
        store.ensure_compatible(ok[0].embedder, ok[0].dimension)
    desired = {vector_id(source_id, r.key): r for r in ok}
    listed_keys = {r.key for r in embeddings}

    with timed(summary, "seconds_listing_index"):
        existing = store.list_partition(partition_key)
    to_upsert = [r for vid, r in desired.items() if _changed(existing.get(vid), r, partition_key)]
    # A failed caption is retried next run: keep the vector it had until then.
    keep = {vector_id(source_id, r.key) for r in embeddings if r.status == "failed"}
    stale = [vid for vid in existing if vid not in desired and vid not in keep]
    gone = [vid for vid in stale if existing[vid].get("key") not in listed_keys]
    gone_set = set(gone)
    now_quarantined = [vid for vid in stale if vid not in gone_set]

    with timed(summary, "seconds_upserting"):
        bar = progress(len(to_upsert), "indexing")
        for batch in batched(to_upsert, UPSERT_BATCH):
            vectors = cache.get_vectors(batch[0].embedder, [r.input_hash for r in batch])
            absent = [r.key for r in batch if r.input_hash not in vectors]
            if absent:
                raise RuntimeError(
                    f"{len(absent)} vectors are missing from the cache (e.g. {absent[0]!r}); "
                    "re-materialize the embeddings asset for this partition"
                )
            store.upsert(
                [
                    VectorRecord(
                        id=vector_id(source_id, r.key),
                        vector=vectors[r.input_hash],
                        document=r.text,
                        metadata=vector_metadata(r, partition_key),
                    )
                    for r in batch
                ]
            )
            bar.update(len(batch))
        bar.close()

    share_gone = len(gone) / len(existing) if existing else 0.0
    deletion_blocked = bool(gone) and share_gone > max_delete_share
    with timed(summary, "seconds_deleting"):
        if deletion_blocked:
            log.error(
                "NOT deleting %d of %d vectors of partition %r (%.0f%% > %.0f%% allowed): this "
                "looks like a storage outage, not a clean-up. Check the source; raise "
                "DAM_MAX_DELETE_SHARE if the deletions are real.",
                len(gone),
                len(existing),
                partition_key,
                share_gone * 100,
                max_delete_share * 100,
            )
            removed = now_quarantined
        else:
            removed = stale
        store.delete(removed, partition_key)

    if keywords is not None:
        with timed(summary, "seconds_keyword_index"):
            have = keywords.ids(partition_key)
            refresh = {vector_id(source_id, r.key) for r in to_upsert}
            todo = [r for vid, r in desired.items() if vid in refresh or vid not in have]
            keywords.upsert([keyword_document(r, partition_key, source_id) for r in todo])
            held_back = keep | (gone_set if deletion_blocked else set())
            keywords.delete([vid for vid in have if vid not in desired and vid not in held_back])

    records = [
        IndexedRecord(
            key=r.key,
            vector_id=vector_id(source_id, r.key),
            status=r.status,
            reason=r.reason,
        )
        for r in embeddings
    ]
    summary.update(
        seen=len(records),
        indexed=len(ok),
        quarantined=sum(r.status == "quarantined" for r in records),
        failed=len(keep),
        upserted=len(to_upsert),
        unchanged=len(ok) - len(to_upsert),
        deleted=len(now_quarantined) if deletion_blocked else len(stale),
        deletion_blocked=deletion_blocked,
        embedder=ok[0].embedder if ok else "",
        dimension=ok[0].dimension if ok else 0,
        would_delete=len(gone) if deletion_blocked else 0,
    )
    log.info(
        "vector_index %r: %d upserted, %d deleted",
        partition_key,
        len(to_upsert),
        summary["deleted"],
    )
    return Manifest(records=records, summary=summary)
