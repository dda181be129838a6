"""A corpus of bad and awkward inputs, generated here, through the real pipeline: every
input ends captioned or quarantined with a reason a person understands, and counts add up."""

from __future__ import annotations

import io
import random
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from dam_pipeline import components
from dam_pipeline.imaging import normalize_image
from dam_pipeline.settings import Settings
from dam_pipeline_tests.conftest import ingest, jpeg_bytes, photo


def _png(image: Image.Image, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", **save_args)
    return out.getvalue()


def png_bomb(width: int = 40_000, height: int = 40_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (the IHDR CRC is fixed up)."""
    data = bytearray(_png(Image.new("1", (1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17]))
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("red", "green", "blue")]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


def multipage_tiff() -> bytes:
    pages = [photo("coffee"), Image.new("RGB", (32, 32), "black")]
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=pages[1:])
    return out.getvalue()


def corrupt_exif_jpeg() -> bytes:
    garbage = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + random.Random(1).randbytes(60)
    return jpeg_bytes(photo("chelsea"), exif=garbage)


def heic_bytes() -> bytes | None:
    try:
        import pillow_heif

        out = io.BytesIO()
        pillow_heif.from_pillow(photo("rocket")).save(out, format="HEIF", quality=60)
        return out.getvalue()
    except Exception:  # no HEIF encoder in this build
        return None


def corpus() -> dict[str, bytes]:
    coffee = jpeg_bytes(photo("coffee"))
    palette = photo("chelsea").convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = 0
    files = {
        "bad/truncated.jpg": coffee[: len(coffee) // 3],
        "bad/zero-bytes.jpg": b"",
        "bad/random-bytes.jpg": random.Random(0).randbytes(4096),
        "bad/error-page.png": b"<!DOCTYPE html><html><head><title>502</title></head></html>",
        "bad/bomb.png": png_bomb(),
        "bad/vector.svg": b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "odd/one-pixel.png": _png(Image.new("RGB", (1, 1), "white")),
        "odd/huge-valid.jpg": jpeg_bytes(photo("coffee").resize((8000, 6000))),
        "odd/cmyk.jpg": jpeg_bytes(photo("chelsea").convert("CMYK")),
        "odd/sixteen-bit.png": _png(
            Image.fromarray((np.linspace(0, 65535, 96 * 64).reshape(64, 96)).astype(np.uint16))
        ),
        "odd/palette-transparent.png": _png(palette),
        "odd/animated.gif": animated_gif(),
        "odd/multipage.tif": multipage_tiff(),
        "odd/corrupt-exif.jpg": corrupt_exif_jpeg(),
    }
    heic = heic_bytes()
    if heic:
        files["odd/photo.heic"] = heic
    return files


EXPECTED_REASONS = {
    "bad/truncated.jpg": "truncated",
    "bad/zero-bytes.jpg": "empty",
    "bad/random-bytes.jpg": "not an image in a supported format",
    "bad/error-page.png": "HTML page",
    "bad/bomb.png": "decompression bomb",
    "bad/vector.svg": "SVG",
}


def test_every_input_is_captioned_or_quarantined_with_a_reason(
    settings: Settings, instance
) -> None:
    files = corpus()
    for key, data in files.items():
        path = settings.layout.library / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    results = ingest(settings, instance)
    bad, odd = results["bad"], results["odd"]
    for partition in (bad, odd):
        captions = partition["captions"]
        assert (
            captions["seen"] == captions["processed"] + captions["quarantined"] + captions["failed"]
        )
    assert bad["captions"]["processed"] == 0 and bad["captions"]["quarantined"] == len(
        EXPECTED_REASONS
    )
    assert odd["captions"]["quarantined"] == 0
    assert odd["captions"]["processed"] == len([k for k in files if k.startswith("odd/")])

    table = bad["normalized_images"]["quarantine"]
    for key, reason in EXPECTED_REASONS.items():
        row = next(line for line in table.splitlines() if key in line)
        assert reason in row, row
    assert bad["vector_index"]["indexed"] == 0 and odd["vector_index"]["indexed"] >= 8


def test_quarantine_share_check_warns(settings: Settings, instance) -> None:
    import dagster as dg

    from dam_pipeline.definitions import build_definitions
    from dam_pipeline.defs.instance import register_prefixes

    for key, data in {
        "mixed/good.jpg": jpeg_bytes(photo("coffee")),
        "mixed/bad.jpg": b"junk",
    }.items():
        path = settings.layout.library / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    register_prefixes(instance, components.open_source(settings))
    result = (
        build_definitions(settings)
        .resolve_job_def("ingest_job")
        .execute_in_process(partition_key="mixed", instance=instance)
    )
    evaluations = {e.asset_check_key.name: e for e in result.get_asset_check_evaluations()}
    share = evaluations["captions_quarantine_share"]
    assert share.passed is False and share.severity == dg.AssetCheckSeverity.WARN
    assert share.metadata["quarantined"].value == 1
    assert evaluations["vector_index_matches_manifest"].passed is True


@pytest.mark.parametrize("orientation", range(1, 9))
def test_all_eight_exif_orientations_come_out_upright(orientation: int) -> None:
    upright = np.zeros((60, 90, 3), dtype=np.uint8)
    upright[:20, :30] = (255, 0, 0)  # a red block in the top-left corner
    upright[40:, 60:] = (0, 0, 255)  # a blue block in the bottom-right corner
    reference = Image.fromarray(upright)
    # What a camera would store so that applying `orientation` shows `reference`.
    inverse = {
        1: [],
        2: [Image.Transpose.FLIP_LEFT_RIGHT],
        3: [Image.Transpose.ROTATE_180],
        4: [Image.Transpose.FLIP_TOP_BOTTOM],
        5: [Image.Transpose.TRANSPOSE],
        6: [Image.Transpose.ROTATE_90],
        7: [Image.Transpose.TRANSVERSE],
        8: [Image.Transpose.ROTATE_270],
    }[orientation]
    stored = reference
    for step in inverse:
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation
    result = normalize_image(jpeg_bytes(stored, exif=exif.tobytes()), max_side=1024)
    out = np.asarray(Image.open(io.BytesIO(result.jpeg)).convert("RGB"), dtype=np.int16)
    assert out.shape == upright.shape
    assert np.abs(out - upright).mean() < 12
