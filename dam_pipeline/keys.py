"""Reversible partition keys and deterministic vector ids.

A bucket prefix may hold ``/``, spaces, ``%``, ``..`` or any unicode. Dagster rejects
partition keys with ``...`` or control characters, file systems dislike ``/`` and leading
dots, and the CLI splits ranges on ``,``. ``encode_prefix`` escapes exactly those (and ASCII
punctuation outside a safe set), keeps letters of any script, symbols and emoji readable,
and ``decode_prefix`` undoes it.
"""

from __future__ import annotations

import hashlib
import uuid
from urllib.parse import unquote

ROOT_PARTITION = "~root"
"""Partition for objects that sit at the top of the bucket, outside any folder.

``~`` is always escaped by ``encode_prefix``, so no real prefix can collide with it."""

_SAFE_PUNCTUATION = frozenset(" _-.@+=()&!'")
_ID_NAMESPACE = uuid.UUID("6f1c2a55-4b7e-4c5e-9a1d-2f3b8c7d9e10")


def _escape_char(char: str) -> str:
    if char.isalnum() or char in _SAFE_PUNCTUATION:
        return char
    if not char.isascii() and char.isprintable() and not char.isspace():
        return char  # symbols and emoji (✨, ☕, №) stay readable in the UI

    # A folder name that is not UTF-8 reaches us with its bytes as lone surrogates
    # (surrogateescape): those bytes are escaped as themselves, so the key stays reversible.
    return "".join(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogateescape"))


def encode_prefix(prefix: str) -> str:
    """Turn a bucket prefix (``""`` for the top level) into a partition key."""
    prefix = prefix.strip("/")
    if not prefix:
        return ROOT_PARTITION
    key = "".join(_escape_char(c) for c in prefix)
    if key.startswith(".") or ".." in key:
        key = key.replace(".", "%2E")
    return key


def decode_prefix(partition_key: str) -> str:
    """Inverse of ``encode_prefix``."""
    if partition_key == ROOT_PARTITION:
        return ""
    return unquote(partition_key, errors="surrogateescape")


def vector_id(source_id: str, key: str) -> str:
    """Deterministic id of one object's vector: the same bucket + key always maps to it."""
    return str(uuid.uuid5(_ID_NAMESPACE, f"{source_id}\x00{key}"))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


SHOT_MARK = "#shot-"


def shot_key(video_key: str, index: int) -> str:
    """The key of one shot of a video: indexed, searched and shown like an image's key. No
    image key ends this way (image keys end in their extension)."""
    return f"{video_key}{SHOT_MARK}{index:03d}"


def video_of(key: str) -> str:
    """The video a shot key belongs to ("" for an image's key)."""
    video, mark, number = key.rpartition(SHOT_MARK)
    return video if mark and number.isdigit() else ""
