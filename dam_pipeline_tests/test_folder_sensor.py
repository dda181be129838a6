"""Following a folder without listing it every tick: folder signatures between the periodic
full listings (``sync.follow_source``), and the upload sensor on top of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dam_pipeline.sync import ChangeScan, follow_source
from dam_pipeline_tests.conftest import ingest, write_library
from dam_pipeline_tests.counting import CountingFolder
from dam_pipeline_tests.test_s3_source import SensorDriver

HOUR = 3600.0


def processed(known: dict, scan: ChangeScan) -> None:
    """What a run of each requested partition leaves in its manifest."""
    for partition, changes in scan.changed.items():
        known.setdefault(partition, {}).update(changes)
    for partition, gone in scan.deleted.items():
        for key in gone:
            known[partition].pop(key)


def write(root: Path, key: str, data: bytes = b"\xff\xd8 not decoded here") -> None:
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes(data)


def test_a_folder_is_followed_by_its_signatures_between_full_listings(tmp_path) -> None:
    root = tmp_path / "library"
    for prefix in ("beach", "city", "forest"):
        for i in range(3):
            write(root, f"{prefix}/{i}.jpg")
    write(root, "forest/deep/nested.jpg")
    source, known = CountingFolder(root), {}

    first = follow_source(source, None, known, reconcile_seconds=HOUR, now=0.0)
    assert first.complete and first.objects == 10 and source.listed >= 10
    assert sorted(first.partitions_with_changes()) == ["beach", "city", "forest"]
    processed(known, first)
    cursor = first.cursor

    def tick(at: float) -> ChangeScan:
        nonlocal cursor
        source.listed = 0
        scan = follow_source(source, cursor, known, reconcile_seconds=HOUR, now=at)
        cursor = scan.cursor
        processed(known, scan)
        return scan

    quiet = tick(10.0)  # nothing changed: no file is listed at all
    assert quiet.partitions_with_changes() == [] and source.listed == 0

    write(root, "city/new.jpg")
    (root / "beach" / "1.jpg").unlink()
    write(root, "forest/deep/another.jpg")  # deep inside a partition
    changed = tick(20.0)
    assert changed.changed == {"city": [("city/new.jpg", changed.changed["city"][0][1])],
                               "forest": [("forest/deep/another.jpg",
                                           changed.changed["forest"][0][1])]}  # fmt: skip
    assert changed.deleted == {"beach": ["beach/1.jpg"]}
    assert source.listed == 2 + 4 + 5  # beach, city and forest; nothing else

    write(root, "lake/one.jpg")  # a new partition
    write(root, "root.jpg")  # a file at the top: the root partition
    assert sorted(tick(30.0).partitions_with_changes()) == ["lake", "~root"]

    os.rename(root / "lake", tmp_path / "lake moved away")  # a partition folder removed
    assert tick(40.0).deleted == {"lake": ["lake/one.jpg"]}

    # a file overwritten in place leaves its folder's time alone: the signatures miss it,
    # the next full listing (after reconcile_seconds) finds it
    (root / "city" / "0.jpg").write_bytes(b"\xff\xd8 other bytes, longer than before")
    assert tick(50.0).partitions_with_changes() == []
    full = tick(50.0 + HOUR)
    assert full.changed == {"city": [("city/0.jpg", full.changed["city"][0][1])]}
    assert source.listed >= 12
    assert json.loads(cursor)["listed_at"] == 50.0 + HOUR


def test_the_upload_sensor_lists_a_quiet_folder_no_more(settings, instance) -> None:
    write_library(settings.layout.library, {"pets/cat.jpg": "chelsea"})
    ingest(settings, instance)
    driver = SensorDriver(settings, instance)
    assert [r.partition_key for r in driver.tick()] == []  # processed: nothing to run
    assert "folders" in json.loads(driver.cursor)
    write_library(settings.layout.library, {"pets/coffee.jpg": "coffee"})
    (request,) = driver.tick()
    assert request.partition_key == "pets" and request.tags["dam/changed"] == "1"
