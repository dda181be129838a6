"""The Captioner interface: images in, searchable descriptions out."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Caption:
    text: str
    """One natural sentence or paragraph: what search and answers run on."""
    tags: list[str] = field(default_factory=list)
    labels: list[tuple[str, float]] = field(default_factory=list)
    """Classifier (or model) labels with their confidence."""
    colours: list[str] = field(default_factory=list)
    ocr_text: str = ""
    people: dict = field(default_factory=dict)
    """People detected (local captioner): ``count`` and each detection's kind, score, box."""
    visual: np.ndarray | None = None
    """What the image looks like (``embedding.visual``), when the captioner's own network
    computed it (the local captioner); otherwise the embeddings stage computes it."""


class ImageInput:
    """One normalized image handed to a captioner, decoded only as far as it needs: a
    classifier wants 256 px, OCR the full image, a remote model the JPEG bytes."""

    def __init__(
        self,
        path: Path | None = None,
        image: Image.Image | None = None,
        data: bytes | None = None,
    ) -> None:
        if path is None and image is None and data is None:
            raise ValueError("an ImageInput needs a path, JPEG bytes or an image")
        self.path = path
        self._image = image
        self._data = data

    def open(self, min_side: int | None = None) -> Image.Image:
        if self._image is not None:
            return self._image.convert("RGB")
        with Image.open(self.path if self._data is None else io.BytesIO(self._data)) as image:
            if min_side:
                image.draft("RGB", (min_side, min_side))
            return image.convert("RGB")

    def jpeg_bytes(self) -> bytes:
        if self._data is not None:
            return self._data
        if self.path is not None:
            return self.path.read_bytes()
        out = io.BytesIO()
        self.open().save(out, format="JPEG", quality=90)
        return out.getvalue()


def as_inputs(images: Sequence[ImageInput | Image.Image]) -> list[ImageInput]:
    return [i if isinstance(i, ImageInput) else ImageInput(image=i) for i in images]


class CaptionerError(RuntimeError):
    """The captioner itself failed (service down, rate limit after the last retry, bad
    output); the images are retried on the next run, never dropped. ``kind`` says which
    (``unusable answer``, ``timeout``, ``rejected``, ``provider error``, or ``provider
    unavailable``, whose images are deferred rather than failed)."""

    def __init__(self, message: str, kind: str = "provider error") -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def deferred(self) -> bool:
        return self.kind == "provider unavailable"


class Captioner(Protocol):
    fingerprint: str
    """provider/model/prompt-version: when it changes, captions are recomputed."""

    batch_size: int

    def caption_batch(
        self, images: Sequence[ImageInput | Image.Image]
    ) -> list[Caption | CaptionerError]:
        """One result per image, in order: a caption, or the error that kept this image from
        getting one (the stage records it as failed and retries it on the next run)."""
        ...
