"""A library of camera-resolution photos made from the real photos scikit-image ships:
each is cropped, mirrored and colour-shifted differently, upscaled to 12 megapixels and
re-encoded as JPEG, so every file has its own content hash."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance
from tqdm import tqdm

from dam_pipeline.demo import skimage_data_dir

CAMERA_SIZE = (4032, 3024)  # 12.2 MP, a phone camera's 4:3 frame
SOURCE_PHOTOS = [
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "astronaut.png",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "immunohistochemistry.png",
]


def _one(args: tuple[Path, int, tuple[int, int]]) -> Path:
    folder, index, size = args
    target = folder / f"IMG_{index:05d}.jpg"
    if target.exists():
        return target
    names = [n for n in SOURCE_PHOTOS if (skimage_data_dir() / n).exists()]
    rng = np.random.default_rng(index)
    with Image.open(skimage_data_dir() / names[index % len(names)]) as source:
        image = source.convert("RGB")
    w, h = image.size
    left, top = int(rng.integers(0, w // 8)), int(rng.integers(0, h // 8))
    image = image.crop(
        (left, top, w - int(rng.integers(0, w // 8)), h - int(rng.integers(0, h // 8)))
    )
    if index % 2:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Color(image).enhance(float(rng.uniform(0.7, 1.3)))
    image = image.resize(size, Image.Resampling.BICUBIC)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".tmp")
    image.save(partial, format="JPEG", quality=90)
    partial.replace(target)  # a run stopped half-way never leaves a truncated photo behind
    return target


def make_camera_library(
    folder: Path, count: int, size: tuple[int, int] = CAMERA_SIZE, workers: int = 2
) -> list[Path]:
    """Write ``count`` photos into ``folder`` (reusing any already there)."""
    jobs = [(folder, i, size) for i in range(count)]
    with ProcessPoolExecutor(workers) as pool:
        return list(
            tqdm(pool.map(_one, jobs, chunksize=4), total=count, desc="making photos", unit="img")
        )
