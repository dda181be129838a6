"""normalized_images: every raw object decoded to an upright RGB JPEG, or quarantined."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from dam_pipeline.imaging import (
    HEADER_BYTES,
    DecodeBudget,
    NormalizeError,
    ObjectStore,
    decode_cost,
    normalize_image,
    release_freed_memory,
)
from dam_pipeline.manifests import Manifest, NormalizedImage, RawImage, status_counts
from dam_pipeline.sources import ObjectGoneError, Source
from dam_pipeline.stages.progress import log, progress, timed

DEFAULT_DECODE_MEMORY = 768 * 2**20


def _quarantine(raw: RawImage, reason: str, content_hash: str | None = None) -> NormalizedImage:
    return NormalizedImage(
        key=raw.key,
        version=raw.version,
        status="quarantined",
        content_hash=content_hash or raw.content_hash,
        reason=reason,
        last_modified=raw.last_modified,
    )


def _normalize_one(
    source: Source,
    store: ObjectStore,
    raw: RawImage,
    max_side: int,
    max_pixels: int | None,
    budget: DecodeBudget,
) -> NormalizedImage:
    """One object, whatever it holds: a bad object is quarantined with its reason and
    never fails the partition."""
    if raw.problem:
        return _quarantine(raw, raw.problem)
    try:
        return _decode_and_store(source, store, raw, max_side, max_pixels, budget)
    except Exception as exc:  # anything a decoder or the source raises stays with this object
        log.exception("unexpected error on %s", raw.key)
        return _quarantine(raw, f"could not be processed ({type(exc).__name__}: {exc})")


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
        with budget.reserve(decode_cost(head, max_side, raw.size)):
            data = data or source.read_bytes(raw.key)
            # The folder source hashed the bytes while listing; S3 objects are hashed here.
            content_hash = raw.content_hash or hashlib.sha256(data).hexdigest()
            try:
                decoded = normalize_image(data, max_side=max_side, max_pixels=max_pixels)
            except NormalizeError as exc:
                return _quarantine(raw, str(exc), content_hash)
            finally:
                del data
            release_freed_memory()
    except ObjectGoneError:
        return _quarantine(raw, "deleted from the source after it was listed")
    except (OSError, ValueError) as exc:
        return _quarantine(raw, f"cannot be read: {getattr(exc, 'strerror', None) or exc}")
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
        return True  # the same bytes would fail the same way
    return old.max_side == max_side and store.has(old.normalized_hash)


def normalize_partition(
    source: Source,
    raw: Manifest,
    store: ObjectStore,
    previous: Manifest | None = None,
    max_side: int = 1024,
    max_pixels: int | None = None,
    workers: int = 4,
    decode_memory_bytes: int = DEFAULT_DECODE_MEMORY,
) -> Manifest:
    """Decode in a small thread pool (Pillow releases the GIL), one image per worker at a
    time, the workers together within ``decode_memory_bytes`` (see ``DecodeBudget``), so
    memory stays flat however large the partition and its images."""
    budget = DecodeBudget(decode_memory_bytes)
    summary: dict = {}
    known = previous.by_key() if previous else {}
    results: dict[str, NormalizedImage] = {}
    todo = []
    for record in raw:
        old = known.get(record.key)
        if _reusable(old, record, store, max_side):
            results[record.key] = old
        else:
            todo.append(record)

    with timed(summary, "seconds_decoding"), ThreadPoolExecutor(workers) as pool:
        bar = progress(len(todo), "normalizing")
        work = pool.map(
            lambda r: _normalize_one(source, store, r, max_side, max_pixels, budget), todo
        )
        for record in work:
            results[record.key] = record
            if record.status == "quarantined":
                log.warning("quarantined %s: %s", record.key, record.reason)
            bar.update()
        bar.close()

    records = [results[r.key] for r in raw]
    summary.update(
        **status_counts(records),
        reused=len(records) - len(todo),
        computed=len(todo),
        peak_decode_mb=round(budget.peak / 2**20, 1),
    )
    return Manifest(records=records, summary=summary)
