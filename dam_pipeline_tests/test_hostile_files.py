"""Hostile files, second round: valid images that looked suspicious are indexed, files that
would break the memory or time bounds are refused from their first bytes, and every object
a bucket lists is indexed, quarantined or counted, with its reason. Inputs are generated
(a few KB each; the large files are sparse)."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import pytest
from PIL import Image

from dam_pipeline.imaging import FolderObjectStore, NormalizeError, normalize_image
from dam_pipeline.imaging.normalize import MAX_JPEG_SCANS
from dam_pipeline.sources import LocalFolderSource
from dam_pipeline.stages import list_raw_images, normalize_partition
from dam_pipeline_tests.conftest import jpeg_bytes, photo

CAT = Image.frombytes("RGB", (160, 120), photo("chelsea").resize((160, 120)).tobytes())
"""Pixels only: no profile or text of its own."""


def png_bytes(image: Image.Image, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()


def test_a_jpeg_comment_or_png_text_that_mentions_svg_is_still_an_image() -> None:
    commented = jpeg_bytes(CAT, comment=b'<svg xmlns="http://www.w3.org/2000/svg"></svg>')
    assert b"<svg" in commented[:512]
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "<svg onload=alert(1)>")
    noted = png_bytes(CAT, pnginfo=text)
    assert b"<svg" in noted[:512]
    for data in (commented, noted):
        assert normalize_image(data, max_side=256).width == 160
    svg = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>'
    with pytest.raises(NormalizeError, match="SVG"):
        normalize_image(svg, max_side=256)


def test_a_png_with_a_large_icc_profile_is_decoded() -> None:
    profile = bytes(1_500_000)  # compresses to a few KB; unpacks past Pillow's 1 MB default
    data = png_bytes(CAT, icc_profile=profile)
    assert len(data) < 64_000
    assert normalize_image(data, max_side=256).source_format == "PNG"


@pytest.mark.parametrize("suffix", [".jfif", ".jpe", ".jif", ".pjpeg", ".dib"])
def test_common_raster_extensions_are_read_by_content(tmp_path: Path, suffix: str) -> None:
    body = jpeg_bytes(CAT)
    if suffix == ".dib":
        out = io.BytesIO()
        CAT.save(out, format="BMP")
        body = out.getvalue()
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / f"photo{suffix}").write_bytes(body)
    raw = list_raw_images(LocalFolderSource(tmp_path), "p")
    assert raw.summary["seen"] == 1 and raw.summary["ignored_not_image"] == 0
    normalized = normalize_partition(
        LocalFolderSource(tmp_path), raw, FolderObjectStore(tmp_path / "objects")
    )
    assert [r.status for r in normalized] == ["ok"]


def sparse_tiff(path: Path, width: int, height: int, size: int) -> None:
    """A TIFF whose header declares ``width`` x ``height`` RGB pixels, padded with a hole
    to ``size`` bytes (no disk is used for the hole)."""
    entries = [
        (256, 4, 1, width),  # ImageWidth
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 2),  # Photometric: RGB
        (273, 4, 1, 4096),  # StripOffsets
        (277, 3, 1, 3),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, size - 4096),  # StripByteCounts
    ]
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    with path.open("wb") as handle:
        handle.write(b"II*\x00" + struct.pack("<I", 8) + ifd)
        handle.truncate(size)


class CountingSource(LocalFolderSource):
    """The folder source, recording the largest read of a file's bytes."""

    largest_read = 0

    def read_bytes(self, key: str, limit: int | None = None) -> bytes:
        data = super().read_bytes(key, limit)
        CountingSource.largest_read = max(CountingSource.largest_read, len(data))
        return data


def test_a_sparse_bomb_and_a_file_over_the_decoding_memory_are_refused_unread(
    tmp_path: Path,
) -> None:
    (tmp_path / "p").mkdir()
    sparse_tiff(tmp_path / "p" / "bomb.tif", 24_000, 22_000, 300 * 2**20)
    sparse_tiff(tmp_path / "p" / "large.tif", 2_000, 1_500, 200 * 2**20)
    source = CountingSource(tmp_path)
    raw = list_raw_images(source, "p")
    CountingSource.largest_read = 0
    normalized = normalize_partition(
        source, raw, FolderObjectStore(tmp_path / "o"), decode_memory_bytes=64 * 2**20
    )
    reasons = {r.key: r.reason for r in normalized}
    assert "decompression bomb" in reasons["p/bomb.tif"] and "528000000" in reasons["p/bomb.tif"]
    assert "DAM_DECODE_MEMORY_MB" in reasons["p/large.tif"]
    assert CountingSource.largest_read == 256 * 1024  # headers only, never a body


def many_scans(scans: int) -> bytes:
    """A progressive JPEG whose first scan is repeated until it has ``scans`` scans."""
    data = jpeg_bytes(CAT, progressive=True)
    start = data.index(b"\xff\xda")
    end = data.index(b"\xff\xda", start + 2)  # the next scan begins where this one ends
    return data[:start] + data[start:end] * (scans - data.count(b"\xff\xda") + 1) + data[start:]


def test_a_jpeg_with_thousands_of_scans_is_refused_before_decoding() -> None:
    ordinary = jpeg_bytes(CAT, progressive=True)
    assert normalize_image(ordinary, max_side=256).width == 160  # about ten scans: fine
    hostile = many_scans(MAX_JPEG_SCANS * 4)
    with pytest.raises(NormalizeError, match=r"2,0\d\d scans"):
        normalize_image(hostile, max_side=256)
