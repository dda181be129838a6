"""What an image looks like, as a vector: for "more like this" and near duplicates.

A caption says what a photo shows; two photos described alike ("a dog on grass") can look
nothing alike, and a cropped copy of a photo can be described differently from it. The
visual vector is the classifier's pooled feature (EfficientNet-Lite0, 1280 numbers before
the class layer), which the local captioner computes anyway, over the same four views it
classifies (centre crop, whole image, two halves), averaged: a crop or a mirrored copy
shares most of its views with the original.

Measured on edited copies of ``coco_dev`` photos (``bench.similar_quality``; the recipe was
fixed before the first measurement, both halves reported): see the README.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Protocol

import numpy as np

VISUAL_FINGERPRINT = "visual/efficientnet-lite0/pooled-views/v1"
VISUAL_DIMENSION = 1280


class VisualEmbedder(Protocol):
    """Images in, L2-normalized vectors out; images that look alike are near each other."""

    fingerprint: str
    dimension: int

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        """One row per JPEG (or any format Pillow decodes)."""
        ...


def visual_vectors(view_features: np.ndarray) -> np.ndarray:
    """(images, views, 1280) pooled features -> (images, 1280) unit vectors: the mean over
    the views, square-rooted (the features are non-negative; the root keeps a few strong
    channels from outvoting the rest), then L2-normalized."""
    pooled = np.sqrt(np.maximum(view_features.mean(axis=1), 0.0))
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


class ClassifierFeatures:
    """The visual vector of the local captioner's network, for images it did not caption
    (a vision-LLM captioner, an index made before visual vectors, an uploaded image)."""

    fingerprint = VISUAL_FINGERPRINT
    dimension = VISUAL_DIMENSION
    batch_size = 16

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        from PIL import Image

        from dam_pipeline.captioning.efficientnet_lite import shared_network
        from dam_pipeline.captioning.local import RESIZE_SHORT_SIDE, forward_views

        if not images:
            return np.zeros((0, self.dimension), np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            opened = []
            for data in images[start : start + self.batch_size]:
                with Image.open(io.BytesIO(data)) as image:
                    image.draft("RGB", (RESIZE_SHORT_SIDE, RESIZE_SHORT_SIDE))
                    opened.append(image.convert("RGB"))
            features, _ = forward_views(shared_network(), opened)
            out.append(visual_vectors(features.numpy().reshape(len(opened), -1, self.dimension)))
        return np.concatenate(out)
