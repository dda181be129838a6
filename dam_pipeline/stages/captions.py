"""captions: a description of every normalized image, computed once per image and model."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from dam_pipeline.cache import ContentCache
from dam_pipeline.captioning import Caption, Captioner
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.manifests import CaptionRecord, Manifest, NormalizedImage
from dam_pipeline.stages.progress import batched, log, progress, timed

DECODE_MIN_SIDE = 256


def _record(image: NormalizedImage, caption: dict | None, captioner: str) -> CaptionRecord:
    base = dict(
        key=image.key,
        content_hash=image.content_hash,
        normalized_hash=image.normalized_hash,
        exif=image.exif,
        last_modified=image.last_modified,
    )
    if image.status != "ok" or caption is None:
        return CaptionRecord(status="quarantined", reason=image.reason, **base)
    return CaptionRecord(
        status="ok",
        caption=caption["text"],
        tags=list(caption["tags"]),
        labels=[tuple(label) for label in caption["labels"]],
        colours=list(caption["colours"]),
        ocr_text=caption.get("ocr_text", ""),
        captioner=captioner,
        **base,
    )


def caption_partition(
    normalized: Manifest,
    store: ObjectStore,
    captioner: Captioner,
    cache: ContentCache,
    workers: int = 2,
) -> Manifest:
    """Caption in batches; each finished batch goes to the cache at once, so a run that dies
    half-way resumes where it stopped, and identical images are captioned once."""
    summary: dict = {}
    ok_images = [r for r in normalized if r.status == "ok"]
    hashes = list(dict.fromkeys(r.normalized_hash for r in ok_images))
    with timed(summary, "seconds_cache_lookup"):
        known = cache.get_captions(captioner.fingerprint, hashes)
    missing = [h for h in hashes if h not in known]
    missing_set = set(missing)

    model_seconds = 0.0
    with timed(summary, "seconds_captioning"), ThreadPoolExecutor(workers) as pool:
        bar = progress(len(missing), "captioning")
        for batch in batched(missing, captioner.batch_size):
            images = list(pool.map(lambda h: store.open_image(h, DECODE_MIN_SIDE), batch))
            with timed(timing := {}, "model"):
                captions: list[Caption] = captioner.caption_batch(images)
            model_seconds += timing["model"]
            fresh = {h: dataclasses.asdict(c) for h, c in zip(batch, captions, strict=True)}
            cache.put_captions(captioner.fingerprint, fresh)
            known.update(fresh)
            bar.update(len(batch))
        bar.close()

    records = [
        _record(
            r, known.get(r.normalized_hash) if r.status == "ok" else None, captioner.fingerprint
        )
        for r in normalized
    ]
    quarantined = sum(r.status == "quarantined" for r in records)
    summary.update(
        seen=len(records),
        processed=len(records) - quarantined,
        quarantined=quarantined,
        reused=sum(1 for r in ok_images if r.normalized_hash not in missing_set),
        computed=len(missing),
        model_calls=-(-len(missing) // captioner.batch_size) if missing else 0,
        seconds_model=round(model_seconds, 3),
        captioner=captioner.fingerprint,
    )
    log.info("captions: %d computed, %d reused", len(missing), summary["reused"])
    return Manifest(records=records, summary=summary)
