"""captions: a description of every normalized image, computed once per image and model.

The captioner's description (what gets embedded) is accompanied by a sentence of facts that
need no model (shape, size, EXIF), shown with it and searchable by keyword but kept out of
the embedding, where it would only dilute what the image shows. Structured output (labels,
colours, OCR text) is kept beside the sentence so later stages can filter on it. An image
the captioner fails on is recorded as ``failed`` (not cached), so the next run tries it
again: nothing is dropped.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

from dam_pipeline.cache import ContentCache
from dam_pipeline.captioning import Captioner, CaptionerError, ImageInput
from dam_pipeline.captioning.facts import (
    fact_sentence,
    fact_tags,
    video_fact_sentence,
    video_fact_tags,
)
from dam_pipeline.costs import PriceTable, RunBudget, meter_of, spend_summary
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.manifests import CaptionRecord, Manifest, NormalizedImage, status_counts
from dam_pipeline.stages.progress import batched, log, progress, timed


def _record(
    image: NormalizedImage,
    caption: dict | None,
    captioner: str,
    error: str | None,
    deferred: str | None = None,
) -> CaptionRecord:
    base = dict(
        key=image.key,
        content_hash=image.content_hash,
        normalized_hash=image.normalized_hash,
        exif=image.exif,
        last_modified=image.last_modified,
        dhash=image.dhash,
        captioner=captioner,
        video_key=image.video_key,
        start_seconds=image.start_seconds,
        end_seconds=image.end_seconds,
        video_shots=image.video_shots,
    )
    if image.status != "ok":
        return CaptionRecord(status="quarantined", reason=image.reason, **base)
    if deferred is not None:
        return CaptionRecord(status="deferred", reason=deferred, **base)
    if caption is None:
        return CaptionRecord(
            status="failed", reason=f"captioning failed, retried next run: {error}", **base
        )
    width, height = image.original_width, image.original_height
    if image.video_key:
        duration = float(image.exif.get("video_seconds", image.end_seconds))
        facts = video_fact_sentence(image.start_seconds, image.end_seconds, duration, width, height)
        known = video_fact_tags(width, height)
    else:
        facts = fact_sentence(width, height, image.exif)
        known = fact_tags(width, height, image.exif)
    tags = list(dict.fromkeys([*caption["tags"], *known]))
    return CaptionRecord(
        status="ok",
        caption=caption["text"],
        facts=facts,
        tags=tags,
        labels=[tuple(label) for label in caption["labels"]],
        colours=list(caption["colours"]),
        ocr_text=caption.get("ocr_text", ""),
        people=caption.get("people") or {},
        **base,
    )


FETCH_THREADS = 8


def _image_inputs(store: ObjectStore, digests: list[str]) -> list[ImageInput]:
    """A local file is opened by the captioner as far as it needs; objects elsewhere (S3)
    are fetched once, a batch's requests in flight together."""
    paths = [store.local_path(digest) for digest in digests]
    if all(path is not None for path in paths):
        return [ImageInput(path=path) for path in paths]
    with ThreadPoolExecutor(FETCH_THREADS) as pool:
        return [ImageInput(data=data) for data in pool.map(store.read_bytes, digests)]


def caption_partition(
    normalized: Manifest,
    store: ObjectStore,
    captioner: Captioner,
    cache: ContentCache,
    budget: RunBudget | None = None,
    prices: PriceTable | None = None,
    known_cost_each: float | None = None,
) -> Manifest:
    """Caption in batches; each finished batch goes to the cache at once, so a run that dies
    half-way resumes where it stopped, and identical images are captioned once. A paid
    captioner's usage and cost are in the summary; with a ``budget``, images it no longer
    covers are deferred to the next run."""
    summary: dict = {}
    prices = prices or PriceTable.from_json()
    meter, model_id = meter_of(captioner), getattr(captioner, "model_id", "")
    usage_before = meter.snapshot() if meter else {}
    ok_images = normalized.ok()
    hashes = list(dict.fromkeys(r.normalized_hash for r in ok_images))
    with timed(summary, "seconds_cache_lookup"):
        known = cache.get_captions(captioner.fingerprint, hashes)
    missing = [h for h in hashes if h not in known]
    missing_set = set(missing)
    errors: dict[str, str] = {}
    deferred: set[str] = set()

    model_seconds = 0.0
    with timed(summary, "seconds_captioning"):
        bar = progress(len(missing), "captioning")
        for batch in batched(missing, captioner.batch_size):
            if budget is not None and meter is not None:
                allowed = budget.affordable(model_id, len(batch))
                deferred.update(batch[allowed:])
                bar.update(len(batch) - allowed)
                batch = batch[:allowed]
                if not batch:
                    continue
            batch_before = meter.snapshot() if meter else {}
            with timed(timing := {}, "model"):
                results = captioner.caption_batch(_image_inputs(store, batch))
            model_seconds += timing["model"]
            if budget is not None and meter is not None:
                budget.spend(prices.total(meter.since(batch_before)), len(batch))
            fresh = {}
            for digest, result in zip(batch, results, strict=True):
                if isinstance(result, CaptionerError):
                    errors[digest] = str(result)
                else:
                    fresh[digest] = dataclasses.asdict(result)
            cache.put_captions(captioner.fingerprint, fresh)
            known.update(fresh)
            bar.update(len(batch))
        bar.close()

    why_deferred = budget.reason() if budget is not None and deferred else None
    records = [
        _record(
            r,
            known.get(r.normalized_hash),
            captioner.fingerprint,
            errors.get(r.normalized_hash),
            why_deferred if r.normalized_hash in deferred else None,
        )
        for r in normalized
    ]
    if errors:
        log.error("captions: %d images failed and will be retried next run", len(errors))
    if deferred:
        log.warning("captions: %d images deferred: %s", len(deferred), why_deferred)
    sent = len(missing) - len(deferred)
    summary.update(
        **status_counts(records),
        reused=sum(1 for r in ok_images if r.normalized_hash not in missing_set),
        computed=sent - len(errors),
        model_calls=-(-sent // captioner.batch_size) if sent else 0,
        seconds_model=round(model_seconds, 3),
        captioner=captioner.fingerprint,
    )
    if meter is not None:
        usage = meter.since(usage_before)
        reused = summary["reused"]
        summary.update(spend_summary(usage, prices, sent, reused, model_id, known_cost_each))
    log.info("captions: %d computed, %d reused", summary["computed"], summary["reused"])
    return Manifest(records=records, summary=summary)
