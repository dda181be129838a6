"""Shared fixtures: real photos from scikit-image, a temporary data directory, a Dagster
instance. Everything is real (models, Chroma, Dagster); nothing here needs the network."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import dagster as dg
import pytest
from PIL import Image

from dam_pipeline.demo import skimage_data_dir
from dam_pipeline.settings import Settings


def photo(name: str) -> Image.Image:
    """A real photograph shipped by scikit-image (chelsea, coffee, rocket, astronaut ...)."""
    path = next(skimage_data_dir().glob(f"{name}.*"))
    with Image.open(path) as image:
        return image.convert("RGB")


def jpeg_bytes(image: Image.Image, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, **save_args)
    return out.getvalue()


def write_library(root: Path, files: dict[str, bytes | str]) -> None:
    """Write ``key -> bytes`` (or the name of a scikit-image photo) under ``root``."""
    for key, content in files.items():
        target = root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(jpeg_bytes(photo(content)) if isinstance(content, str) else content)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data = tmp_path / "data"
    return Settings(
        data_dir=data,
        source=str(data / "library"),
        chroma_path=data / "chroma",
        workers=2,
    )


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance
