"""The Source interface: a bucket (or a folder that behaves like one) of images and videos."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".jfi",
        ".jif",
        ".pjpeg",
        ".pjp",
        ".png",
        ".gif",
        ".bmp",
        ".tif",
        ".tiff",
        ".webp",
        ".heic",
        ".heics",
        ".heif",
        ".hif",
        ".avif",
        ".avifs",
        ".apng",
        ".dib",
        ".svg",
        ".ppm",
        ".pgm",
        ".pbm",
    }
)


VIDEO_EXTENSIONS = frozenset({".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi"})
"""Videos are split into shots, whose keyframes are indexed like photos (GIF and APNG
animations stay images)."""


def is_image_key(key: str) -> bool:
    """Image-like by name (a bucket's ``photo.jpg/`` placeholder too); content is checked
    when decoding, whatever the extension says (and quarantined if it lies)."""
    return posixpath.splitext(key.lower().rstrip("/"))[1] in IMAGE_EXTENSIONS


def is_video_key(key: str) -> bool:
    """Video by name; the container is checked when decoding."""
    return posixpath.splitext(key.lower())[1] in VIDEO_EXTENSIONS


def is_media_key(key: str) -> bool:
    """What the pipeline indexes: images and videos."""
    return is_image_key(key) or is_video_key(key)


def partition_level(prefix: str) -> int:
    """How many folders deep a prefix is (``""`` is 0)."""
    return len(prefix.split("/")) if prefix else 0


def partition_of(key: str, depth: int) -> str:
    """The partition prefix an object key belongs to: its first ``depth`` folders, or fewer
    when the object sits higher up. An empty folder name (S3 allows ``/abs/x.jpg`` and
    ``a//b.jpg``) ends the prefix there: such keys belong to the folder above it (the top
    level for ``/abs/x.jpg``), whose listing includes them."""
    folders = key.split("/")[:-1][:depth]
    if "" in folders:  # an empty folder name ends the prefix: the nearest folder above
        folders = folders[: folders.index("")]
    return "/".join(folders)


def has_dot_segments(key: str) -> bool:
    """Whether a key has ``.`` or ``..`` folders, which browsers resolve away in a URL."""
    return any(part in (".", "..") for part in key.split("/"))


def displayable_key(key: str) -> str:
    """A key whose name is not valid UTF-8 (the file system's bytes survive as lone
    surrogates) with those bytes written as ``\\xNN``: safe in JSON and indexes."""
    return key.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class SourceObject:
    key: str
    size: int
    last_modified: str
    version: str
    problem: str = ""
    """Why the object cannot be read at all (a FIFO, a symlink out of the library, a name
    that is not UTF-8 ...): it is quarantined with this reason, never opened."""
    ignored: str = ""
    """Why the listing skips it by rule (hidden, a symlinked folder): counted, not indexed."""


class ObjectGoneError(FileNotFoundError):
    """The object was listed but is gone by the time we read it."""


class ObjectUnreadableError(OSError):
    """The object exists but cannot be read now (archived, refused): its state, not its
    content, so it is tried again on later runs. The message says what to do."""


class SourceUnavailableError(RuntimeError):
    """The source as a whole cannot be listed or read: a missing bucket, an endpoint that
    does not answer, refused credentials. The message says what to check."""


class Source(Protocol):
    """Lists and reads objects; ``key`` is always the full object key, ``/``-separated."""

    source_id: str
    """Stable identity of the bucket (or folder): part of every vector id."""

    depth: int
    """How many folder levels make a partition prefix."""

    def list_prefixes(self) -> list[str]:
        """The partition prefixes (folders at the partition depth; ``""`` for the top level)."""
        ...

    def iter_objects(self, prefix: str) -> Iterator[SourceObject]:
        """Every object of the partition ``prefix``, paging as it goes."""
        ...

    def iter_all_objects(self, start_after: str | None = None) -> Iterator[SourceObject]:
        """Every object of every partition in key order, after ``start_after`` if given, in
        one paged listing (what the upload sensor scans, resuming where it stopped)."""
        ...

    def read_bytes(self, key: str, limit: int | None = None) -> bytes:
        """The object's bytes (the first ``limit`` only, if given, e.g. to read a header);
        raises ``ObjectGoneError`` if it was deleted meanwhile."""
        ...

    def open_object(self, key: str) -> BinaryIO:
        """A stream of the object's bytes, read as far as needed (a video is copied or
        decoded from it without holding it whole); raises ``ObjectGoneError`` likewise."""
        ...

    def url_for(self, key: str, media_type: str = "") -> str:
        """Where a person can open the object (shown as ``media_type`` where the source can
        say so: a presigned bucket URL)."""
        ...
