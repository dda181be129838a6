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
DEMO_CLIP = "videos/demo reel.webm"
DEMO_CLIP_SHOTS = ("coffee.png", "chelsea.png", "rocket.jpg")
"""The demo clip: three shots of 2 s made from demo photos (written with PyAV at build
time: a search for the cat lands on its second shot, 00:02–00:04)."""


def skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def build_demo_library(library: Path, clip: bool = True) -> list[Path]:
    """Copy the demo photos into ``library`` as JPEGs and write the demo clip (idempotent);
    return their paths."""
    written = []
    for key, name in DEMO_PHOTOS.items():
        target = library / key
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with Image.open(skimage_data_dir() / name) as photo:
                photo.convert("RGB").save(target, format="JPEG", quality=92)
        written.append(target)
    if clip:
        target = library / DEMO_CLIP
        if not target.exists():
            from dam_pipeline.video.write import write_clip

            pictures = [Image.open(skimage_data_dir() / name) for name in DEMO_CLIP_SHOTS]
            partial = target.with_name(f".{target.name}.partial.webm")
            write_clip(partial, pictures, seconds_each=2.0, size=(640, 480))
            partial.replace(target)  # the sensor never sees half a clip
        written.append(target)
    return written
