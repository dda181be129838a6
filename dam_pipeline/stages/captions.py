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
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dam_pipeline.cache import ContentCache
from dam_pipeline.captioning import Captioner, CaptionerError, ImageInput
from dam_pipeline.captioning.facts import (
    fact_sentence,
    fact_tags,
    video_fact_sentence,
    video_fact_tags,
)
from dam_pipeline.costs import PriceTable, RunBudget, meter_of, spend_summary
from dam_pipeline.embedding.visual import VISUAL_FINGERPRINT
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.manifests import CaptionRecord, Manifest, NormalizedImage, status_counts
from dam_pipeline.stages.progress import log, progress, timed

UNUSABLE_RUNS = 3
"""An image whose answers were unusable this many runs in a row (the first and two more) is
not sent again until the model or prompt changes, or `dam ingest --retry-failed`: a model
that keeps drifting must not cost money on every scheduled run."""


def _record(
    image: NormalizedImage,
    caption: dict | None,
    captioner: str,
    error: CaptionerError | None,
    deferred: tuple[str, str] | None = None,
    unusable_runs: int = 0,
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
        kind, why = deferred
        return CaptionRecord(status="deferred", reason=why, failure=kind, **base)
    if caption is None:
        kind = error.kind if error is not None else "provider error"
        runs = unusable_runs if kind == "unusable answer" else 0
        when = (
            "not sent again until the model or prompt changes, or `dam ingest --retry-failed`"
            if runs >= UNUSABLE_RUNS
            else "retried next run"
        )
        return CaptionRecord(
            status="failed",
            reason=f"captioning failed ({kind}), {when}: {error}",
            failure=kind,
            unusable_runs=runs,
            **base,
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
    **options: Any,
) -> Manifest:
    """Caption in batches; each finished batch goes to the cache at once, so a run that dies
    half-way resumes where it stopped, and identical images are captioned once. A paid
    captioner's usage and cost are in the summary; images its ``budget`` no longer covers,
    or that a provider gone down could not take, are deferred to the next run. An image
    whose answers were unusable ``UNUSABLE_RUNS`` runs in a row (``previous``) waits,
    unless ``retry_failed``. ``options``: those of ``caption_arriving``."""
    return caption_arriving(
        [normalized.records], lambda: normalized, len(normalized), store, captioner, cache,
        **options,
    )  # fmt: skip


def caption_arriving(
    arriving: Iterable[list[NormalizedImage]],
    normalized: Callable[[], Manifest],
    expected: int,
    store: ObjectStore,
    captioner: Captioner,
    cache: ContentCache,
    budget: RunBudget | None = None,
    prices: PriceTable | None = None,
    known_cost_each: float | None = None,
    previous: Manifest | None = None,
    retry_failed: bool = False,
) -> Manifest:
    """``caption_partition`` for normalized records that arrive in chunks while the
    partition is still being normalized: a batch is sent as soon as enough uncached images
    have arrived, so the models start on the first images instead of after the last.
    ``normalized()`` gives the finished manifest once ``arriving`` is exhausted (the
    records come out in its order)."""
    summary: dict = {"seconds_cache_lookup": 0.0}
    prices = prices or PriceTable.from_json()
    meter, model_id = meter_of(captioner), getattr(captioner, "model_id", "")
    usage_before = meter.snapshot() if meter else {}
    unusable_before = _unusable_runs(previous, captioner.fingerprint)
    known: dict[str, dict] = {}
    held: dict[str, int] = {}
    missing: list[str] = []
    errors: dict[str, CaptionerError] = {}
    deferred: dict[str, tuple[str, str]] = {}

    def to_caption() -> Iterator[list[str]]:
        """Batches of uncached images, each as soon as it is full (the last when the
        stream ends); what the cache or the held list answers is never sent."""
        seen: set[str] = set()
        pending: list[str] = []
        for chunk in arriving:
            new = list(dict.fromkeys(r.normalized_hash for r in chunk if r.status == "ok"))
            new = [h for h in new if h not in seen]
            seen.update(new)
            with timed(lookup := {}, "seconds"):
                known.update(cache.get_captions(captioner.fingerprint, new))
            summary["seconds_cache_lookup"] += lookup["seconds"]
            for digest in new:
                if digest in known:
                    continue
                runs = unusable_before.get(digest, 0)
                if runs >= UNUSABLE_RUNS and not retry_failed:
                    held[digest] = runs
                    errors[digest] = CaptionerError(
                        f"unusable answers {runs} runs in a row", kind="unusable answer"
                    )
                    continue
                missing.append(digest)
                pending.append(digest)
            while len(pending) >= captioner.batch_size:
                yield pending[: captioner.batch_size]
                pending = pending[captioner.batch_size :]
        if pending:
            yield pending

    waited = [0.0]  # seconds spent waiting for records to arrive (overlapped decoding)

    def timed_arrivals(chunks: Iterator[list[NormalizedImage]]) -> Iterator[list[NormalizedImage]]:
        while True:
            start = time.perf_counter()
            chunk = next(chunks, None)
            waited[0] += time.perf_counter() - start
            if chunk is None:
                return
            yield chunk

    arriving = timed_arrivals(iter(arriving))
    sent: deque[list[str]] = deque()

    def inputs() -> Iterator[list[ImageInput]]:
        """The batches to send, the budget applied to each before it goes."""
        for batch in to_caption():
            if budget is not None and meter is not None:
                allowed = budget.affordable(model_id, len(batch))
                deferred.update((h, ("budget", budget.reason())) for h in batch[allowed:])
                bar.update(len(batch) - allowed)
                batch = batch[:allowed]
            if batch:
                sent.append(batch)
                yield _image_inputs(store, batch)

    model_seconds = 0.0
    with timed(summary, "seconds_captioning"):
        bar = progress(expected, "captioning")
        if meter is None and hasattr(captioner, "caption_batches"):
            # free local models: the text of one batch is made while the models take the
            # next (a paid captioner goes batch by batch, so the budget sees every spend)
            answers = captioner.caption_batches(inputs())
        else:
            answers = (captioner.caption_batch(images) for images in inputs())
        while True:
            batch_before = meter.snapshot() if meter else {}
            waited_before, start = waited[0], time.perf_counter()
            results = next(answers, None)
            model_seconds += time.perf_counter() - start - (waited[0] - waited_before)
            if results is None:
                break
            batch = sent.popleft()
            if budget is not None and meter is not None:
                budget.spend(prices.total(meter.since(batch_before)), len(batch))
            fresh, looks = {}, {}
            for digest, result in zip(batch, results, strict=True):
                if isinstance(result, CaptionerError) and result.deferred:
                    deferred[digest] = (result.kind, f"deferred: {result}; the next run sends it")
                elif isinstance(result, CaptionerError):
                    errors[digest] = result
                else:
                    if result.visual is not None:  # the embeddings stage need not compute it
                        looks[f"image:{digest}"] = result.visual
                    fresh[digest] = dataclasses.asdict(dataclasses.replace(result, visual=None))
                    del fresh[digest]["visual"]
            cache.put_captions(captioner.fingerprint, fresh)
            if looks:
                cache.put_vectors(VISUAL_FINGERPRINT, looks)
            known.update(fresh)
            bar.update(len(batch))
        bar.close()
    summary["seconds_waiting_for_images"] = round(waited[0], 3)

    summary["seconds_cache_lookup"] = round(summary["seconds_cache_lookup"], 3)
    normalized_manifest = normalized()
    ok_images = normalized_manifest.ok()
    missing_set = set(missing)
    records = [
        _record(
            r,
            known.get(r.normalized_hash),
            captioner.fingerprint,
            errors.get(r.normalized_hash),
            deferred.get(r.normalized_hash),
            unusable_before.get(r.normalized_hash, 0) + (r.normalized_hash not in held),
        )
        for r in normalized_manifest
    ]
    failed_by = Counter(r.failure for r in records if r.status == "failed")
    deferred_by = Counter(r.failure for r in records if r.status == "deferred")
    if errors:
        log.error("captions: %d images failed: %s", len(errors), dict(failed_by))
    if deferred:
        log.warning("captions: %d images deferred: %s", len(deferred), dict(deferred_by))
    sent = len(missing) - len(deferred)
    summary.update(
        **status_counts(records),
        reused=sum(1 for r in ok_images if r.normalized_hash not in missing_set | set(held)),
        computed=sent - len(set(errors) - set(held)),
        model_calls=-(-sent // captioner.batch_size) if sent else 0,
        seconds_model=round(model_seconds, 3),
        captioner=captioner.fingerprint,
        failed_by_reason=dict(failed_by),
        deferred_by_reason=dict(deferred_by),
        held_unusable=len(held),
    )
    if meter is not None:
        usage = meter.since(usage_before)
        reused = summary["reused"]
        summary.update(spend_summary(usage, prices, sent, reused, model_id, known_cost_each))
    log.info("captions: %d computed, %d reused", summary["computed"], summary["reused"])
    return Manifest(records=records, summary=summary)


def _unusable_runs(previous: Manifest | None, fingerprint: str) -> dict[str, int]:
    """Image hash -> runs in a row its answers were unusable, for this captioner."""
    return {
        r.normalized_hash: r.unusable_runs
        for r in previous or ()
        if r.status == "failed" and r.failure == "unusable answer" and r.captioner == fingerprint
    }
