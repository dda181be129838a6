"""Dominant colour names, in the basic colour words people search with."""

from __future__ import annotations

import numpy as np
from PIL import Image

MIN_SHARE = 0.12
MAX_COLOURS = 3


def _colour_name_grid(hsv: np.ndarray) -> np.ndarray:
    hue = hsv[..., 0].astype(np.float32) * (360.0 / 255.0)
    sat = hsv[..., 1].astype(np.float32) / 255.0
    val = hsv[..., 2].astype(np.float32) / 255.0
    names = np.full(hue.shape, "grey", dtype=object)
    chromatic = sat >= 0.2
    names[chromatic & ((hue < 15) | (hue >= 345))] = "red"
    names[chromatic & (hue >= 15) & (hue < 40)] = "orange"
    names[chromatic & (hue >= 40) & (hue < 70)] = "yellow"
    names[chromatic & (hue >= 70) & (hue < 165)] = "green"
    names[chromatic & (hue >= 165) & (hue < 255)] = "blue"
    names[chromatic & (hue >= 255) & (hue < 290)] = "purple"
    names[chromatic & (hue >= 290) & (hue < 345)] = "pink"
    warm = (hue < 45) | (hue >= 345)
    names[chromatic & warm & (val < 0.6)] = "brown"
    names[~chromatic & (val > 0.85)] = "white"
    names[val < 0.18] = "black"
    return names


def dominant_colours(image: Image.Image) -> list[str]:
    """Up to three colour names that each cover a fair share of the picture, largest first."""
    small = image.convert("RGB").resize((48, 48), Image.Resampling.BILINEAR)
    names = _colour_name_grid(np.asarray(small.convert("HSV")))
    values, counts = np.unique(names, return_counts=True)
    order = np.argsort(-counts)
    shares = counts[order] / counts.sum()
    chosen = [str(values[i]) for i, share in zip(order, shares, strict=True) if share >= MIN_SHARE]
    return chosen[:MAX_COLOURS] or [str(values[order[0]])]
