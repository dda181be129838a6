"""Content-addressed storage of normalized JPEGs: the path is the sha256 of the bytes."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from PIL import Image


class ObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.jpg"

    def put(self, data: bytes) -> str:
        """Store ``data`` once, whatever key it came from; return its digest."""
        digest = hashlib.sha256(data).hexdigest()
        path = self.path_for(digest)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, path)
        return digest

    def has(self, digest: str | None) -> bool:
        return bool(digest) and self.path_for(digest).exists()

    def open_image(self, digest: str, min_side: int | None = None) -> Image.Image:
        """The normalized image as RGB; with ``min_side``, decoded at the smallest JPEG scale
        that keeps both sides at least that long (much faster when a model wants 224 px)."""
        with Image.open(self.path_for(digest)) as image:
            if min_side:
                image.draft("RGB", (min_side, min_side))
            return image.convert("RGB")
