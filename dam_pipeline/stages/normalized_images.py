"""normalized_images: every raw object decoded to an upright RGB JPEG, or quarantined; a
video becomes one such image per shot (``videos.py``)."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from dam_pipeline.imaging import (
    HEADER_BYTES,
    DecodeBudget,
    NormalizeError,
    ObjectStore,
    decode_cost,
    header_problem,
    normalize_image,
    release_freed_memory,
)
from dam_pipeline.manifests import Manifest, NormalizedImage, RawImage, status_counts
from dam_pipeline.places.gazetteer import Gazetteer, LocationMode, kept_location, must_read_again
from dam_pipeline.sources import ObjectGoneError, Source, is_video_key
from dam_pipeline.stages.progress import log, progress, timed
from dam_pipeline.stages.videos import normalize_video, quarantined, reusable_video
from dam_pipeline.video import VideoLimits, VideoShots

DEFAULT_DECODE_MEMORY = 768 * 2**20


def _normalize_object(
    source: Source,
    store: ObjectStore,
    raw: RawImage,
    max_side: int,
    max_pixels: int | None,
    budget: DecodeBudget,
    video: VideoLimits,
) -> tuple[list[NormalizedImage], VideoShots | None]:
    """One object, whatever it holds: an image gives one record, a video one per shot; a
    bad object is one quarantined record with its reason and never fails the partition."""
    if raw.problem:
        return [quarantined(raw, raw.problem, retry=True)], None
    try:
        if is_video_key(raw.key):
            return normalize_video(source, store, raw, max_side, video, budget)
        return [_decode_and_store(source, store, raw, max_side, max_pixels, budget)], None
    except Exception as exc:  # anything a decoder or the source raises stays with this object
        log.exception("unexpected error on %s", raw.key)
        return [quarantined(raw, f"could not be processed ({type(exc).__name__}: {exc})")], None


def _decode_and_store(
    source: Source,
    store: ObjectStore,
    raw: RawImage,
    max_side: int,
    max_pixels: int | None,
    budget: DecodeBudget,
) -> NormalizedImage:
    try:
        # The header tells the decode's size: reserve it, with the file, before reading
        # all of a large file (a small one is read whole at once).
        small = raw.size <= HEADER_BYTES
        data = source.read_bytes(raw.key) if small else b""
        head = data if small else source.read_bytes(raw.key, limit=HEADER_BYTES)
        if refused := header_problem(head, max_pixels):  # never read the rest of a bomb
            return quarantined(raw, refused)
        if raw.size > budget.limit:
            return quarantined(
                raw,
                f"the file is {raw.size / 2**20:,.0f} MB, more than the decoding memory of "
                f"{budget.limit / 2**20:,.0f} MB: raise DAM_DECODE_MEMORY_MB to index it",
            )
        with budget.reserve(decode_cost(head, max_side, raw.size)):
            data = data or source.read_bytes(raw.key)
            # The folder source hashed the bytes while listing; S3 objects are hashed here.
            content_hash = raw.content_hash or hashlib.sha256(data).hexdigest()
            try:
                decoded = normalize_image(data, max_side=max_side, max_pixels=max_pixels)
            except NormalizeError as exc:
                return quarantined(raw, str(exc), content_hash)
            finally:
                del data
            release_freed_memory()
    except ObjectGoneError:
        return quarantined(raw, "deleted from the source after it was listed", retry=True)
    except (OSError, ValueError) as exc:  # archived, refused, a read that failed
        reason = f"cannot be read: {getattr(exc, 'strerror', None) or exc}"
        return quarantined(raw, reason, retry=True)
    digest = store.put(decoded.jpeg)
    return NormalizedImage(
        key=raw.key,
        version=raw.version,
        status="ok",
        content_hash=content_hash,
        normalized_hash=digest,
        width=decoded.width,
        height=decoded.height,
        original_width=decoded.original_width,
        original_height=decoded.original_height,
        source_format=decoded.source_format,
        exif=decoded.exif,
        dhash=decoded.dhash,
        max_side=max_side,
        last_modified=raw.last_modified,
    )


def _reusable(
    old: NormalizedImage | None, raw: RawImage, store: ObjectStore, max_side: int
) -> bool:
    if old is None or old.version != raw.version:
        return False
    if old.status == "quarantined":
        return not old.retry  # the same bytes fail the same way; a state may change
    return old.max_side == max_side and store.has(old.normalized_hash)


def anything_new(raw: Manifest, previous: Manifest | None) -> bool:
    """Whether the listing holds an object the last normalized manifest does not cover (new
    or changed): then the models will likely be needed, and are worth loading early."""
    known = {(r.video_key or r.key, r.version) for r in previous or ()}
    return any((r.key, r.version) not in known for r in raw)


def normalize_partition(
    source: Source,
    raw: Manifest,
    store: ObjectStore,
    previous: Manifest | None = None,
    max_side: int = 1024,
    max_pixels: int | None = None,
    workers: int = 4,
    decode_memory_bytes: int = DEFAULT_DECODE_MEMORY,
    video: VideoLimits | None = None,
    on_ready: Callable[[list[NormalizedImage]], None] | None = None,
    location: LocationMode = "on",
    gazetteer: Gazetteer | None = None,
) -> Manifest:
    """Decode in a small thread pool (Pillow and FFmpeg release the GIL), one object per
    worker at a time, the workers together within ``decode_memory_bytes`` (see
    ``DecodeBudget``), so memory stays flat however large the partition and its objects.
    ``on_ready`` receives the records as they are ready (the reused ones first), so that
    the next stage can start before the partition is finished (``overlap.py``).
    ``location``: what of a photo's position its record keeps (``DAM_LOCATION``): a photo
    kept under a stricter setting is read again, one kept under a looser one is trimmed."""

    def located(records: list[NormalizedImage]) -> list[NormalizedImage]:
        return [
            dataclasses.replace(r, exif=kept_location(r.exif, location, gazetteer))
            if r.exif.get("has_gps")
            else r
            for r in records
        ]

    budget = DecodeBudget(decode_memory_bytes)
    video = video or VideoLimits()
    summary: dict = {}
    known: dict[str, list[NormalizedImage]] = {}
    for old in previous or ():
        known.setdefault(old.video_key or old.key, []).append(old)
    results: dict[str, list[NormalizedImage]] = {}
    todo = []
    for record in raw:
        old = known.get(record.key)
        if is_video_key(record.key):
            reusable = old is not None and reusable_video(old, record, store, max_side)
        else:
            reusable = old is not None and _reusable(old[0], record, store, max_side)
        if reusable and any(must_read_again(r.exif, location) for r in old):
            reusable = False  # kept under a stricter DAM_LOCATION: read the position again
        if reusable:
            results[record.key] = located(old)
        else:
            todo.append(record)
    if on_ready is not None and results:
        on_ready([record for records in results.values() for record in records])

    decoded: dict[str, VideoShots] = {}
    with timed(summary, "seconds_decoding"), ThreadPoolExecutor(workers) as pool:
        bar = progress(len(todo), "normalizing")
        work = pool.map(
            lambda r: _normalize_object(source, store, r, max_side, max_pixels, budget, video),
            todo,
        )
        for raw_record, (records, shots) in zip(todo, work, strict=True):
            records = located(records)
            results[raw_record.key] = records
            if on_ready is not None:
                on_ready(records)
            if shots is not None:
                decoded[raw_record.key] = shots
            for record in records:
                if record.status == "quarantined":
                    log.warning("quarantined %s: %s", record.key, record.reason)
            bar.update()
        bar.close()

    records = [record for r in raw for record in results[r.key]]
    summary.update(
        **status_counts(records),
        objects=len(raw),
        reused=len(raw) - len(todo),
        computed=len(todo),
        peak_decode_mb=round(budget.peak / 2**20, 1),
        **_video_summary(raw, records, decoded),
    )
    return Manifest(records=records, summary=summary)


def _video_summary(
    raw: Manifest, records: list[NormalizedImage], decoded: dict[str, VideoShots]
) -> dict:
    """Counts of videos and shots, and what was cut short (a few examples)."""
    notes = {key: "; ".join(found.notes) for key, found in decoded.items() if found.notes}
    return {
        "videos": sum(1 for r in raw if is_video_key(r.key)),
        "video_shots": sum(1 for r in records if r.video_key),
        "videos_decoded": len(decoded),
        "video_seconds_decoded": round(sum(v.duration_seconds for v in decoded.values()), 1),
        "video_frames_decoded": sum(v.frames_decoded for v in decoded.values()),
        "video_blank_shots_skipped": sum(v.blank_shots for v in decoded.values()),
        "video_notes": dict(list(notes.items())[:20]),
    }
