"""embeddings: one vector per object, cached by (model, input) and never recomputed.

Text embedders embed the caption (plus any text read off the image); image embedders
(Titan multimodal) embed the normalized image itself. Either way the vector is keyed by a
hash of its input, so identical images or captions under several keys are embedded once.
"""

from __future__ import annotations

from dam_pipeline.cache import ContentCache
from dam_pipeline.costs import PriceTable, meter_of, spend_summary
from dam_pipeline.embedding import Embedder
from dam_pipeline.embedding.visual import VisualEmbedder
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.keys import text_hash
from dam_pipeline.manifests import CaptionRecord, EmbeddingRecord, Manifest, status_counts
from dam_pipeline.stages.progress import batched, log, progress, timed

EMBED_CHUNK = 256


def document_text(caption: CaptionRecord) -> str:
    """What a text embedder embeds: the caption, plus any text read off the image."""
    if caption.ocr_text and caption.ocr_text not in caption.caption:
        return f"{caption.caption} Text in the image: {caption.ocr_text}"
    return caption.caption


def _input_hash(record: CaptionRecord, embeds_images: bool) -> str:
    if embeds_images:
        return f"image:{record.normalized_hash}"
    return text_hash(document_text(record))


def embed_partition(
    captions: Manifest,
    embedder: Embedder,
    cache: ContentCache,
    store: ObjectStore | None = None,
    prices: PriceTable | None = None,
    known_cost_each: float | None = None,
    visual: VisualEmbedder | None = None,
) -> Manifest:
    """Vectors for the partition's captions (or images), computed only where the cache has
    none; a paid embedder's usage and cost are in the summary. With ``visual``, each image's
    visual vector too (the local captioner has usually cached it already)."""
    summary: dict = {}
    meter = meter_of(embedder)
    usage_before = meter.snapshot() if meter else {}
    embeds_images = getattr(embedder, "modality", "text") == "image"
    if embeds_images and store is None:
        raise ValueError("an image embedder needs the object store of normalized images")
    ok = {r.key: r for r in captions.ok()}
    hashes = {key: _input_hash(r, embeds_images) for key, r in ok.items()}
    with timed(summary, "seconds_cache_lookup"):
        known = cache.get_vectors(embedder.fingerprint, hashes.values())
    missing = list(dict.fromkeys(h for h in hashes.values() if h not in known))
    missing_set = set(missing)
    source_of = {hashes[key]: record for key, record in ok.items()}

    dimension = next(iter(known.values())).shape[0] if known else 0
    with timed(summary, "seconds_embedding"):
        bar = progress(len(missing), "embedding")
        for chunk in batched(missing, EMBED_CHUNK):
            if embeds_images:
                jpegs = [store.read_bytes(source_of[h].normalized_hash) for h in chunk]
                vectors = embedder.embed_images(jpegs)
            else:
                vectors = embedder.embed_documents([document_text(source_of[h]) for h in chunk])
            dimension = vectors.shape[1]
            cache.put_vectors(embedder.fingerprint, dict(zip(chunk, vectors, strict=True)))
            bar.update(len(chunk))
        bar.close()

    looks = _visual_vectors(visual, ok, cache, store, summary) if visual else set()
    records = [
        EmbeddingRecord(
            key=r.key,
            status=r.status,
            content_hash=r.content_hash,
            text=document_text(r) if r.status == "ok" else "",
            input_hash=hashes.get(r.key, ""),
            embedder=embedder.fingerprint if r.status == "ok" else "",
            dimension=dimension if r.status == "ok" else 0,
            reason=r.reason,
            caption=r,
            visual=visual.fingerprint if visual and r.key in looks else "",
        )
        for r in captions
    ]
    summary.update(
        **status_counts(records),
        computed=len(missing),
        reused=sum(1 for h in hashes.values() if h not in missing_set),
        embedder=embedder.fingerprint,
        dimension=dimension,
    )
    if meter is not None:
        usage = meter.since(usage_before)
        prices = prices or PriceTable.from_json()
        model_id = getattr(embedder, "model_id", "")
        reused = summary["reused"]
        summary.update(
            spend_summary(usage, prices, len(missing), reused, model_id, known_cost_each)
        )
    log.info("embeddings: %d computed, %d reused", len(missing), summary["reused"])
    return Manifest(records=records, summary=summary)


def visual_hash(record: CaptionRecord) -> str:
    """The cache key of an image's visual vector (its normalized image's hash)."""
    return f"image:{record.normalized_hash}"


def _visual_vectors(
    visual: VisualEmbedder,
    ok: dict[str, CaptionRecord],
    cache: ContentCache,
    store: ObjectStore | None,
    summary: dict,
) -> set[str]:
    """Keys whose visual vector is in the cache after this: looked up, and computed from
    the normalized image where missing (a vision-LLM captioner, an older index). An image
    whose vector cannot be made keeps its caption vector for "more like this"."""
    wanted = {key: visual_hash(r) for key, r in ok.items() if r.normalized_hash}
    known = set(cache.get_vectors(visual.fingerprint, wanted.values()))
    missing = list(dict.fromkeys(h for h in wanted.values() if h not in known))
    if missing and store is not None:
        with timed(summary, "seconds_visual"):
            bar = progress(len(missing), "visual vectors")
            for chunk in batched(missing, EMBED_CHUNK):
                readable = {}
                for h in chunk:
                    try:
                        readable[h] = store.read_bytes(h.removeprefix("image:"))
                    except Exception as exc:  # gone from the store: the caption vector serves
                        log.warning("no visual vector for %s: %s", h, exc)
                vectors = visual.embed_images(list(readable.values()))
                cache.put_vectors(visual.fingerprint, dict(zip(readable, vectors, strict=True)))
                known.update(readable)
                bar.update(len(chunk))
            bar.close()
    summary.update(
        visual_computed=len([h for h in missing if h in known]),
        visual_reused=len(set(wanted.values())) - len(missing),
    )
    return {key for key, h in wanted.items() if h in known}
