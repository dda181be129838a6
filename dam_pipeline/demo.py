"""The demo library: real photographs that scikit-image ships, under a few prefixes.

The prefixes deliberately hold spaces, ``&`` and unicode, as real buckets do.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

DEMO_PHOTOS = {
    "pets & animals/chelsea the cat.jpg": "chelsea.png",
    "kitchen/coffee.jpg": "coffee.png",
    "space ✨/rocket launch.jpg": "rocket.jpg",
    "space ✨/astronaut.jpg": "astronaut.png",
    "space ✨/hubble deep field.jpg": "hubble_deep_field.jpg",
    "street/motorcycle.jpg": "motorcycle_left.png",
}

DEMO_QUESTION = "Which photo shows a cat?"


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def build_demo_library(library: Path) -> list[Path]:
    """Copy the demo photos into ``library`` as JPEGs (idempotent); return their paths."""
    written = []
    for key, name in DEMO_PHOTOS.items():
        target = library / key
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(skimage_data_dir() / name) as photo:
                photo.convert("RGB").save(target, format="JPEG", quality=92)
        written.append(target)
    return written
