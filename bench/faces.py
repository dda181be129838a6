"""What the faces stage costs, and how well it groups faces into people.

- Cost: the detector on every photo, the descriptor on every face, measured on the
  normalized images (as the stage sees them): ms a photo without faces (``coco_dev``
  photos labelled with nobody in them, ``bench/data/people_labels.json``), ms a photo with
  faces and ms a face (``faces_dev``).
- Grouping on ``faces_dev`` (16 photos, 5 people; a development set: the threshold was
  chosen on it): the faces go through the project's own code twice, once as an ingest
  would group them (one at a time, ``assign_new_faces``) and once as a regroup would
  (``regroup``); pairwise precision and recall of "same person" over the labelled faces,
  people split into several groups and groups holding several people.

    python -m bench.faces --json out.json
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.retrieval_quality import DEFAULT_EVAL_SET
from dam_pipeline.faces.describe import DlibFaceDescriber
from dam_pipeline.faces.grouping import FaceNeighbours, assign_new_faces, regroup
from dam_pipeline.faces.people_store import SqlitePeopleStore, StoredFace, unit
from dam_pipeline.imaging import normalize_image

FACES_DEV = DEFAULT_EVAL_SET.parent / "faces_dev"
PEOPLE_LABELS = Path(__file__).resolve().parent / "data" / "people_labels.json"
POSITIONS = Path(__file__).resolve().parent / "data" / "faces_dev_positions.json"
MAX_SIDE = 1024


def _normalized(path: Path) -> Image.Image:
    decoded = normalize_image(path.read_bytes(), max_side=MAX_SIDE)
    return Image.open(io.BytesIO(decoded.jpeg)).convert("RGB")


def _timed(describer: DlibFaceDescriber, image: Image.Image):
    start = time.perf_counter()
    found = describer.faces(image)
    return found, (time.perf_counter() - start) * 1000


def face_labels(folder: Path, faces: dict[str, list]) -> dict[tuple[str, int], str]:
    """(photo, face index) -> who, where it is known: a photo of one labelled person with
    one face found, or a listed left-to-right order."""
    labels = json.loads((folder / "labels.json").read_text())
    order = json.loads(POSITIONS.read_text())["left_to_right"]
    known = {}
    for photo, found in faces.items():
        names = labels.get(photo, [])
        if len(names) == 1 and len(found) == 1:
            known[(photo, 0)] = names[0]
        elif photo in order and len(found) >= len(order[photo]):
            # the labelled people are the largest faces (face_02 has a small one behind)
            largest = sorted(range(len(found)), key=lambda i: -found[i].size)
            by_left = sorted(largest[: len(order[photo])], key=lambda i: found[i].box[0])
            for name, index in zip(order[photo], by_left, strict=True):
                known[(photo, index)] = name
    return known


def grouping_quality(groups: dict[tuple[str, int], int], labels: dict) -> dict:
    """Pairwise precision / recall of "same person" over the labelled faces, and people
    split over groups or groups mixing people."""
    faces = [face for face in groups if face in labels]
    same_true = same_found = both = 0
    for a, b in itertools.combinations(faces, 2):
        truly, found = labels[a] == labels[b], groups[a] == groups[b]
        same_true += truly
        same_found += found
        both += truly and found
    people = {labels[f] for f in faces}
    split = sum(1 for p in people if len({groups[f] for f in faces if labels[f] == p}) > 1)
    mixed = sum(
        1
        for g in set(groups[f] for f in faces)
        if len({labels[f] for f in faces if groups[f] == g}) > 1
    )
    return {
        "labelled_faces": len(faces),
        "faces_found": len(groups),
        "groups": len(set(groups.values())),
        "pairwise_precision": round(both / same_found, 3) if same_found else None,
        "pairwise_recall": round(both / same_true, 3) if same_true else None,
        "people_split": split,
        "groups_mixing_people": mixed,
        "people": len(people),
    }


def measure(folder: Path, eval_set: Path) -> dict:
    describer = DlibFaceDescriber()
    describer.load()
    no_people = [
        name
        for name, count in json.loads(PEOPLE_LABELS.read_text())["counts"].items()
        if count == 0
    ]
    without_ms = []
    for name in no_people:
        image = _normalized(eval_set / "images" / name)
        found, ms = _timed(describer, image)
        if not found.faces:
            without_ms.append(ms)
    faces: dict[str, list] = {}
    with_ms = []
    for path in sorted(folder.glob("*.jpg")):
        found, ms = _timed(describer, _normalized(path))
        faces[path.name] = found.faces
        if found.faces:
            with_ms.append((ms, len(found.faces)))
    labels = face_labels(folder, faces)
    grouped = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("incremental", "regroup"):
            store = SqlitePeopleStore(Path(tmp) / f"{mode}.sqlite")
            stored = [
                StoredFace(f"{photo}#{i}", "dev", photo, photo, face.box, face.size,
                           face.sharpness, face.score, face.chip, unit(face.descriptor))
                for photo, found in faces.items() for i, face in enumerate(found)
            ]  # fmt: skip
            store.replace_photos("dev", stored, keep_keys=[])
            assign_new_faces(stored, store, FaceNeighbours(store))
            if mode == "regroup":
                regroup(store)
            person = {f.face_id: f.person_id for f in store.faces()}
            groups = {(s.key, int(s.face_id.split("#")[1])): person[s.face_id] for s in stored}
            grouped[mode] = grouping_quality(groups, labels)
    face_count = sum(n for _, n in with_ms)
    without = sum(without_ms) / max(1, len(without_ms))
    with_total = sum(ms for ms, _ in with_ms)
    return {
        "ms_per_photo_without_faces": round(without, 1),
        "photos_without_faces": len(without_ms),
        "ms_per_photo_with_faces": round(with_total / max(1, len(with_ms)), 1),
        "photos_with_faces": len(with_ms),
        # what a face adds to a photo: a photo's cost beyond the detector, per face
        "ms_per_face": round((with_total - len(with_ms) * without) / max(1, face_count), 1),
        "faces": face_count,
        "grouping": grouped,
        "tuned_on": "faces_dev (the threshold was chosen on it): development figures",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces-dev", type=Path, default=FACES_DEV)
    parser.add_argument("--eval-set", type=Path, default=DEFAULT_EVAL_SET)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    result = measure(args.faces_dev, args.eval_set)
    args.json.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
