"""A local folder treated as a bucket: a prefix is a folder, a key is a relative path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from dam_pipeline.sources.base import ObjectGoneError, SourceObject, partition_level


class LocalFolderSource:
    """Partitions are the folders ``depth`` levels down; files higher up belong to the
    nearest folder above them (the library's top level is the ``""`` prefix)."""

    def __init__(self, root: Path | str, depth: int = 1, library_id: str = "library") -> None:
        if depth < 1:
            raise ValueError(f"The partition depth must be 1 or more, not {depth}")
        self.root = Path(root).expanduser().resolve()
        self.depth = depth
        # What identifies the library to a user, not where it sits on disk: vector ids
        # derive from it, so moving the folder (or the data directory) keeps every id.
        self.source_id = f"folder:{library_id}"
        self.hashes_while_listing = True  # local reads are cheap: hash in raw_images

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise FileNotFoundError(
                f"The image library {self.root} does not exist. Create it and put images in "
                "folders below it, or point DAM_SOURCE at your library."
            )

    def list_prefixes(self) -> list[str]:
        self._check_root()
        prefixes: set[str] = set()
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root)
            level = 0 if rel == Path(".") else len(rel.parts)
            if level == self.depth:
                prefixes.add(rel.as_posix())
                dirnames[:] = []
            elif any(not f.startswith(".") for f in filenames):
                prefixes.add("" if level == 0 else rel.as_posix())
        return sorted(prefixes)

    def iter_objects(self, prefix: str) -> Iterator[SourceObject]:
        self._check_root()
        base = self._resolve(prefix) if prefix else self.root
        if not base.is_dir():
            return
        yield from self._walk(base, recursive=partition_level(prefix) >= self.depth)

    def iter_all_objects(self, start_after: str | None = None) -> Iterator[SourceObject]:
        self._check_root()
        objects = sorted(self._walk(self.root, recursive=True), key=lambda o: o.key)
        yield from (o for o in objects if start_after is None or o.key > start_after)

    def _walk(self, base: Path, recursive: bool) -> Iterator[SourceObject]:
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recursive else []
            for name in sorted(filenames):
                if name.startswith("."):
                    continue
                path = Path(dirpath) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                # ctime moves when a file is copied or moved in with an old mtime, so the
                # upload sensor sees it; the inode tells a replaced file from the old one.
                arrived = max(stat.st_mtime, stat.st_ctime)
                yield SourceObject(
                    key=path.relative_to(self.root).as_posix(),
                    size=stat.st_size,
                    last_modified=datetime.fromtimestamp(arrived, UTC).isoformat(),
                    version=f"{stat.st_size}-{stat.st_mtime_ns}-{stat.st_ino}",
                )

    def read_bytes(self, key: str) -> bytes:
        try:
            return self._resolve(key).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectGoneError(f"{key} is no longer in {self.root}") from exc

    def url_for(self, key: str) -> str:
        return str(self._resolve(key))

    def _resolve(self, key: str) -> Path:
        """Map a key to a path, refusing any that would escape the library."""
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise ValueError(f"Key {key!r} points outside the library {self.root}")
        return path
