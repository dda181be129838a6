"""The Embedder interface: documents and queries into one vector space."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    modality: str
    """"text": documents are captions; "image": documents are the normalized images."""

    fingerprint: str
    """provider/model: recorded with every vector; the index refuses to mix them."""

    dimension: int
    batch_size: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""
        ...

    def embed_images(self, images: Sequence[bytes]) -> np.ndarray:
        """For image embedders: L2-normalized vectors of the images (JPEG bytes)."""
        ...

    def embed_query(self, text: str) -> np.ndarray: ...
