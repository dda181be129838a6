"""Content-addressed storage of normalized JPEGs: the name is the sha256 of the bytes.

Two implementations: a folder in the data directory (the embedded profile) and an S3
bucket/prefix (``DAM_OBJECT_STORE=s3://bucket/prefix``, the shared profile: every worker
of every machine reads what any of them wrote). Either way an object is written once,
whatever key or partition it came from, and never changed.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Protocol

from PIL import Image


class ObjectStore(Protocol):
    location: str

    def put(self, data: bytes) -> str:
        """Store ``data`` once, whatever key it came from; return its digest."""
        ...

    def has(self, digest: str | None) -> bool: ...

    def read_bytes(self, digest: str) -> bytes: ...

    def local_path(self, digest: str) -> Path | None:
        """A file on this machine holding the object, when there is one."""
        ...

    def open_image(self, digest: str, min_side: int | None = None) -> Image.Image:
        """The normalized image as RGB; with ``min_side``, decoded at the smallest JPEG scale
        that keeps both sides at least that long (much faster when a model wants 224 px)."""
        ...


def _decode(fp: Any, min_side: int | None) -> Image.Image:
    with Image.open(fp, formats=["JPEG"]) as image:
        if min_side:
            image.draft("RGB", (min_side, min_side))
        return image.convert("RGB")


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FolderObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / f"{digest}.jpg"

    def put(self, data: bytes) -> str:
        digest = _digest(data)
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

    def read_bytes(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def local_path(self, digest: str) -> Path | None:
        return self.path_for(digest)

    def open_image(self, digest: str, min_side: int | None = None) -> Image.Image:
        return _decode(self.path_for(digest), min_side)


class S3ObjectStore:
    """``s3://bucket/prefix``: objects at ``<prefix>/<ab>/<digest>.jpg``, through the same
    S3 client as the source (any S3-compatible endpoint)."""

    def __init__(self, url: str, client: Any) -> None:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"DAM_OBJECT_STORE={url!r} names no bucket: use s3://bucket/prefix.")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client
        self.location = f"s3://{bucket}/{self.prefix}"

    def key_for(self, digest: str) -> str:
        name = f"{digest[:2]}/{digest}.jpg"
        return f"{self.prefix}/{name}" if self.prefix else name

    def put(self, data: bytes) -> str:
        """One request: the key is the content's hash, so writing it again (another worker,
        another partition) writes the same bytes; asking first would cost a second one."""
        digest = _digest(data)
        self.client.put_object(
            Bucket=self.bucket, Key=self.key_for(digest), Body=data, ContentType="image/jpeg"
        )
        return digest

    def has(self, digest: str | None) -> bool:
        if not digest:
            return False
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(digest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def read_bytes(self, digest: str) -> bytes:
        reply = self.client.get_object(Bucket=self.bucket, Key=self.key_for(digest))
        return reply["Body"].read()

    def local_path(self, digest: str) -> Path | None:
        return None

    def open_image(self, digest: str, min_side: int | None = None) -> Image.Image:
        return _decode(io.BytesIO(self.read_bytes(digest)), min_side)
