"""Write short clips from still pictures (the demo's clip, test and bench clips): PyAV
encodes them, so nothing is downloaded and no binary fixture is kept."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CODEC_OF_SUFFIX = {".webm": "libvpx-vp9", ".mkv": "libx264", ".mp4": "libx264", ".mov": "libx264"}


def write_clip(
    path: Path,
    pictures: Sequence[Image.Image],
    seconds_each: float = 2.0,
    fps: int = 12,
    size: tuple[int, int] = (320, 240),
    codec: str | None = None,
    rotation: int = 0,
    frame_times: Iterable[float] | None = None,
    location: str = "",
) -> Path:
    """One shot per picture, ``seconds_each`` long, with a slow zoom so frames differ as in
    real footage. ``frame_times`` (seconds) gives a variable frame rate instead of ``fps``;
    ``rotation`` writes a display matrix (degrees counter-clockwise), as phones do;
    ``location`` an ISO 6709 position ("+38.7223-009.1393/"), as phones do."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    codec = codec or CODEC_OF_SUFFIX.get(path.suffix.lower(), "libx264")
    frames = [_fit(p, size) for p in pictures]
    per_shot = max(1, round(seconds_each * fps))
    times = list(frame_times) if frame_times is not None else None
    with av.open(str(path), mode="w") as container:
        if location:
            container.metadata["location"] = location
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if codec == "libvpx-vp9":
            stream.options = {"deadline": "realtime", "cpu-used": "8"}
        elif codec == "libx264":
            stream.options = {"preset": "ultrafast"}
        if rotation:
            stream.set_display_rotation(rotation)
        time_base = _time_base(fps, times)
        stream.codec_context.time_base = time_base
        count = 0
        for picture in frames:
            for step in range(per_shot):
                frame = av.VideoFrame.from_ndarray(_zoomed(picture, step / per_shot), "rgb24")
                seconds = times[count] if times is not None else count / fps
                frame.pts = round(seconds / time_base)
                frame.time_base = time_base
                count += 1
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _time_base(fps: int, times: list[float] | None):
    from fractions import Fraction

    return Fraction(1, 1000) if times is not None else Fraction(1, fps)


def _fit(picture: Image.Image, size: tuple[int, int]) -> np.ndarray:
    return np.asarray(picture.convert("RGB").resize(size, Image.Resampling.BILINEAR))


def _zoomed(pixels: np.ndarray, progress: float) -> np.ndarray:
    """Up to 5% zoom into the centre: consecutive frames differ a little, not a cut."""
    height, width = pixels.shape[:2]
    crop_y, crop_x = round(height * 0.025 * progress), round(width * 0.025 * progress)
    if not crop_x and not crop_y:
        return pixels
    inner = pixels[crop_y : height - crop_y, crop_x : width - crop_x]
    return np.asarray(Image.fromarray(inner).resize((width, height), Image.Resampling.BILINEAR))
