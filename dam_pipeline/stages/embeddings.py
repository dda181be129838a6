"""embeddings: one vector per caption, cached by (model, text) and never recomputed."""

from __future__ import annotations

from dam_pipeline.cache import ContentCache
from dam_pipeline.embedding import Embedder
from dam_pipeline.keys import text_hash
from dam_pipeline.manifests import CaptionRecord, EmbeddingRecord, Manifest
from dam_pipeline.stages.progress import batched, log, progress, timed

EMBED_CHUNK = 256


def document_text(caption: CaptionRecord) -> str:
    """What gets embedded: the caption, plus any text read off the image."""
    if caption.ocr_text and caption.ocr_text not in caption.caption:
        return f"{caption.caption} Text in the image: {caption.ocr_text}"
    return caption.caption


def embed_partition(captions: Manifest, embedder: Embedder, cache: ContentCache) -> Manifest:
    summary: dict = {}
    texts = {r.key: document_text(r) for r in captions if r.status == "ok"}
    hashes = {key: text_hash(text) for key, text in texts.items()}
    with timed(summary, "seconds_cache_lookup"):
        known = cache.get_vectors(embedder.fingerprint, hashes.values())
    missing = list(dict.fromkeys(h for h in hashes.values() if h not in known))
    missing_set = set(missing)
    text_of = {hashes[key]: text for key, text in texts.items()}

    dimension = next(iter(known.values())).shape[0] if known else 0
    with timed(summary, "seconds_embedding"):
        bar = progress(len(missing), "embedding")
        for chunk in batched(missing, EMBED_CHUNK):
            vectors = embedder.embed_documents([text_of[h] for h in chunk])
            dimension = vectors.shape[1]
            cache.put_vectors(embedder.fingerprint, dict(zip(chunk, vectors, strict=True)))
            bar.update(len(chunk))
        bar.close()

    records = [
        EmbeddingRecord(
            key=r.key,
            status=r.status,
            content_hash=r.content_hash,
            text=texts.get(r.key, ""),
            text_hash=hashes.get(r.key, ""),
            embedder=embedder.fingerprint if r.status == "ok" else "",
            dimension=dimension if r.status == "ok" else 0,
            reason=r.reason,
            caption=r,
        )
        for r in captions
    ]
    ok = len(texts)
    summary.update(
        seen=len(records),
        processed=ok,
        quarantined=sum(r.status == "quarantined" for r in records),
        failed=sum(r.status == "failed" for r in records),
        computed=len(missing),
        reused=sum(1 for h in hashes.values() if h not in missing_set),
        embedder=embedder.fingerprint,
        dimension=dimension,
    )
    log.info("embeddings: %d computed, %d reused", len(missing), summary["reused"])
    return Manifest(records=records, summary=summary)
