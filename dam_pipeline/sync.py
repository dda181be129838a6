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
from collections.abc import Mapping
from dataclasses import dataclass, field

from dam_pipeline.keys import ROOT_PARTITION, decode_prefix, encode_prefix
from dam_pipeline.sources import Source, is_media_key
from dam_pipeline.sources.base import partition_of

DEFAULT_BUDGET_SECONDS = 40.0


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
