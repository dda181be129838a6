"""raw_images: what images and videos a partition holds, with size, date and content hash.

Everything the listing meets is accounted for: image-like objects become records (those
that cannot be read carry the reason, and are quarantined downstream without being
opened); other names and what the listing skips by rule (hidden files, symlinked folders)
are counted under ``ignored_*``. So ``listed = seen + ignored_not_image + ignored_by_rule``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from dam_pipeline.manifests import Manifest, RawImage
from dam_pipeline.sources import ObjectGoneError, Source, SourceObject, is_media_key, is_video_key
from dam_pipeline.stages.progress import log, progress, timed


def _hash(source: Source, obj: SourceObject) -> tuple[str | None, str]:
    """(sha256 of the bytes, or None; why they could not be read, or "")."""
    try:
        if hasattr(source, "content_hash"):  # streamed where the source can
            return source.content_hash(obj.key), ""
        return hashlib.sha256(source.read_bytes(obj.key)).hexdigest(), ""
    except ObjectGoneError:
        return None, ""  # gone since listing: normalized_images says so
    except (OSError, ValueError) as exc:
        return None, f"cannot be read: {getattr(exc, 'strerror', None) or exc}"


def list_raw_images(
    source: Source, prefix: str, previous: Manifest | None = None, workers: int = 4
) -> Manifest:
    """List the partition; hash only objects that are new or changed since ``previous``."""
    summary: dict = {}
    known = previous.by_key() if previous else {}
    with timed(summary, "seconds_listing"):
        listed = list(source.iter_objects(prefix))
    skipped = [obj for obj in listed if obj.ignored]
    images = [obj for obj in listed if not obj.ignored and is_media_key(obj.key)]
    for reason, count in Counter(obj.ignored for obj in skipped).items():
        log.info("raw_images %r: ignored %d (%s)", prefix, count, reason)

    hashes: dict[str, tuple[str | None, str]] = {}
    to_hash = []
    for obj in images:
        old = known.get(obj.key)
        if obj.problem:
            hashes[obj.key] = (None, obj.problem)
        elif old is not None and old.version == obj.version and old.content_hash:
            hashes[obj.key] = (old.content_hash, "")
        else:
            to_hash.append(obj)
    if getattr(source, "hashes_while_listing", False):
        with timed(summary, "seconds_hashing"), ThreadPoolExecutor(workers) as pool:
            bar = progress(len(to_hash), "hashing")
            for obj, result in zip(
                to_hash, pool.map(lambda o: _hash(source, o), to_hash), strict=True
            ):
                hashes[obj.key] = result
                bar.update()
            bar.close()

    records = [
        RawImage(
            obj.key,
            obj.size,
            obj.last_modified,
            obj.version,
            hashes.get(obj.key, (None, ""))[0],
            problem=obj.problem or hashes.get(obj.key, (None, ""))[1],
        )
        for obj in images
    ]
    summary.update(
        listed=len(listed),
        seen=len(records),
        videos=sum(1 for r in records if is_video_key(r.key)),
        unreadable=sum(1 for r in records if r.problem),
        ignored_not_image=len(listed) - len(images) - len(skipped),
        ignored_by_rule=len(skipped),
        new_or_changed=len(to_hash),
        unchanged=len(records) - len(to_hash),
        gone_since_last_run=len(set(known) - {r.key for r in records}),
        total_bytes=sum(r.size for r in records),
    )
    log.info("raw_images %r: %d images (%d new or changed)", prefix, len(records), len(to_hash))
    return Manifest(records=records, summary=summary)
