"""The records each stage writes about the objects of one partition.

Assets pass these manifests between each other (never image bytes): a manifest says where
each object's bytes live and what was learnt about it. Every record carries the object
``key`` and a ``status`` so that, at every stage, seen = processed + quarantined.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

if TYPE_CHECKING:
    from dam_pipeline.postgres import PostgresDatabase

Status = Literal["ok", "quarantined", "failed", "deferred"]
"""ok: processed; quarantined: bad input, with its reason; failed: a provider error, retried
on the next run; deferred: not sent, the run's budget was spent (the next run sends it)."""
RETRIED = ("failed", "deferred")
"""Statuses the next run tries again: their old vectors stay in the index meanwhile."""


@dataclass(frozen=True)
class RawImage:
    """An image-like object found in the source."""

    key: str
    size: int
    last_modified: str
    version: str
    """What changes when the object changes: the ETag, or size + mtime for a folder."""
    content_hash: str | None = None
    """sha256 of the bytes, when known (the folder source hashes while listing)."""
    problem: str = ""
    """Why the object cannot be read (found while listing): it is quarantined, unopened."""


@dataclass(frozen=True)
class NormalizedImage:
    """An object after decoding: where its normalized JPEG lives, or why it could not be."""

    key: str
    version: str
    status: Status
    content_hash: str | None = None
    normalized_hash: str | None = None
    width: int = 0
    height: int = 0
    original_width: int = 0
    original_height: int = 0
    source_format: str | None = None
    exif: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    max_side: int = 0
    last_modified: str = ""
    dhash: str = ""
    """Perceptual hash of the normalized image (near-duplicate search)."""
    video_key: str = ""
    """For a shot of a video: the video's key (``key`` is then ``<video_key>#shot-NNN``)."""
    start_seconds: float = 0.0
    end_seconds: float = 0.0
    video_shots: int = 0
    """How many shots the video has (its shots' keys are numbered below it)."""
    retry: bool = False
    """Quarantined for the object's state (archived, unreadable, gone), not its content:
    tried again on the next run even if its version did not change."""


@dataclass(frozen=True)
class CaptionRecord:
    """What the captioner said about one normalized image."""

    key: str
    status: Status
    content_hash: str | None = None
    normalized_hash: str | None = None
    caption: str = ""
    """What the image shows, in words: this is what gets embedded."""
    facts: str = ""
    """Model-free facts (shape, size, EXIF) in a sentence: shown and keyword-searchable."""
    tags: list[str] = field(default_factory=list)
    labels: list[tuple[str, float]] = field(default_factory=list)
    colours: list[str] = field(default_factory=list)
    ocr_text: str = ""
    people: dict[str, Any] = field(default_factory=dict)
    """Who the people detector found: ``count`` and each box with its score."""
    exif: dict[str, Any] = field(default_factory=dict)
    captioner: str = ""
    """provider/model/prompt-version fingerprint: a change re-captions."""
    reason: str | None = None
    last_modified: str = ""
    dhash: str = ""
    video_key: str = ""
    start_seconds: float = 0.0
    end_seconds: float = 0.0
    video_shots: int = 0
    failure: str = ""
    """Why a failed or deferred caption is missing, by kind (``unusable answer``,
    ``timeout``, ``provider unavailable``, ``budget`` ...)."""
    unusable_runs: int = 0
    """Runs in a row whose answers for this image were unusable (the model drifts)."""


@dataclass(frozen=True)
class EmbeddingRecord:
    """Points at the cached vector of one caption (vectors stay out of the manifest)."""

    key: str
    status: Status
    content_hash: str | None = None
    text: str = ""
    input_hash: str = ""
    """What the vector was computed from: the text hash, or "image:<hash>" for image embedders."""
    embedder: str = ""
    dimension: int = 0
    reason: str | None = None
    caption: CaptionRecord | None = None
    visual: str = ""
    """The visual embedder whose vector of this image is cached (under "image:<hash>"), or
    "" when none is: "more like this" then falls back to the caption vector."""


@dataclass(frozen=True)
class IndexedRecord:
    """One object as it stands in the vector index."""

    key: str
    vector_id: str
    status: Status
    reason: str | None = None


@dataclass(frozen=True)
class FaceRecord:
    """The faces found in one normalized image (their details live in the people store)."""

    key: str
    status: Status
    normalized_hash: str | None = None
    face_ids: list[str] = field(default_factory=list)
    skipped_small: int = 0
    """Faces too small to describe reliably."""
    capped: int = 0
    """Faces beyond the per-photo cap (the smallest), not described."""
    reason: str | None = None
    model: str = ""


_RECORD_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        RawImage,
        NormalizedImage,
        CaptionRecord,
        EmbeddingRecord,
        IndexedRecord,
        FaceRecord,
    )
}


@dataclass
class Manifest:
    """A partition's records from one stage, plus the stage's own summary."""

    records: list[Any]
    summary: dict[str, Any] = field(default_factory=dict)
    FORMAT_VERSION: ClassVar[int] = 2

    def by_key(self) -> dict[str, Any]:
        return {record.key: record for record in self.records}

    def ok(self) -> list[Any]:
        return [r for r in self.records if getattr(r, "status", "ok") == "ok"]

    def not_ok(self) -> list[Any]:
        """Quarantined and failed records: everything that is accounted for but not indexed."""
        return [r for r in self.records if getattr(r, "status", "ok") != "ok"]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.records)


def status_counts(records: list[Any]) -> dict[str, int]:
    """seen = processed + quarantined + failed, for a stage's summary."""
    statuses = [r.status for r in records]
    return {
        "seen": len(statuses),
        "processed": statuses.count("ok"),
        "quarantined": statuses.count("quarantined"),
        "failed": statuses.count("failed"),
        "deferred": statuses.count("deferred"),
    }


def _encode(record: Any) -> dict[str, Any]:
    return {"type": type(record).__name__, **dataclasses.asdict(record)}


def _decode(row: dict[str, Any]) -> Any:
    cls = _RECORD_TYPES[row.pop("type")]
    if cls is CaptionRecord:
        row["labels"] = [tuple(label) for label in row.get("labels", [])]
    if cls is EmbeddingRecord and row.get("caption") is not None:
        row["caption"] = _decode({"type": "CaptionRecord", **row["caption"]})
    return cls(**row)


def encode_manifest(manifest: Manifest) -> str:
    """JSON lines: a header with the summary, then one record per line."""
    header = {"format": Manifest.FORMAT_VERSION, "summary": manifest.summary}
    lines = [json.dumps(header, ensure_ascii=False)]
    lines += [json.dumps(_encode(record), ensure_ascii=False) for record in manifest.records]
    return "\n".join(lines) + "\n"


def decode_manifest(text: str, where: str = "the manifest") -> Manifest:
    lines = iter(text.splitlines())
    header = json.loads(next(lines))
    if header.get("format") != Manifest.FORMAT_VERSION:
        raise ValueError(
            f"{where} was written by another version of dam_pipeline; "
            "re-materialize the asset to rewrite it"
        )
    records = [_decode(json.loads(line)) for line in lines if line.strip()]
    return Manifest(records=records, summary=header.get("summary", {}))


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write as JSON lines, atomically: a killed run never leaves half a manifest."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(encode_manifest(manifest))
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> Manifest:
    return decode_manifest(path.read_text(encoding="utf-8"), str(path))


def manifest_path(root: Path, asset: str, partition_key: str) -> Path:
    """Where one asset's manifest for one partition lives; partition keys are already safe
    file names (see ``keys.encode_prefix``), long ones are shortened with a hash."""
    name = partition_key
    if len(name.encode("utf-8")) > 180:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        name = f"{name[:60]}-{digest}"
    return root / asset / f"{name}.jsonl"


def read_manifest_if_exists(path: Path) -> Manifest | None:
    """The previous manifest, or None; an unreadable one is treated as absent (recomputed)."""
    try:
        return read_manifest(path)
    except (FileNotFoundError, ValueError, KeyError, TypeError, StopIteration):
        return None  # json.JSONDecodeError is a ValueError


class ManifestStore(Protocol):
    """Where each asset's manifest per partition is kept: the record incremental runs read."""

    def read(self, asset: str, partition_key: str) -> Manifest | None:
        """The last manifest written, or None (never written, or unreadable: recomputed)."""
        ...

    def write(self, asset: str, partition_key: str, manifest: Manifest) -> str:
        """Replace it atomically; returns where it is, for the run's metadata."""
        ...

    def delete(self, asset: str, partition_key: str) -> None: ...


class FolderManifestStore:
    """JSON lines under ``<data_dir>/manifests/<asset>/<partition>.jsonl``: readable by people."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def read(self, asset: str, partition_key: str) -> Manifest | None:
        return read_manifest_if_exists(manifest_path(self.root, asset, partition_key))

    def write(self, asset: str, partition_key: str, manifest: Manifest) -> str:
        path = manifest_path(self.root, asset, partition_key)
        write_manifest(path, manifest)
        return str(path)

    def delete(self, asset: str, partition_key: str) -> None:
        manifest_path(self.root, asset, partition_key).unlink(missing_ok=True)


_MANIFEST_TABLE = """
CREATE TABLE IF NOT EXISTS dam_manifests (
    asset TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    body TEXT NOT NULL,
    records INTEGER NOT NULL,
    written_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, partition_key)
);
"""


class PostgresManifestStore:
    """One row per (asset, partition) holding the same JSON lines as the folder store; a
    write replaces the row in one statement, so a reader never sees half a manifest."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        db.ensure_schema("manifests", _MANIFEST_TABLE)

    def read(self, asset: str, partition_key: str) -> Manifest | None:
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT body FROM dam_manifests WHERE asset = %s AND partition_key = %s",
                (asset, partition_key),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        try:
            return decode_manifest(row[0], f"the {asset} manifest of {partition_key}")
        except (ValueError, KeyError, TypeError, StopIteration):
            return None

    def write(self, asset: str, partition_key: str, manifest: Manifest) -> str:
        with self.db.cursor() as cursor:
            cursor.execute(
                "INSERT INTO dam_manifests (asset, partition_key, body, records) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (asset, partition_key) DO UPDATE SET "
                "body = EXCLUDED.body, records = EXCLUDED.records, written_at = now()",
                (asset, partition_key, encode_manifest(manifest), len(manifest)),
            )
        return f"postgres:dam_manifests/{asset}/{partition_key}"

    def delete(self, asset: str, partition_key: str) -> None:
        with self.db.cursor() as cursor:
            cursor.execute(
                "DELETE FROM dam_manifests WHERE asset = %s AND partition_key = %s",
                (asset, partition_key),
            )
