"""The Captioner interface: images in, searchable descriptions out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

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


class Captioner(Protocol):
    fingerprint: str
    """provider/model/prompt-version: when it changes, captions are recomputed."""

    batch_size: int

    def caption_batch(self, images: Sequence[Image.Image]) -> list[Caption]:
        """One caption per image, in order. Raise only for failures of the captioner itself;
        the stage records them and retries those images on the next run."""
        ...
