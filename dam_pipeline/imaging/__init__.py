"""Decoding and normalizing images, and the content-addressed store they are kept in."""

from dam_pipeline.imaging.normalize import DecodedImage, NormalizeError, normalize_image
from dam_pipeline.imaging.object_store import ObjectStore

__all__ = ["DecodedImage", "NormalizeError", "ObjectStore", "normalize_image"]
