"""Decoding and normalizing images, and the content-addressed store they are kept in."""

from dam_pipeline.imaging.budget import DecodeBudget, release_freed_memory
from dam_pipeline.imaging.normalize import (
    HEADER_BYTES,
    DecodedImage,
    NormalizeError,
    decode_cost,
    header_problem,
    normalize_image,
    sniff_media_type,
)
from dam_pipeline.imaging.object_store import FolderObjectStore, ObjectStore, S3ObjectStore

__all__ = [
    "HEADER_BYTES",
    "DecodeBudget",
    "DecodedImage",
    "FolderObjectStore",
    "NormalizeError",
    "ObjectStore",
    "S3ObjectStore",
    "decode_cost",
    "header_problem",
    "normalize_image",
    "release_freed_memory",
    "sniff_media_type",
]
