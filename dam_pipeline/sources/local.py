"""A local folder treated as a bucket: a prefix is a folder, a key is a relative path."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from dam_pipeline.sources.base import (
    ObjectGoneError,
    SourceObject,
    displayable_key,
    partition_level,
)


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
            elif filenames:  # files above the partition depth (even hidden ones, to count)
                prefixes.add("" if level == 0 else rel.as_posix())
        return sorted(prefixes)

    def folder_signatures(self) -> dict[str, str]:
        """prefix -> a digest of the modification times of its folders. Adding, removing or
        renaming a file changes its folder's time (and so this digest) without a look at any
        file; overwriting a file in place does not (the periodic full listing finds that).
        Reads directories only: no file is stat'ed."""
        self._check_root()
        times: dict[str, list[str]] = {}
        pending = [self.root]
        while pending:
            folder = pending.pop()
            rel = "" if folder == self.root else folder.relative_to(self.root).as_posix()
            prefix = "/".join(rel.split("/")[: self.depth]) if rel else ""
            try:
                times.setdefault(prefix, []).append(f"{rel}:{folder.stat().st_mtime_ns}")
                with os.scandir(folder) as entries:
                    for entry in entries:
                        if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False):
                            pending.append(Path(entry.path))
            except OSError as exc:  # unreadable: a changing digest, so it is listed
                times.setdefault(prefix, []).append(f"{rel}:{type(exc).__name__}")
        return {
            prefix: hashlib.sha256("\n".join(sorted(parts)).encode()).hexdigest()[:16]
            for prefix, parts in times.items()
        }

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
        """Everything below ``base`` (only its own files unless ``recursive``): readable
        files as objects, unreadable ones with a ``problem``, hidden files and folders and
        symlinked folders as ``ignored``. Nothing is passed over uncounted."""
        for dirpath, dirnames, filenames in os.walk(base):
            here = Path(dirpath)
            descend = []
            for name in sorted(dirnames):
                path = here / name
                if name.startswith("."):
                    yield self._ignored(path, "hidden folder (its name starts with a dot)")
                elif path.is_symlink():
                    yield self._ignored(path, "symlinked folder (folder links are not followed)")
                elif recursive:
                    descend.append(name)
            dirnames[:] = descend
            for name in sorted(filenames):
                path = here / name
                if name.startswith("."):
                    yield self._ignored(path, "hidden file (its name starts with a dot)")
                else:
                    yield self._object(path)

    def _key(self, path: Path) -> str:
        return displayable_key(path.relative_to(self.root).as_posix())

    def _ignored(self, path: Path, reason: str) -> SourceObject:
        return SourceObject(
            key=self._key(path), size=0, last_modified="", version="", ignored=reason
        )

    def _object(self, path: Path) -> SourceObject:
        key = self._key(path)
        try:
            link = path.lstat()
        except OSError as exc:
            return SourceObject(key, 0, "", "", problem=f"cannot be listed: {exc.strerror}")
        # A photo is dated by when it was modified, as photo managers do (never by the
        # inode's change time, which every copy, chmod or rename moves); what the sensors
        # compare is the version: size, mtime and inode tell a changed or replaced file.
        modified = datetime.fromtimestamp(link.st_mtime, UTC).isoformat()
        version = f"{link.st_size}-{link.st_mtime_ns}-{link.st_ino}"
        problem = self._unreadable(path, key)
        size = 0
        if not problem:
            target = path.stat()
            size = target.st_size
            version = f"{target.st_size}-{target.st_mtime_ns}-{target.st_ino}-{version}"
        return SourceObject(key, size, modified, version, problem=problem)

    def _unreadable(self, path: Path, key: str) -> str:
        """Why this entry must not be opened, or ``""``: only regular files inside the
        library are read (a FIFO would block forever, a device never ends)."""
        if key != path.relative_to(self.root).as_posix():
            return "the file name is not valid UTF-8: rename it"
        if path.is_symlink():
            try:
                target = path.resolve(strict=True)
            except RuntimeError:
                return "symlink loop"
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return "symlink loop"
                return "broken symlink (its target does not exist)"
            if self.root not in target.parents:
                return "symlink to a file outside the library (not followed)"
        try:
            mode = path.stat().st_mode
        except OSError as exc:
            return f"cannot be read: {exc.strerror}"
        if not stat.S_ISREG(mode):
            return f"not a regular file ({_file_kind(mode)}): only files are read"
        if not os.access(path, os.R_OK):
            return "cannot be read: permission denied"
        return ""

    def read_bytes(self, key: str, limit: int | None = None) -> bytes:
        with self._open(key) as handle:
            return handle.read(limit) if limit else handle.read()

    def content_hash(self, key: str) -> str:
        """sha256 of the file, streamed: a 200 MB TIFF is never held in memory to hash it."""
        with self._open(key) as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()

    def open_object(self, key: str) -> BinaryIO:
        return self._open(key)

    def local_path(self, key: str) -> Path:
        """The file of ``key`` inside the library (refused if it would escape it)."""
        return self._resolve(key)

    def _open(self, key: str) -> BinaryIO:
        path = self._resolve(key)
        try:
            if not stat.S_ISREG(path.stat().st_mode):
                raise ValueError(f"{key} is not a regular file: only files are read")
            return path.open("rb")
        except FileNotFoundError as exc:
            raise ObjectGoneError(f"{key} is no longer in {self.root}") from exc

    def url_for(self, key: str, media_type: str = "") -> str:
        return str(self._resolve(key))

    def _resolve(self, key: str) -> Path:
        """Map a key to a path, refusing any that would escape the library."""
        path = (self.root / key).resolve()
        if path != self.root and self.root not in path.parents:
            raise ValueError(f"Key {key!r} points outside the library {self.root}")
        return path


def _file_kind(mode: int) -> str:
    for test, kind in (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return kind
    return "not a file"
