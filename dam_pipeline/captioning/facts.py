"""Facts about an image that need no model: shape, size and EXIF. Every captioner's text is
completed with them, so "portrait photos from 2019 taken with a Pixel" can be searched."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dam_pipeline.text import format_time

PANORAMA_RATIO = 2.0
SQUARE_TOLERANCE = 0.05


def orientation(width: int, height: int) -> str:
    if not width or not height:
        return ""
    ratio = width / height
    if ratio >= PANORAMA_RATIO or ratio <= 1 / PANORAMA_RATIO:
        return "panorama"
    if abs(ratio - 1) <= SQUARE_TOLERANCE:
        return "square"
    return "landscape" if ratio > 1 else "portrait"


def size_class(width: int, height: int) -> str:
    megapixels = width * height / 1e6
    if megapixels >= 8:
        return "high-resolution"
    if megapixels < 0.3:
        return "small"
    return ""


def fact_tags(width: int, height: int, exif: dict[str, Any]) -> list[str]:
    tags = [t for t in (orientation(width, height), size_class(width, height)) if t]
    if exif.get("camera"):
        tags.append(str(exif["camera"]).lower())
    if exif.get("date_taken"):
        tags.append(exif["date_taken"][:4])
    if exif.get("has_gps"):
        tags.append("geotagged")
    return tags


def fact_sentence(width: int, height: int, exif: dict[str, Any]) -> str:
    """ "Landscape, high-resolution (12.2 MP) photo taken on 14 July 2023 with a Canon EOS
    80D; it has a GPS location." (empty when nothing is known)"""
    shape = orientation(width, height)
    if not shape:
        return ""
    size = size_class(width, height)
    megapixels = width * height / 1e6
    described = (
        f"{shape.capitalize()}, {size} ({megapixels:.1f} MP) photo"
        if size
        else f"{shape.capitalize()} photo"
    )
    if exif.get("date_taken"):
        try:
            taken = datetime.fromisoformat(exif["date_taken"])
            described += f" taken on {taken.day} {taken:%B %Y}"
        except ValueError:
            pass
    if exif.get("camera"):
        described += f" with a {exif['camera']}"
    sentence = described + "."
    if exif.get("has_gps"):
        sentence = sentence[:-1] + "; it has a GPS location."
    return sentence


def video_fact_sentence(start: float, end: float, duration: float, width: int, height: int) -> str:
    """ "Shot from 01:13 to 01:21 of a 02:05 landscape video (1920x1080)." """
    shape = orientation(width, height)
    size = f" ({width}x{height})" if width and height else ""
    return (
        f"Shot from {format_time(start)} to {format_time(end)} of a {format_time(duration)} "
        f"{shape + ' ' if shape else ''}video{size}."
    )


def video_fact_tags(width: int, height: int) -> list[str]:
    return ["video", *[t for t in (orientation(width, height),) if t]]
