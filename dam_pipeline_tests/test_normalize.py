import io

import numpy as np
import pytest
from PIL import Image

from dam_pipeline.imaging import FolderObjectStore, NormalizeError, normalize_image
from dam_pipeline_tests.conftest import jpeg_bytes, photo


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def test_caps_longest_side_and_keeps_aspect() -> None:
    big = photo("chelsea").resize((2902, 2100))
    result = normalize_image(jpeg_bytes(big), max_side=512)
    assert 0.75 * 512 <= max(result.width, result.height) <= 512  # see DRAFT_SLACK
    assert result.width / result.height == pytest.approx(2902 / 2100, rel=0.01)
    assert (result.original_width, result.original_height) == (2902, 2100)
    assert _decode(result.jpeg).size == (result.width, result.height)


def test_camera_jpeg_is_decoded_at_reduced_scale() -> None:
    camera = jpeg_bytes(photo("coffee").resize((4032, 3024)))
    result = normalize_image(camera, max_side=1024)
    assert (result.width, result.height) == (1008, 756)  # libjpeg's 1/4 scale, no resampling
    assert (result.original_width, result.original_height) == (4032, 3024)


def test_exif_orientation_is_applied() -> None:
    # A landscape picture whose left half is red, stored with "rotate 90° CW to view" (6).
    pixels = np.zeros((100, 200, 3), dtype=np.uint8)
    pixels[:, :100] = (255, 0, 0)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    result = normalize_image(jpeg_bytes(image, exif=exif.tobytes()), max_side=1024)
    upright = np.asarray(_decode(result.jpeg))
    assert (result.width, result.height) == (100, 200)
    # After rotating clockwise, the red half is on top.
    assert upright[:90, :, 0].mean() > 200 and upright[110:, :, 0].mean() < 60


def test_png_with_transparency_becomes_rgb_on_white() -> None:
    image = Image.new("RGBA", (50, 40), (0, 0, 255, 0))
    out = io.BytesIO()
    image.save(out, format="PNG")
    result = normalize_image(out.getvalue(), max_side=1024)
    assert result.source_format == "PNG"
    assert np.asarray(_decode(result.jpeg)).mean() > 240


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage that is not an image" * 10, "not an image in a supported format"),
        (b"<!DOCTYPE html><html><body>403 Forbidden</body></html>", "HTML page"),
    ],
)
def test_undecodable_input_gives_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(NormalizeError, match=reason):
        normalize_image(data, max_side=256)


def test_truncated_jpeg_is_refused() -> None:
    data = jpeg_bytes(photo("coffee"))
    with pytest.raises(NormalizeError, match="corrupt or truncated"):
        normalize_image(data[: len(data) // 3], max_side=256)


def test_decompression_bomb_limit_is_enforced() -> None:
    data = jpeg_bytes(Image.new("RGB", (400, 300)))
    with pytest.raises(NormalizeError, match="decompression bomb"):
        normalize_image(data, max_side=256, max_pixels=100_000)


def test_object_store_is_content_addressed(tmp_path) -> None:
    store = FolderObjectStore(tmp_path)
    digest = store.put(b"same bytes")
    assert store.put(b"same bytes") == digest
    assert store.has(digest) and store.path_for(digest).read_bytes() == b"same bytes"
    assert len(list(tmp_path.rglob("*.jpg"))) == 1
