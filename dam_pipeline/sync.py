"""Change detection for the upload sensor: what was uploaded, overwritten or deleted.

The pipeline's own manifests are the record of what has been processed: an object whose
version (ETag, or size+mtime+inode for a folder) differs from the one in its partition's
last ``raw_images`` manifest is a change, and a key in the manifest that is no longer
listed is a deletion. Nothing is compared twice against a stale copy, and a change that is
being processed maps to the same run key until its run updates the manifest.

A tick lists for at most ``budget_seconds``, then stores where it stopped (the last key,
used as S3 ``StartAfter``) in the cursor and continues on the next tick, so a tick stays
within Dagster's sensor time limit however large the bucket. Deletions are judged only for
partitions whose whole key range was listed within one tick.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from dam_pipeline.keys import ROOT_PARTITION, decode_prefix, encode_prefix
from dam_pipeline.manifests import ManifestStore
from dam_pipeline.sources import Source, is_media_key
from dam_pipeline.sources.base import partition_of

DEFAULT_BUDGET_SECONDS = 40.0


class ProcessedVersions(Mapping[str, Mapping[str, str]]):
    """partition key -> {object key: version} from each partition's last ``raw_images``
    manifest, read when first asked for: a tick that lists two partitions reads two
    manifests, not every partition's."""

    def __init__(self, manifests: ManifestStore, partition_keys: Iterable[str]) -> None:
        self._manifests = manifests
        self._keys = list(dict.fromkeys(partition_keys))
        self._known_keys = set(self._keys)
        self._read: dict[str, dict[str, str] | None] = {}

    def _versions(self, key: str) -> dict[str, str] | None:
        if key not in self._read:
            manifest = self._manifests.read("raw_images", key) if key in self._known_keys else None
            self._read[key] = None if manifest is None else {r.key: r.version for r in manifest}
        return self._read[key]

    def __getitem__(self, key: str) -> Mapping[str, str]:
        versions = self._versions(key)
        if versions is None:
            raise KeyError(key)
        return versions

    def __iter__(self) -> Iterator[str]:
        return (key for key in self._keys if self._versions(key) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class ChangeScan:
    """What one tick found, grouped by partition key."""

    objects: int = 0
    complete: bool = False
    """True when this tick's listing reached the end of the source."""
    partitions: set[str] = field(default_factory=set)
    changed: dict[str, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    deleted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    cursor: str = ""

    def partitions_with_changes(self) -> list[str]:
        return sorted(set(self.changed) | set(self.deleted))

    def run_key(self, partition_key: str) -> str:
        """Derived from exactly this partition's changes: the same change set maps to the
        same key (Dagster never launches it twice); a new change gives a new key."""
        changes = [
            sorted(self.changed.get(partition_key, [])),
            sorted(self.deleted.get(partition_key, [])),
        ]
        digest = hashlib.sha256(json.dumps(changes).encode()).hexdigest()[:20]
        return f"{partition_key}:{digest}"


def _key_range(partition_key: str) -> tuple[str, str] | None:
    """The lexicographic [first, past-the-end) range of keys of a folder partition."""
    if partition_key == ROOT_PARTITION:
        return None  # top-level files interleave with folders: only a full pass covers them
    prefix = decode_prefix(partition_key)
    return f"{prefix}/", f"{prefix}0"  # "0" sorts right after "/"


def _covered(partition_key: str, start_after: str | None, stopped_at: str | None) -> bool:
    """Did a listing from ``start_after`` (None: the start) to ``stopped_at`` (None: the end)
    see every key the partition can have?"""
    span = _key_range(partition_key)
    if span is None:
        return start_after is None and stopped_at is None
    first, end = span
    return (start_after is None or start_after < first) and (
        stopped_at is None or end <= stopped_at
    )


def scan_changes(
    source: Source,
    cursor: str | None,
    known: Mapping[str, Mapping[str, str]] | None = None,
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
) -> ChangeScan:
    """List (part of) the source and compare it with ``known``: partition key -> {object key:
    version} from the last manifests (a partition absent from it has never been processed)."""
    known = known or {}
    start_after = json.loads(cursor).get("start_after") if cursor else None
    deadline = time.monotonic() + budget_seconds
    listed: dict[str, set[str]] = defaultdict(set)
    last_key: str | None = None
    result = ChangeScan()
    for index, obj in enumerate(source.iter_all_objects(start_after=start_after)):
        if index and index % 500 == 0 and time.monotonic() > deadline:
            break  # resume after last_key on the next tick
        last_key = obj.key
        if obj.ignored or not is_media_key(obj.key):
            continue
        result.objects += 1
        partition_key = encode_prefix(partition_of(obj.key, source.depth))
        result.partitions.add(partition_key)
        listed[partition_key].add(obj.key)
        if known.get(partition_key, {}).get(obj.key) != obj.version:
            result.changed[partition_key].append((obj.key, obj.version))
    else:
        result.complete = True
        last_key = None

    for partition_key, versions in known.items():
        if _covered(partition_key, start_after, last_key):
            gone = sorted(set(versions) - listed.get(partition_key, set()))
            if gone:
                result.deleted[partition_key] = gone
    result.cursor = json.dumps({"start_after": last_key})
    return result


def scan_partitions(
    source: Source, partitions: set[str], known: Mapping[str, Mapping[str, str]]
) -> ChangeScan:
    """List these partitions whole (and only them) and compare them with ``known``: what a
    folder's changed signatures point at (``LocalFolderSource.folder_signatures``)."""
    result = ChangeScan(complete=True)
    for partition_key in sorted(partitions):
        listed: set[str] = set()
        for obj in source.iter_objects(decode_prefix(partition_key)):
            if obj.ignored or not is_media_key(obj.key):
                continue
            if encode_prefix(partition_of(obj.key, source.depth)) != partition_key:
                continue  # the root's listing holds only its own files; to be sure
            result.objects += 1
            result.partitions.add(partition_key)
            listed.add(obj.key)
            if known.get(partition_key, {}).get(obj.key) != obj.version:
                result.changed[partition_key].append((obj.key, obj.version))
        gone = sorted(set(known.get(partition_key, {})) - listed)
        if gone:
            result.deleted[partition_key] = gone
    return result


def follow_source(
    source: Source,
    cursor: str | None,
    known: Mapping[str, Mapping[str, str]],
    budget_seconds: float = DEFAULT_BUDGET_SECONDS,
    reconcile_seconds: float = 3600.0,
    now: float | None = None,
) -> ChangeScan:
    """One tick of the upload sensor. A bucket is listed (``scan_changes``). A folder is
    listed whole once every ``reconcile_seconds``; in between, only the partitions whose
    folder signatures changed since the last tick are listed (a tick over a folder where
    nothing changed reads its directories, not its files). The signatures a listing pass
    records are those taken when it began, so a change made during the pass is seen."""
    signatures_of = getattr(source, "folder_signatures", None)
    if signatures_of is None:
        return scan_changes(source, cursor, known, budget_seconds)
    state = json.loads(cursor) if cursor else {}
    now = time.time() if now is None else now
    signatures = {encode_prefix(p): digest for p, digest in signatures_of().items()}
    previous = state.get("folders")
    listed_at = float(state.get("listed_at", 0.0))
    if (
        previous is not None
        and not state.get("start_after")
        and now - listed_at < reconcile_seconds
    ):
        touched = {
            k for k in signatures.keys() | previous.keys() if signatures.get(k) != previous.get(k)
        }
        result = scan_partitions(source, touched, known)
        result.cursor = json.dumps({"folders": signatures, "listed_at": listed_at})
        return result
    pass_began = state.get("pass_folders") if state.get("start_after") else signatures
    result = scan_changes(source, cursor, known, budget_seconds)
    if result.complete:
        result.cursor = json.dumps({"folders": pass_began, "listed_at": now})
    else:
        result.cursor = json.dumps({**json.loads(result.cursor), "pass_folders": pass_began})
    return result
