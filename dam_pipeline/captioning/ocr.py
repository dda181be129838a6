"""Text visible in an image, through the tesseract binary when it is installed.

Tesseract costs far more than the classifier, so by default (``auto``) it only reads images
that are likely to hold text: the classifier saw a sign, screen, book, menu, packaging ...,
or the picture looks like a document (mostly light with dark strokes).
"""

from __future__ import annotations

import logging
import re
import shutil
from functools import cache

import numpy as np
from PIL import Image

log = logging.getLogger("dam_pipeline")

TEXT_BEARING_CLASSES = frozenset(
    {
        398,
        409,
        446,
        454,
        458,
        478,
        487,
        508,
        527,
        530,
        531,
        549,
        590,
        620,
        624,
        664,
        681,
        692,
        709,
        737,
        746,
        782,
        810,
        851,
        878,
        916,
        917,
        918,
        919,
        920,
        921,
        922,
        440,
        907,
        898,
        720,
        455,
        481,
        611,
        767,
        781,
    }
)
MIN_WORD_LENGTH = 2
OCR_MAX_SIDE = 1600


@cache
def tesseract_available() -> bool:
    found = shutil.which("tesseract") is not None
    if not found:
        log.info(
            "OCR skipped: the tesseract binary is not installed (apt-get install tesseract-ocr)"
        )
    return found


def looks_like_document(image: Image.Image) -> bool:
    """Mostly light background with a fair share of dark strokes."""
    gray = np.asarray(image.convert("L").resize((128, 128)), dtype=np.uint8)
    light = (gray > 180).mean()
    dark = (gray < 90).mean()
    return light > 0.55 and 0.02 < dark < 0.35


def clean_text(text: str) -> str:
    """Keep words that look like words: tesseract hallucinates noise on photos."""
    words = [
        w
        for w in re.findall(r"[\w'&%$€£.,:!?-]+", text)
        if sum(c.isalnum() for c in w) >= MIN_WORD_LENGTH
    ]
    return " ".join(words)[:500]


def read_text(image: Image.Image) -> str:
    import pytesseract

    image = image.convert("L")
    if max(image.size) > OCR_MAX_SIDE:
        image.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE))
    try:
        return clean_text(pytesseract.image_to_string(image, config="--psm 3", timeout=30))
    except (RuntimeError, pytesseract.TesseractError) as exc:
        log.warning("OCR failed on one image (%s); continuing without its text", exc)
        return ""
