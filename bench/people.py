"""How well the people detector tells photos with people from photos without.

Runs the captioner's people detector on every photo of an eval set, decoded as the captioner
decodes it, against person counts labelled by eye (``bench/data/people_labels.json``; never
taken from the captions), and reports on each half of the set (even image ids tune, odd ids
report, as in ``retrieval_quality``):

- precision and recall of "there is someone in this photo";
- how often the phrase is right: one person, two, or three or more (a group);
- the time the two detectors take an image.

    python -m bench.people --eval-set ../shared/eval/coco_dev --json out.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from PIL import Image

from bench.retrieval_quality import DEFAULT_EVAL_SET
from dam_pipeline.captioning.base import ImageInput
from dam_pipeline.captioning.local import RESIZE_SHORT_SIDE
from dam_pipeline.captioning.people import PeopleDetector

LABELS = Path(__file__).resolve().parent / "data" / "people_labels.json"


def _bucket(count: int) -> int:
    return min(count, 3)


def _scores(rows: list[tuple[int, int]]) -> dict:
    """rows: (labelled count, detected count) per photo."""
    found = sum(detected > 0 for _, detected in rows)
    truly = sum(labelled > 0 for labelled, _ in rows)
    hits = sum(labelled > 0 and detected > 0 for labelled, detected in rows)
    with_people = [(labelled, detected) for labelled, detected in rows if labelled > 0]
    return {
        "photos": len(rows),
        "with_people": truly,
        "detected": found,
        "precision": round(hits / found, 3) if found else None,
        "recall": round(hits / truly, 3) if truly else None,
        "false_positives": found - hits,
        "count_phrase_right": round(
            sum(_bucket(a) == _bucket(b) for a, b in with_people) / len(with_people), 3
        )
        if with_people
        else None,
    }


def measure(eval_set: Path) -> dict:
    labels = json.loads(LABELS.read_text())["counts"]
    detector = PeopleDetector()
    if not detector.available:
        raise SystemExit("People detection is not installed (make setup installs it).")
    halves: dict[str, list[tuple[int, int]]] = {"tuning": [], "report": []}
    seconds = 0.0
    for name, labelled in sorted(labels.items()):
        path = eval_set / "images" / name
        if not path.exists():
            continue
        image: Image.Image = ImageInput(path=path).open(RESIZE_SHORT_SIDE)
        start = time.perf_counter()
        people = detector.detect(image)
        seconds += time.perf_counter() - start
        half = "tuning" if int(Path(name).stem) % 2 == 0 else "report"
        halves[half].append((labelled, people.count))
    photos = sum(len(rows) for rows in halves.values())
    return {
        "labels": str(LABELS.name),
        "milliseconds_per_image": round(1000 * seconds / max(1, photos), 1),
        **{half: _scores(rows) for half, rows in halves.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = measure(args.eval_set)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
