"""How long the upload sensor's change detection takes on a large folder, before and after
folder signatures.

    python -m bench.folder_tick --objects 100000 [--json OUT]

Fills a folder with N small files under 100 prefixes (what a listing sees; no file is
decoded), lets ``sync.follow_source`` list it once (everything new), marks it processed,
then times: a full listing with nothing changed (what every tick did before), a tick with
nothing changed (the folder signatures alone), and a tick after 5 new files in one prefix.
Files listed (each one a ``stat``) are counted for each. The sensor also reads the
processed versions of each partition it compares (its ``raw_images`` manifest): every
partition on a full listing, only the listed ones on the others; that is not timed here.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from dam_pipeline.sync import follow_source, scan_changes
from dam_pipeline_tests.counting import CountingFolder

HOUR = 3600.0


def fill(root: Path, objects: int, prefixes: int = 100) -> None:
    for p in range(prefixes):
        (root / f"p{p:03d}").mkdir(parents=True, exist_ok=True)
    for i in tqdm(range(objects), desc="files", unit="file", mininterval=5):
        (root / f"p{i % prefixes:03d}" / f"img{i:07d}.jpg").write_bytes(b"x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dam-folder-tick-"))
    try:
        root = work / "library"
        fill(root, args.objects)
        source = CountingFolder(root)
        known: dict[str, dict[str, str]] = {}
        first = follow_source(source, None, known, budget_seconds=1e9, now=0.0)
        for partition, changes in first.changed.items():
            known.setdefault(partition, {}).update(changes)

        def timed(call) -> tuple[float, int, object]:
            source.listed = 0
            start = time.perf_counter()
            result = call()
            return round(time.perf_counter() - start, 3), source.listed, result

        full_s, full_listed, full = timed(lambda: scan_changes(source, None, known, 1e9))
        quiet_s, quiet_listed, quiet = timed(
            lambda: follow_source(source, first.cursor, known, 1e9, HOUR, now=10.0)
        )
        for i in range(5):
            (root / "p042" / f"new{i}.jpg").write_bytes(b"x")
        changed_s, changed_listed, changed = timed(
            lambda: follow_source(source, quiet.cursor, known, 1e9, HOUR, now=20.0)
        )
        result = {
            "objects": args.objects,
            "prefixes": 100,
            "full_listing": {"seconds": full_s, "files_listed": full_listed,
                             "partitions_with_changes": len(full.partitions_with_changes())},
            "signatures_nothing_changed": {"seconds": quiet_s, "files_listed": quiet_listed,
                                           "partitions_with_changes":
                                           len(quiet.partitions_with_changes())},
            "signatures_5_new_in_one_prefix": {
                "seconds": changed_s, "files_listed": changed_listed,
                "partitions_with_changes": changed.partitions_with_changes(),
                "new_files": sum(len(v) for v in changed.changed.values()),
            },
        }  # fmt: skip
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
