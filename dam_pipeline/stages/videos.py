"""The video part of normalized_images: a video becomes one normalized image per shot.

Why here and not a ``video_frames`` asset: a shot's keyframe *is* a normalized image (the
captioner, embedder and index take it as they take a photo), and a video is an object of
the same listing and partition. Expanding videos inside ``normalized_images`` keeps one
asset graph, one set of sensors and backfills, and the rule seen = indexed + quarantined
per object; the shots carry their video's key and times down to the index.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from dam_pipeline.imaging import DecodeBudget, ObjectStore, release_freed_memory
from dam_pipeline.keys import shot_key
from dam_pipeline.manifests import NormalizedImage, RawImage
from dam_pipeline.sources import ObjectGoneError, Source
from dam_pipeline.video import VideoError, VideoLimits, VideoShots, extract_shots

VIDEO_DECODE_BYTES = 256 * 2**20
"""What one video decode holds at most (FFmpeg's frame pool at 4K, one kept keyframe per
shot in progress, the detector's small frames), reserved from the decode budget."""
COPY_CHUNK = 4 * 2**20


def quarantined(
    raw: RawImage, reason: str, content_hash: str | None = None, retry: bool = False
) -> NormalizedImage:
    """``retry``: the object's state, not its content, is the reason (see NormalizedImage)."""
    return NormalizedImage(
        key=raw.key,
        version=raw.version,
        status="quarantined",
        content_hash=content_hash or raw.content_hash,
        reason=reason,
        last_modified=raw.last_modified,
        retry=retry,
    )


def normalize_video(
    source: Source,
    store: ObjectStore,
    raw: RawImage,
    max_side: int,
    limits: VideoLimits,
    budget: DecodeBudget,
) -> tuple[list[NormalizedImage], VideoShots | None]:
    """The shots of one video as normalized images, or one quarantined record."""
    if raw.size > limits.max_megabytes * 2**20:
        reason = (
            f"the file is {raw.size / 2**20:,.0f} MB, over DAM_VIDEO_MAX_MB="
            f"{limits.max_megabytes}; raise it to index this video"
        )
        return [quarantined(raw, reason)], None
    content_hash = raw.content_hash
    try:
        with budget.reserve(VIDEO_DECODE_BYTES), _seekable(source, raw, limits) as (file, digest):
            content_hash = content_hash or digest
            found = extract_shots(file, max_side, limits)
        release_freed_memory()
    except VideoError as exc:
        return [quarantined(raw, str(exc), content_hash)], None
    except ObjectGoneError:
        return [quarantined(raw, "deleted from the source after it was listed", retry=True)], None
    except (OSError, ValueError) as exc:
        reason = f"cannot be read: {getattr(exc, 'strerror', None) or exc}"
        return [quarantined(raw, reason, content_hash, retry=True)], None
    numbered = found.shots[-1].index + 1
    records = []
    for shot in found.shots:
        picture = shot.keyframe
        records.append(
            NormalizedImage(
                key=shot_key(raw.key, shot.index),
                version=raw.version,
                status="ok",
                content_hash=content_hash,
                normalized_hash=store.put(picture.jpeg),
                width=picture.width,
                height=picture.height,
                original_width=picture.original_width,
                original_height=picture.original_height,
                source_format=f"{found.container} {found.codec} video",
                exif={
                    "video_seconds": found.duration_seconds,
                    **({"has_gps": True, "gps": found.location} if found.location else {}),
                },
                dhash=picture.dhash,
                max_side=max_side,
                last_modified=raw.last_modified,
                video_key=raw.key,
                start_seconds=shot.start_seconds,
                end_seconds=shot.end_seconds,
                video_shots=numbered,
            )
        )
    return records, found


@contextmanager
def _seekable(
    source: Source, raw: RawImage, limits: VideoLimits
) -> Iterator[tuple[BinaryIO, str | None]]:
    """The video as a seekable file, and its sha256 if it had to be computed: a local file
    is opened where it is; a bucket's object is streamed once into a temporary file (at
    most ``max_megabytes``), hashed on the way."""
    with source.open_object(raw.key) as stream:
        if _is_seekable(stream):
            yield stream, None
            return
        cap = limits.max_megabytes * 2**20
        digest = hashlib.sha256()
        with tempfile.TemporaryFile(prefix="dam-video-") as copy:
            copied = 0
            while chunk := stream.read(COPY_CHUNK):
                copied += len(chunk)
                if copied > cap:
                    raise VideoError(
                        f"the file is over DAM_VIDEO_MAX_MB={limits.max_megabytes}; raise it "
                        "to index this video"
                    )
                digest.update(chunk)
                copy.write(chunk)
            copy.seek(0)
            yield copy, digest.hexdigest()


def _is_seekable(stream: BinaryIO) -> bool:
    try:
        return bool(stream.seekable()) and hasattr(stream, "fileno")
    except (AttributeError, OSError, ValueError):
        return False


def reusable_video(
    old: list[NormalizedImage], raw: RawImage, store: ObjectStore, max_side: int
) -> bool:
    """An unchanged video keeps its shots: it is never decoded again."""
    if not old or any(r.version != raw.version for r in old):
        return False
    if len(old) == 1 and old[0].status == "quarantined":
        return not old[0].retry
    return all(r.max_side == max_side and store.has(r.normalized_hash) for r in old)
