"""raw_images: what image-like objects a partition holds, with size, date and content hash."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

from dam_pipeline.manifests import Manifest, RawImage
from dam_pipeline.sources import ObjectGoneError, Source, SourceObject, is_image_key
from dam_pipeline.stages.progress import log, progress, timed


def _hash(source: Source, obj: SourceObject) -> str | None:
    try:
        return hashlib.sha256(source.read_bytes(obj.key)).hexdigest()
    except ObjectGoneError:
        return None


def list_raw_images(
    source: Source, prefix: str, previous: Manifest | None = None, workers: int = 4
) -> Manifest:
    """List the partition; hash only objects that are new or changed since ``previous``."""
    summary: dict = {}
    known = previous.by_key() if previous else {}
    with timed(summary, "seconds_listing"):
        listed = list(source.iter_objects(prefix))
    images = [obj for obj in listed if is_image_key(obj.key)]
    summary["ignored_not_image"] = len(listed) - len(images)

    hashes: dict[str, str | None] = {}
    to_hash = []
    for obj in images:
        old = known.get(obj.key)
        if old is not None and old.version == obj.version and old.content_hash:
            hashes[obj.key] = old.content_hash
        else:
            to_hash.append(obj)
    if getattr(source, "hashes_while_listing", False):
        with timed(summary, "seconds_hashing"), ThreadPoolExecutor(workers) as pool:
            bar = progress(len(to_hash), "hashing")
            for obj, digest in zip(
                to_hash, pool.map(lambda o: _hash(source, o), to_hash), strict=True
            ):
                hashes[obj.key] = digest
                bar.update()
            bar.close()

    records = [
        RawImage(obj.key, obj.size, obj.last_modified, obj.version, hashes.get(obj.key))
        for obj in images
    ]
    summary.update(
        seen=len(records),
        new_or_changed=len(to_hash),
        unchanged=len(records) - len(to_hash),
        gone_since_last_run=len(set(known) - {r.key for r in records}),
        total_bytes=sum(r.size for r in records),
    )
    log.info("raw_images %r: %d images (%d new or changed)", prefix, len(records), len(to_hash))
    return Manifest(records=records, summary=summary)
