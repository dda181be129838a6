"""Decode any supported image safely and normalize it: RGB, upright, longest side capped.

Large JPEGs are decoded at reduced size (libjpeg DCT scaling via ``Image.draft``), which
is several times faster than decoding at full resolution and then shrinking. Anything that
cannot be decoded raises ``NormalizeError`` with a reason a person can act on.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError

from dam_pipeline.imaging.budget import BYTES_PER_PIXEL
from dam_pipeline.places.position import gps_position

try:  # HEIC/HEIF/AVIF support is a plugin; without it such files are quarantined.
    import pillow_heif

    pillow_heif.register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # pragma: no cover - depends on the install
    HEIF_SUPPORTED = False

ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "TIFF", "BMP", "HEIF", "AVIF", "PPM")
"""The only decoders uploaded bytes ever reach (JPEG includes multi-picture MPO files).
EPS/PS/PDF (which hand the bytes to Ghostscript), and exotic or legacy decoders (DDS, FITS,
ICNS, PSD, SGI ...) are never tried, whatever the file is named."""
Image.init()
DECODERS = tuple(name for name in ALLOWED_FORMATS if name in Image.OPEN)
"""The allowed formats this Pillow can open (HEIF/AVIF depend on the installed plugins)."""

PngImagePlugin.MAX_TEXT_CHUNK = 16 * 2**20
"""A PNG's compressed ICC profile or XMP may unpack to this much (Pillow's 1 MB refuses the
large profiles of print workflows); ``MAX_TEXT_MEMORY`` (64 MB for all of a file's text
chunks together) still stops a text bomb."""

MAX_JPEG_SCANS = 500
"""Progressive JPEGs have about ten scans; libjpeg decodes every one of thousands, so a file
built with 20,000 holds a worker for minutes. More than this is refused before decoding."""

JPEG_QUALITY = 90
DRAFT_SLACK = 0.75
"""A large JPEG is decoded at the smallest DCT scale that keeps its sides at least this share
of ``max_side``: a 12 MP photo decodes at 1/4 scale (1008 px) instead of 1/2 (2016 px) and
needs no resampling. Normalized images are therefore at most ``max_side`` on the long side,
and at least 3/4 of it when the original was larger."""


class NormalizeError(ValueError):
    """The object could not be turned into an image; ``str(error)`` is the reason."""


@dataclass(frozen=True)
class DecodedImage:
    jpeg: bytes
    width: int
    height: int
    original_width: int
    original_height: int
    source_format: str
    exif: dict[str, Any] = field(default_factory=dict)
    dhash: str = ""


def _sniff_non_image(data: bytes) -> str | None:
    """Documents that are not raster images, by how they begin (a JPEG comment or PNG text
    chunk that mentions ``<svg`` is no SVG document)."""
    head = data[:512].removeprefix(b"\xef\xbb\xbf").lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        return "the file is an HTML page, not an image (a failed download or an error page?)"
    if head.startswith((b"<svg", b"<!doctype svg")) or (
        head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()
    ):
        return "SVG vector images are not supported: export it to PNG or JPEG"
    if head.startswith(b"<?xml"):
        return "the file is an XML document, not an image"
    return None


MAGIC_TYPES = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"BM", "image/bmp"),
)


def sniff_media_type(head: bytes) -> str:
    """The image type of a file by its first bytes (what an original is served as); a
    file that is none of them is ``application/octet-stream``, a download."""
    for magic, media_type in MAGIC_TYPES:
        if head.startswith(magic):
            return media_type
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"avif", b"avis"):
            return "image/avif"
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc"):
            return "image/heic"
    return "application/octet-stream"


def jpeg_scan_count(data: bytes) -> int:
    """Start-of-scan markers in a JPEG (entropy-coded data escapes 0xFF, so each FF DA is a
    marker; an embedded thumbnail adds its own one or few)."""
    return data.count(b"\xff\xda") if data[:2] == b"\xff\xd8" else 0


def header_problem(head: bytes, max_pixels: int | None) -> str | None:
    """Why a file must not be read further, judged from its first bytes alone: a header
    that declares more pixels than allowed (a sparse 1.5 GB TIFF is refused unread)."""
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(head), formats=DECODERS) as image:
                width, height = image.size
    except Image.DecompressionBombError as exc:  # over twice Pillow's own limit
        return f"decompression bomb refused: {exc}; raise DAM_MAX_IMAGE_PIXELS if it is genuine"
    except Exception:
        return None  # the header alone does not tell: decoding will
    if limit and width * height > limit:
        return (
            f"decompression bomb refused: {width}x{height} pixels is over the limit of "
            f"{limit:,}; raise DAM_MAX_IMAGE_PIXELS if it is genuine"
        )
    return None


OFFSET = re.compile(r"[+-]\d\d:\d\d")
"""EXIF ``OffsetTimeOriginal``: the time zone of the date taken (``+02:00``)."""


def _exif_facts(image: Image.Image) -> dict[str, Any]:
    """Camera, date taken and GPS position, read defensively: a corrupt block is ignored."""
    try:
        exif = image.getexif()
    except Exception:
        return {}
    facts: dict[str, Any] = {}
    try:
        make = str(exif.get(ExifTags.Base.Make, "")).strip("\x00 ")
        model = str(exif.get(ExifTags.Base.Model, "")).strip("\x00 ")
        camera = model if model.lower().startswith(make.lower()) else f"{make} {model}".strip()
        if camera:
            facts["camera"] = camera
        sub = exif.get_ifd(ExifTags.IFD.Exif)
        taken = sub.get(ExifTags.Base.DateTimeOriginal) or exif.get(ExifTags.Base.DateTime)
        if taken:
            parsed = datetime.strptime(str(taken).strip("\x00 "), "%Y:%m:%d %H:%M:%S")
            offset = str(sub.get(ExifTags.Base.OffsetTimeOriginal) or "").strip("\x00 ")
            if OFFSET.fullmatch(offset):  # the camera's time zone, when it recorded one
                parsed = datetime.fromisoformat(parsed.isoformat() + offset)
            facts["date_taken"] = parsed.isoformat()
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        if gps:
            facts["has_gps"] = True
            facts["gps"] = gps_position(gps)  # None: a block without a usable position
    except Exception:
        pass  # partial facts are better than none; a broken tag must not quarantine a photo
    return facts


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB on a white background, whatever the mode (palette, alpha, CMYK, 16-bit)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value * (1 / 256)).convert("L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


HEADER_BYTES = 256 * 1024
"""Enough of a file to read its dimensions (JPEG, PNG, GIF, WebP, BMP, most TIFFs)."""


def decode_cost(head: bytes, max_side: int, file_size: int) -> int:
    """Bytes decoding a file will take, judged from its first bytes: pixels as decoded (a
    large JPEG at its reduced DCT scale) times ``BYTES_PER_PIXEL``, plus the file itself.
    A header that does not tell is assumed to unpack to ten times the file."""
    try:
        with Image.open(io.BytesIO(head), formats=DECODERS) as image:
            width, height = image.size
            jpeg = image.format == "JPEG"
    except Exception:
        return file_size * 11
    if jpeg:
        reduction = 1
        while reduction < 8 and max(width, height) / (reduction * 2) >= max_side * DRAFT_SLACK:
            reduction *= 2
        width, height = math.ceil(width / reduction), math.ceil(height / reduction)
    return width * height * BYTES_PER_PIXEL + file_size


def normalize_image(data: bytes, max_side: int, max_pixels: int | None = None) -> DecodedImage:
    """Decode ``data`` and return the normalized JPEG; raise ``NormalizeError`` if it is not
    a usable image. ``max_pixels`` guards against decompression bombs (Pillow's limit by
    default); it is checked from the header, before any pixel is decoded."""
    if not data:
        raise NormalizeError("the file is empty (0 bytes)")
    if reason := _sniff_non_image(data):
        raise NormalizeError(reason)
    if (scans := jpeg_scan_count(data)) > MAX_JPEG_SCANS:
        raise NormalizeError(
            f"a progressive JPEG with {scans:,} scans (over {MAX_JPEG_SCANS}): decoding it "
            "would hold a worker for minutes; re-save it as a baseline JPEG"
        )
    limit = max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS
    if max_pixels and max_pixels > (Image.MAX_IMAGE_PIXELS or 0):
        Image.MAX_IMAGE_PIXELS = max_pixels  # let Pillow's own guard follow a raised limit
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=DECODERS)
            source_format = image.format or "unknown"
            original_size = image.size
            if limit and original_size[0] * original_size[1] > limit:
                raise NormalizeError(
                    f"decompression bomb refused: {original_size[0]}x{original_size[1]} pixels is "
                    f"over the limit of {limit:,}; raise DAM_MAX_IMAGE_PIXELS if it is genuine"
                )
            exif = _exif_facts(image)
            image.seek(0)  # first frame of animations and multi-page files
            if source_format == "JPEG":
                scale = max_side * DRAFT_SLACK / max(original_size)
                if scale < 1:
                    wanted = (
                        math.ceil(original_size[0] * scale),
                        math.ceil(original_size[1] * scale),
                    )
                    image.draft("RGB", wanted)
            image = ImageOps.exif_transpose(image) or image
            image = _to_rgb(image)
            image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS, reducing_gap=3.0)
    except NormalizeError:
        raise
    except UnidentifiedImageError:
        heif_brands = (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypheif")
        if data[4:12] in heif_brands and not HEIF_SUPPORTED:
            raise NormalizeError(
                "HEIC images need the pillow-heif plugin, which is not installed"
            ) from None
        raise NormalizeError(
            "not an image in a supported format (JPEG, PNG, GIF, WebP, TIFF, BMP, HEIC, AVIF)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise NormalizeError(
            f"decompression bomb refused: {exc}; raise DAM_MAX_IMAGE_PIXELS if it is genuine"
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NormalizeError(f"the image data is corrupt or truncated ({exc})") from exc
    except MemoryError as exc:
        raise NormalizeError("the image is too large to decode in memory") from exc
    except Exception as exc:  # a plugin's own error (RuntimeError, NotImplementedError ...)
        raise NormalizeError(f"the image cannot be decoded ({type(exc).__name__}: {exc})") from exc

    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=False)
    fingerprint = dhash(image)
    return DecodedImage(
        jpeg=out.getvalue(),
        width=image.width,
        height=image.height,
        original_width=original_size[0],
        original_height=original_size[1],
        source_format=source_format,
        exif=exif,
        dhash=fingerprint,
    )


def dhash(image: Image.Image) -> str:
    """A 64-bit difference hash: survives re-encoding, resizing and small edits, so near
    duplicates are found by Hamming distance rather than by their (different) bytes."""
    small = np.asarray(image.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"
