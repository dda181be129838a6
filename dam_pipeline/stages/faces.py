"""faces: every face in the partition's images found, described and put with a person.

A face is described once per normalized image and model (the content cache); an unchanged
photo never pays again, a changed one loses its old faces, a deleted one all of them. New
faces join the nearest person or start one (``faces.grouping``); names and a user's
decisions live in the people store and are never touched here.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

import numpy as np

from dam_pipeline.cache import ContentCache
from dam_pipeline.faces.describe import FaceDescriber, FacesInPhoto, FoundFace
from dam_pipeline.faces.grouping import (
    MATCH_DISTANCE,
    FaceNeighbours,
    assign_new_faces,
    is_forgotten,
)
from dam_pipeline.faces.people_store import PeopleStore, StoredFace, unit
from dam_pipeline.imaging import ObjectStore
from dam_pipeline.keys import vector_id
from dam_pipeline.manifests import FaceRecord, Manifest, NormalizedImage
from dam_pipeline.stages.progress import log, progress
from dam_pipeline.vector_stores import VectorRecord, VectorStore

_FACE_NAMESPACE = uuid.UUID("6f1c3a52-0d5e-4c55-9a43-5d1b7f0a9e11")
CACHE_PREFIX = "faces/"
"""Face results sit in the content cache under ``faces/<model version>``."""
CACHE_BATCH = 16
MIN_FACES_GUARDED = 10
"""Below this many faces in a partition, deleting most of them is ordinary."""


def face_id(model: str, key: str, normalized_hash: str, index: int) -> str:
    return str(uuid.uuid5(_FACE_NAMESPACE, f"{model}\x00{key}\x00{normalized_hash}\x00{index}"))


def _encode(found: FacesInPhoto) -> dict[str, Any]:
    return {
        "faces": [
            {
                "box": list(face.box),
                "descriptor": [round(float(v), 6) for v in face.descriptor],
                "size": face.size,
                "sharpness": face.sharpness,
                "score": round(face.score, 4),
                "chip": base64.b64encode(face.chip).decode("ascii"),
            }
            for face in found.faces
        ],
        "skipped_small": found.skipped_small,
        "capped": found.capped,
    }


def _decode(payload: dict[str, Any]) -> FacesInPhoto:
    return FacesInPhoto(
        faces=[
            FoundFace(
                box=tuple(face["box"]),
                descriptor=np.asarray(face["descriptor"], dtype=np.float32),
                size=int(face["size"]),
                sharpness=float(face["sharpness"]),
                score=float(face["score"]),
                chip=base64.b64decode(face["chip"]),
            )
            for face in payload["faces"]
        ],
        skipped_small=int(payload.get("skipped_small", 0)),
        capped=int(payload.get("capped", 0)),
    )


def describe_images(
    images: list[NormalizedImage],
    objects: ObjectStore,
    describer: FaceDescriber,
    cache: ContentCache,
) -> tuple[dict[str, FacesInPhoto], dict[str, str], int]:
    """normalized hash -> faces (cached or computed now), hash -> why it failed, and how
    many were computed. Results go to the cache in small batches, so a run killed half-way
    keeps what it did."""
    model = CACHE_PREFIX + describer.version
    hashes = list(dict.fromkeys(str(r.normalized_hash) for r in images))
    found = {h: _decode(p) for h, p in cache.get_captions(model, hashes).items()}
    todo = [h for h in hashes if h not in found]
    failed: dict[str, str] = {}
    pending: dict[str, dict[str, Any]] = {}
    bar = progress(len(todo), "faces")
    for digest in todo:
        try:
            result = describer.faces(objects.open_image(digest))
        except Exception as exc:  # one image's failure stays with it; retried next run
            log.warning("faces failed on %s: %s", digest, exc)
            failed[digest] = f"faces could not be found ({type(exc).__name__}: {exc})"
        else:
            found[digest] = result
            pending[digest] = _encode(result)
            if len(pending) >= CACHE_BATCH:
                cache.put_captions(model, pending)
                pending = {}
        bar.update()
    bar.close()
    if pending:
        cache.put_captions(model, pending)
    return found, failed, len(todo) - len(failed)


def carry_people_over(
    new: list[StoredFace], earlier: list[StoredFace], people: PeopleStore
) -> dict[str, int]:
    """A photo edited since the last run has new faces (new ids): each that matches one of
    the photo's earlier faces takes that face's person (and so its name). Returns face id
    -> person for those."""
    carried: dict[str, int] = {}
    for face in new:
        candidates = [
            (float(np.linalg.norm(old.descriptor - face.descriptor)), old.person_id)
            for old in earlier
            if old.key == face.key and old.person_id is not None
        ]
        distance, person = min(candidates, default=(np.inf, None))
        if person is not None and distance <= MATCH_DISTANCE:
            carried[face.face_id] = person
    if carried:
        people.assign(carried)
    return carried


def faces_partition(
    normalized: Manifest,
    objects: ObjectStore,
    describer: FaceDescriber,
    cache: ContentCache,
    people: PeopleStore,
    face_index: VectorStore | None,
    source_id: str,
    partition: str,
    max_delete_share: float = 0.5,
) -> Manifest:
    """The partition's faces in the people store and the face index, in step with its
    normalized images; new faces put with a person. If more than ``max_delete_share`` of
    the partition's faces would vanish with their photos at once, they are kept (the
    source likely failed) and the summary says ``deletion_blocked``."""
    started = time.perf_counter()
    images = [r for r in normalized if r.status == "ok" and r.normalized_hash]
    found, failed, computed = describe_images(images, objects, describer, cache)
    stored: list[StoredFace] = []
    records: list[FaceRecord] = []
    for record in normalized:
        if record.status != "ok" or not record.normalized_hash:
            records.append(FaceRecord(record.key, "quarantined", reason=record.reason))
            continue
        digest = record.normalized_hash
        if digest in failed:
            records.append(FaceRecord(record.key, "failed", digest, reason=failed[digest]))
            continue
        result = found[digest]
        ids = []
        for index, face in enumerate(result.faces):
            ids.append(face_id(describer.version, record.key, digest, index))
            stored.append(
                StoredFace(
                    ids[-1], partition, record.key, vector_id(source_id, record.key), face.box,
                    face.size, face.sharpness, face.score, face.chip, unit(face.descriptor),
                )
            )  # fmt: skip
        reason = (
            f"{result.capped} more faces not described: at most {len(result.faces)} a photo, "
            "the largest"
            if result.capped
            else None
        )
        records.append(
            FaceRecord(
                record.key, "ok", digest, ids, result.skipped_small, result.capped, reason,
                describer.version,
            )
        )  # fmt: skip
    # a failed image keeps the faces it had; every other photo's faces are replaced
    keep = [r.key for r in records if r.status == "failed"]
    before = people.photo_faces(partition)
    vanished = [key for key in before if key not in {r.key for r in records}]
    lost = sum(len(before[key]) for key in vanished)
    total = sum(len(ids) for ids in before.values())
    blocked = total >= MIN_FACES_GUARDED and lost > max_delete_share * total
    if blocked:  # a source that looks emptied (an unmounted folder): keep its faces
        log.error("faces %s: %d of %d faces would vanish at once; kept", partition, lost, total)
        keep += vanished
    changed = [face_id for r in records if r.face_ids for face_id in before.get(r.key, [])]
    earlier = people.faces(changed)  # faces of edited photos: their people carry over
    added, removed = people.replace_photos(partition, stored, keep_keys=keep)
    new = [face for face in stored if face.face_id in set(added)]
    forgotten = people.forgotten()
    dropped = [face for face in new if is_forgotten(face.descriptor, forgotten)]
    if dropped:
        gone = {face.face_id for face in dropped}
        people.replace_photos(partition, [f for f in stored if f.face_id not in gone], keep)
        new = [face for face in new if face.face_id not in gone]
        removed = [*removed, *gone]
    if face_index is not None and (removed or new):
        face_index.ensure_compatible(describer.version, 128)
        if removed:
            face_index.delete(removed, partition)
        face_index.upsert(
            [
                VectorRecord(face.face_id, face.descriptor, "", {
                    "partition": partition, "key": face.key,
                })
                for face in new
            ]
        )  # fmt: skip
    carried = carry_people_over(new, earlier, people)
    new = [face for face in new if face.face_id not in carried]
    grouping = assign_new_faces(new, people, FaceNeighbours(people, face_index))
    grouping["faces_kept_their_person"] = len(carried)
    if removed:
        people.drop_empty_persons()
    summary = {
        "photos": len(images),
        "photos_with_faces": sum(1 for r in records if r.face_ids),
        "faces": len(stored),
        "faces_new": len(new),
        "faces_removed": len(removed),
        "computed": computed,
        "reused": len(set(str(r.normalized_hash) for r in images)) - computed - len(failed),
        "failed": len(failed),
        "faces_too_small": sum(r.skipped_small for r in records),
        "faces_over_cap": sum(r.capped for r in records),
        "faces_of_forgotten_people": len(dropped),
        "deletion_blocked": blocked,
        **grouping,
        "seconds_faces": round(time.perf_counter() - started, 3),
    }
    return Manifest(records=records, summary=summary)


def delete_all_faces(
    people: PeopleStore, cache: ContentCache, face_index: VectorStore | None
) -> int:
    """Every face descriptor and crop: the people store, the face index and the cache."""
    count = people.delete_everything()
    cache.forget_results(CACHE_PREFIX)
    if face_index is not None:
        face_index.reset()
    return count
