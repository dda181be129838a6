"""Where images come from: a local folder (default) or an S3-compatible bucket."""

from __future__ import annotations

from dam_pipeline.sources.base import (
    IMAGE_EXTENSIONS,
    ObjectGoneError,
    Source,
    SourceObject,
    is_image_key,
)
from dam_pipeline.sources.local import LocalFolderSource

__all__ = [
    "IMAGE_EXTENSIONS",
    "LocalFolderSource",
    "ObjectGoneError",
    "Source",
    "SourceObject",
    "is_image_key",
    "open_source",
]


def open_source(uri: str, depth: int = 1) -> Source:
    """Choose the source from its URI: a folder path (or ``file://``) for now."""
    if uri.startswith("s3://"):
        raise ValueError(
            f"DAM_SOURCE={uri!r}: S3 sources are not available in this version; "
            "use a local folder path"
        )
    path = uri.removeprefix("file://")
    return LocalFolderSource(path, depth=depth)
