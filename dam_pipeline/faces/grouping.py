"""Faces grouped into persons: incrementally as faces arrive, and all at once on demand.

Distances are Euclidean between unit-length descriptors. Two faces of one person are
within ``MATCH_DISTANCE`` of each other: 0.42 here is dlib's usual 0.6 on its raw
descriptors (their length is about 1.4); on ``faces_dev`` the farthest pair of one person
was 0.33 and the nearest pair of two people 0.51 (a development figure: the set is small).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dam_pipeline.faces.people_store import PeopleStore, StoredFace, unit

MATCH_DISTANCE = 0.42
NEIGHBOURS = 10


def distance_from_cosine(similarity: float) -> float:
    return float(np.sqrt(max(0.0, 2.0 - 2.0 * similarity)))


@dataclass(frozen=True)
class Neighbour:
    face_id: str
    distance: float


class FaceNeighbours:
    """Finds the faces nearest a descriptor: the face index (a vector store collection) when
    there is one, else every stored face (fine for small libraries)."""

    def __init__(self, people: PeopleStore, index=None) -> None:
        self.people, self.index = people, index
        self._all: tuple[list[str], np.ndarray] | None = None

    def nearest(self, descriptor: np.ndarray, count: int = NEIGHBOURS) -> list[Neighbour]:
        vector = unit(descriptor)
        if self.index is not None:
            return [
                Neighbour(hit.id, distance_from_cosine(hit.score))
                for hit in self.index.query(vector, top_k=count)
            ]
        if self._all is None:
            faces = self.people.faces()
            matrix = np.stack([f.descriptor for f in faces]) if faces else np.zeros((0, 128))
            self._all = ([f.face_id for f in faces], matrix)
        ids, matrix = self._all
        if not ids:
            return []
        distances = np.linalg.norm(matrix - vector, axis=1)
        order = np.argsort(distances)[:count]
        return [Neighbour(ids[i], float(distances[i])) for i in order]


def is_forgotten(descriptor: np.ndarray, forgotten: np.ndarray) -> bool:
    if not len(forgotten):
        return False
    return bool(np.min(np.linalg.norm(forgotten - unit(descriptor), axis=1)) < MATCH_DISTANCE)


def assign_new_faces(
    faces: Sequence[StoredFace], people: PeopleStore, neighbours: FaceNeighbours
) -> dict[str, int]:
    """Each new face joins the person of its nearest face within ``MATCH_DISTANCE`` (not a
    person it was taken out of, not one already in the same photo), or starts a new person.
    The faces must already be findable by ``neighbours``. Returns counts."""
    assigned: dict[str, int] = {}
    in_photo: dict[tuple[str, str], set[int]] = {}
    excluded = people.exclusions([f.face_id for f in faces])
    joined = started = 0
    for face in faces:
        found = [n for n in neighbours.nearest(face.descriptor) if n.face_id != face.face_id]
        close = [n for n in found if n.distance <= MATCH_DISTANCE]
        known = people.person_of([n.face_id for n in close if n.face_id not in assigned])
        photo = (face.partition, face.key)
        person = None
        for candidate in close:
            pid = assigned.get(candidate.face_id, known.get(candidate.face_id))
            if pid is None or pid in excluded.get(face.face_id, set()):
                continue
            if pid in in_photo.get(photo, set()):
                continue  # one person appears once in a photo
            person = pid
            break
        if person is None:
            person = people.new_person()
            started += 1
        else:
            joined += 1
        assigned[face.face_id] = person
        in_photo.setdefault(photo, set()).add(person)
    people.assign(assigned)  # one transaction (this batch's own faces are in ``assigned``)
    return {"faces_joined_a_person": joined, "persons_started": started}


def regroup(people: PeopleStore) -> dict[str, int]:
    """Group every face again (Chinese whispers over the pairs within ``MATCH_DISTANCE``),
    keeping every decision a user made: faces a user placed (merges, faces taken out) stay
    where they were put, a face never goes back to a person it was taken out of, and each
    new group keeps the id (so the name) of the person most of its faces belonged to."""
    with people.one_grouper():
        return _regroup(people)


def _regroup(people: PeopleStore) -> dict[str, int]:
    import dlib

    faces = people.faces()
    if not faces:
        return {"faces": 0, "persons": 0, "faces_moved": 0}
    pinned = people.pinned()
    excluded = people.exclusions()
    labels = dlib.chinese_whispers_clustering(
        [dlib.vector(f.descriptor.astype(float).tolist()) for f in faces], MATCH_DISTANCE
    )
    groups: dict[int, list[StoredFace]] = {}
    for face, label in zip(faces, labels, strict=True):
        groups.setdefault(int(label), []).append(face)
    taken: set[int] = set()
    target: dict[str, int] = {}
    for members in sorted(groups.values(), key=len, reverse=True):
        votes = Counter(
            pinned.get(f.face_id, f.person_id) for f in members if f.person_id is not None
        )
        person = next((pid for pid, _ in votes.most_common() if pid not in taken), None)
        if person is None:
            person = people.new_person()
        taken.add(person)
        for face in members:
            if face.face_id in pinned:
                continue
            chosen = person
            if chosen in excluded.get(face.face_id, set()):
                chosen = people.new_person()
            target[face.face_id] = chosen
    current = {face.face_id: face.person_id for face in faces}
    moved = {fid: pid for fid, pid in target.items() if pid != current[fid]}
    people.assign(moved)
    people.drop_empty_persons()
    return {"faces": len(faces), "persons": len(people.persons()), "faces_moved": len(moved)}
