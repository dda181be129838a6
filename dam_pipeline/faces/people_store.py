"""Faces and the people they belong to, with every decision a user made about them.

One store per library, beside its other state: SQLite in the data directory, or Postgres
on the shared profile (``DAM_STATE_URL``), so names live with the library. Descriptors are
kept here for re-grouping and in the face index (a collection of the vector store) for
finding the nearest face as new ones arrive.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dam_pipeline.locks import exclusive
from dam_pipeline.sqlite_state import thread_connection

if TYPE_CHECKING:
    from dam_pipeline.postgres import PostgresDatabase

_TABLES = """
CREATE TABLE IF NOT EXISTS dam_persons (
    person_id {serial} PRIMARY KEY,
    name TEXT,
    hidden INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS dam_faces (
    face_id TEXT PRIMARY KEY,
    partition TEXT NOT NULL,
    key TEXT NOT NULL,
    vector_id TEXT NOT NULL,
    box TEXT NOT NULL,
    size INTEGER NOT NULL,
    sharpness REAL NOT NULL,
    score REAL NOT NULL,
    chip {blob} NOT NULL,
    descriptor {blob} NOT NULL,
    person_id BIGINT,
    pinned INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dam_faces_person ON dam_faces (person_id);
CREATE INDEX IF NOT EXISTS dam_faces_photo ON dam_faces (partition, key);
CREATE TABLE IF NOT EXISTS dam_face_exclusions (
    face_id TEXT NOT NULL,
    person_id BIGINT NOT NULL,
    PRIMARY KEY (face_id, person_id)
);
CREATE TABLE IF NOT EXISTS dam_forgotten_people (
    forgotten_id {serial} PRIMARY KEY,
    centroid {blob} NOT NULL
);
"""
_TABLE_NAMES = ("dam_faces", "dam_face_exclusions", "dam_persons", "dam_forgotten_people")
SQLITE_SCHEMA = _TABLES.format(serial="INTEGER", blob="BLOB")
POSTGRES_SCHEMA = _TABLES.format(serial="BIGSERIAL", blob="BYTEA")


@dataclass(frozen=True)
class StoredFace:
    face_id: str
    partition: str
    key: str
    vector_id: str
    box: tuple[float, float, float, float]
    size: int
    sharpness: float
    score: float
    chip: bytes
    descriptor: np.ndarray
    """Unit length (``unit``): distances between faces are Euclidean on these."""
    person_id: int | None = None


@dataclass(frozen=True)
class PersonSummary:
    person_id: int
    name: str | None
    hidden: bool
    faces: int
    photos: list[str] = field(default_factory=list)
    """Keys of the photos the person is in."""
    sample_face: str = ""
    """The id of the person's sharpest large face (its chip is the person's picture)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.person_id,
            "name": self.name,
            "hidden": self.hidden,
            "faces": self.faces,
            "photos": self.photos,
            "sample_face": self.sample_face,
        }


def unit(descriptor: np.ndarray) -> np.ndarray:
    vector = np.asarray(descriptor, dtype=np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


class UnknownPersonError(LookupError):
    """No person has that id (or name)."""


class PeopleStore(ABC):
    """Faces and persons in SQL that SQLite and Postgres both speak; ``_sql`` adapts the
    placeholders, and each database gives its own ``_transaction``."""

    postgres = False

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Any]:
        """A cursor inside one transaction (committed at the end, rolled back on error)."""

    @abstractmethod
    def one_grouper(self) -> AbstractContextManager[Any]:
        """Held while faces are put with persons (a run's faces step, a regroup): one
        grouper at a time on every machine sharing this store, released if its holder
        dies. Not the index's writer lock: grouping faces never holds up indexing."""

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self.postgres else statement

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        with self._transaction() as cursor:
            cursor.execute(self._sql(statement), tuple(params))
            return list(cursor.fetchall())

    # faces of photos

    def photo_faces(self, partition: str) -> dict[str, list[str]]:
        """key -> face ids, for the partition's photos."""
        found: dict[str, list[str]] = {}
        for key, face_id in self._rows(
            "SELECT key, face_id FROM dam_faces WHERE partition = ? ORDER BY face_id", (partition,)
        ):
            found.setdefault(key, []).append(face_id)
        return found

    def replace_photos(
        self, partition: str, faces: Sequence[StoredFace], keep_keys: Iterable[str]
    ) -> tuple[list[str], list[str]]:
        """Make the partition's faces those of ``faces`` for the photos they belong to, and
        drop every face of a photo not in ``keep_keys`` (deleted or changed). Returns
        (ids added, ids removed); kept faces keep their person."""
        keep = set(keep_keys) | {face.key for face in faces}
        wanted = {face.face_id: face for face in faces}
        photos = {face.key for face in faces}
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("SELECT face_id, key FROM dam_faces WHERE partition = ?"), (partition,)
            )
            existing = dict(cursor.fetchall())
            removed = [
                face_id
                for face_id, key in existing.items()
                if key not in keep or (key in photos and face_id not in wanted)
            ]
            added = [face_id for face_id in wanted if face_id not in existing]
            self._delete_faces(cursor, removed)
            cursor.executemany(
                self._sql(
                    "INSERT INTO dam_faces (face_id, partition, key, vector_id, box, size, "
                    "sharpness, score, chip, descriptor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                ),
                [_face_row(wanted[face_id]) for face_id in added],
            )
        return added, removed

    def _delete_faces(self, cursor: Any, face_ids: Sequence[str]) -> None:
        for start in range(0, len(face_ids), 500):
            chunk = list(face_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            cursor.execute(self._sql(f"DELETE FROM dam_faces WHERE face_id IN ({marks})"), chunk)
            cursor.execute(
                self._sql(f"DELETE FROM dam_face_exclusions WHERE face_id IN ({marks})"), chunk
            )

    def forget_partition(self, partition: str) -> list[str]:
        """Every face of a prefix that is gone; returns their ids."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("SELECT face_id FROM dam_faces WHERE partition = ?"), (partition,)
            )
            ids = [row[0] for row in cursor.fetchall()]
            self._delete_faces(cursor, ids)
        self.drop_empty_persons()
        return ids

    def faces(self, face_ids: Sequence[str] | None = None) -> list[StoredFace]:
        """The faces with these ids (every face when None)."""
        columns = (
            "face_id, partition, key, vector_id, box, size, sharpness, score, chip, "
            "descriptor, person_id"
        )
        if face_ids is None:
            rows = self._rows(f"SELECT {columns} FROM dam_faces ORDER BY face_id")
        else:
            rows = []
            for start in range(0, len(face_ids), 500):
                chunk = list(face_ids[start : start + 500])
                marks = ", ".join("?" * len(chunk))
                rows += self._rows(
                    f"SELECT {columns} FROM dam_faces WHERE face_id IN ({marks})", chunk
                )
        return [_stored(row) for row in rows]

    def face_chip(self, face_id: str) -> bytes | None:
        rows = self._rows("SELECT chip FROM dam_faces WHERE face_id = ?", (face_id,))
        return bytes(rows[0][0]) if rows else None

    def faces_in_photo(self, key: str) -> list[dict[str, Any]]:
        """The faces of one photo with their person's id and name (for the detail page)."""
        rows = self._rows(
            "SELECT f.face_id, f.box, f.person_id, p.name, p.hidden FROM dam_faces f "
            "LEFT JOIN dam_persons p ON p.person_id = f.person_id WHERE f.key = ? "
            "ORDER BY f.face_id",
            (key,),
        )
        return [
            {
                "face_id": face_id,
                "box": json.loads(box),
                "person_id": person_id,
                "name": None if hidden else name,
            }
            for face_id, box, person_id, name, hidden in rows
        ]

    def faces_of_person(self, person_id: int) -> list[dict[str, Any]]:
        rows = self._rows(
            "SELECT face_id, key, box FROM dam_faces WHERE person_id = ? ORDER BY key",
            (person_id,),
        )
        return [{"face_id": f, "key": k, "box": json.loads(b)} for f, k, b in rows]

    # persons

    def assign(self, assignments: dict[str, int], pinned: bool = False) -> None:
        with self._transaction() as cursor:
            cursor.executemany(
                self._sql("UPDATE dam_faces SET person_id = ?, pinned = ? WHERE face_id = ?"),
                [(person, int(pinned), face) for face, person in assignments.items()],
            )

    def new_person(self) -> int:
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("INSERT INTO dam_persons (created) VALUES (?) RETURNING person_id"),
                (time.time(),),
            )
            return int(cursor.fetchone()[0])

    def person_of(self, face_ids: Sequence[str]) -> dict[str, int | None]:
        return {face.face_id: face.person_id for face in self.faces(face_ids)}

    def exclusions(self, face_ids: Sequence[str] | None = None) -> dict[str, set[int]]:
        """face id -> persons a user said it is not."""
        rows = self._rows("SELECT face_id, person_id FROM dam_face_exclusions")
        wanted = None if face_ids is None else set(face_ids)
        found: dict[str, set[int]] = {}
        for face_id, person_id in rows:
            if wanted is None or face_id in wanted:
                found.setdefault(face_id, set()).add(int(person_id))
        return found

    def persons(self, include_hidden: bool = True) -> list[PersonSummary]:
        """Every person with at least one face, the most photographed first."""
        names = {
            pid: (name, bool(hidden))
            for pid, name, hidden in self._rows("SELECT person_id, name, hidden FROM dam_persons")
        }
        faces: dict[int, list[tuple[str, str, float, int]]] = {}
        for face_id, key, sharpness, size, pid in self._rows(
            "SELECT face_id, key, sharpness, size, person_id FROM dam_faces "
            "WHERE person_id IS NOT NULL ORDER BY key"
        ):
            faces.setdefault(int(pid), []).append((face_id, key, sharpness, size))
        out = []
        for pid, found in faces.items():
            name, hidden = names.get(pid, (None, False))
            if hidden and not include_hidden:
                continue
            best = max(found, key=lambda f: (min(f[3], 160), f[2]))
            photos = list(dict.fromkeys(key for _, key, _, _ in found))
            out.append(PersonSummary(pid, name, hidden, len(found), photos, best[0]))
        return sorted(out, key=lambda p: (-len(p.photos), p.person_id))

    def person(self, person_id: int) -> PersonSummary:
        for found in self.persons():
            if found.person_id == person_id:
                return found
        raise UnknownPersonError(f"No person {person_id}: `dam people` lists them with their ids.")

    def name(self, person_id: int, name: str | None) -> None:
        self.person(person_id)
        cleaned = " ".join((name or "").split()) or None
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("UPDATE dam_persons SET name = ? WHERE person_id = ?"),
                (cleaned, person_id),
            )

    def hide(self, person_id: int, hidden: bool = True) -> None:
        self.person(person_id)
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("UPDATE dam_persons SET hidden = ? WHERE person_id = ?"),
                (int(hidden), person_id),
            )

    def merge(self, into: int, other: int) -> None:
        """Every face of ``other`` becomes ``into``'s, pinned there (a user's decision that
        re-grouping keeps); ``into`` keeps its name, or takes ``other``'s if it has none."""
        kept, gone = self.person(into), self.person(other)
        if into == other:
            return
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "UPDATE dam_faces SET person_id = ?, pinned = 1 WHERE person_id IN (?, ?)"
                ),
                (into, into, other),
            )
            if kept.name is None and gone.name:
                cursor.execute(
                    self._sql("UPDATE dam_persons SET name = ? WHERE person_id = ?"),
                    (gone.name, into),
                )
            cursor.execute(self._sql("DELETE FROM dam_persons WHERE person_id = ?"), (other,))

    def detach(self, face_id: str) -> int:
        """Take one face out of its person: it is never put back with that person, and
        starts a person of its own. Returns the new person's id."""
        (face,) = self.faces([face_id]) or [None]
        if face is None:
            raise UnknownPersonError(f"No face {face_id}: `dam people show ID` lists them.")
        new = self.new_person()
        with self._transaction() as cursor:
            if face.person_id is not None:
                cursor.execute(
                    self._sql(
                        "INSERT INTO dam_face_exclusions VALUES (?, ?) ON CONFLICT DO NOTHING"
                    ),
                    (face_id, face.person_id),
                )
            cursor.execute(
                self._sql("UPDATE dam_faces SET person_id = ?, pinned = 1 WHERE face_id = ?"),
                (new, face_id),
            )
        self.drop_empty_persons()
        return new

    def forget(self, person_id: int) -> list[tuple[str, str]]:
        """Delete the person and their faces, keeping only one averaged descriptor so that
        their new faces are recognised and dropped, never grouped again. Returns (face id,
        partition) of the faces deleted (for the face index)."""
        self.person(person_id)
        rows = self._rows(
            "SELECT face_id, partition, descriptor FROM dam_faces WHERE person_id = ?",
            (person_id,),
        )
        ids = [face_id for face_id, _, _ in rows]
        centroid = unit(np.mean([_vector(blob) for *_, blob in rows], axis=0)) if rows else None
        with self._transaction() as cursor:
            self._delete_faces(cursor, ids)
            if centroid is not None:
                cursor.execute(
                    self._sql("INSERT INTO dam_forgotten_people (centroid) VALUES (?)"),
                    (centroid.astype(np.float32).tobytes(),),
                )
            cursor.execute(self._sql("DELETE FROM dam_persons WHERE person_id = ?"), (person_id,))
        return [(face_id, partition) for face_id, partition, _ in rows]

    def forgotten(self) -> np.ndarray:
        """The averaged descriptors of forgotten people, one row each."""
        rows = self._rows("SELECT centroid FROM dam_forgotten_people ORDER BY forgotten_id")
        return np.stack([_vector(blob) for (blob,) in rows]) if rows else np.zeros((0, 128))

    def drop_empty_persons(self) -> None:
        with self._transaction() as cursor:
            cursor.execute(
                "DELETE FROM dam_persons WHERE person_id NOT IN "
                "(SELECT DISTINCT person_id FROM dam_faces WHERE person_id IS NOT NULL)"
            )

    def pinned(self) -> dict[str, int]:
        return {
            face_id: int(pid)
            for face_id, pid in self._rows(
                "SELECT face_id, person_id FROM dam_faces "
                "WHERE pinned = 1 AND person_id IS NOT NULL"
            )
        }

    def delete_everything(self) -> int:
        """Every face, descriptor, crop, person, name and forgotten marker; returns how
        many faces there were."""
        with self._transaction() as cursor:
            cursor.execute("SELECT COUNT(*) FROM dam_faces")
            count = int(cursor.fetchone()[0])
            for table in _TABLE_NAMES:
                cursor.execute(f"DELETE FROM {table}")
        return count

    # search

    def people_named(self, names: Sequence[str]) -> dict[str, list[int]]:
        """name (as asked) -> ids of the visible persons with that name (case-insensitive)."""
        known = self.known_names()
        return {name: known.get(name.casefold(), []) for name in names}

    def names(self) -> list[str]:
        """The names of visible persons, as written."""
        return [
            str(name)
            for (name,) in self._rows(
                "SELECT DISTINCT name FROM dam_persons WHERE name IS NOT NULL AND hidden = 0"
            )
        ]

    def known_names(self) -> dict[str, list[int]]:
        """casefolded name -> ids of visible persons with it."""
        found: dict[str, list[int]] = {}
        for pid, name in self._rows(
            "SELECT person_id, name FROM dam_persons WHERE name IS NOT NULL AND hidden = 0"
        ):
            found.setdefault(str(name).casefold(), []).append(int(pid))
        return found

    def photos_with(self, person_ids: Sequence[int]) -> set[tuple[str, str]]:
        """(partition, key) of the photos where any of these persons appears."""
        if not person_ids:
            return set()
        marks = ", ".join("?" * len(person_ids))
        return {
            (partition, key)
            for partition, key in self._rows(
                f"SELECT DISTINCT partition, key FROM dam_faces WHERE person_id IN ({marks})",
                list(person_ids),
            )
        }

    def names_in_photos(self, vector_ids: Sequence[str]) -> dict[str, list[str]]:
        """vector id -> names of the visible named persons in that photo."""
        if not vector_ids:
            return {}
        found: dict[str, list[str]] = {}
        for start in range(0, len(vector_ids), 500):
            chunk = list(vector_ids[start : start + 500])
            marks = ", ".join("?" * len(chunk))
            for vid, name in self._rows(
                "SELECT DISTINCT f.vector_id, p.name FROM dam_faces f JOIN dam_persons p "
                f"ON p.person_id = f.person_id WHERE f.vector_id IN ({marks}) "
                "AND p.name IS NOT NULL AND p.hidden = 0 ORDER BY p.name",
                chunk,
            ):
                found.setdefault(vid, []).append(name)
        return found

    def count(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM dam_faces")[0][0])


def _face_row(face: StoredFace) -> tuple:
    return (
        face.face_id, face.partition, face.key, face.vector_id, json.dumps(list(face.box)),
        face.size, face.sharpness, face.score, face.chip,
        unit(face.descriptor).astype(np.float32).tobytes(),
    )  # fmt: skip


def _vector(blob: Any) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype=np.float32)


def _stored(row: tuple) -> StoredFace:
    face_id, partition, key, vid, box, size, sharpness, score, chip, descriptor, pid = row
    return StoredFace(
        face_id, partition, key, vid, tuple(json.loads(box)), int(size), float(sharpness),
        float(score), bytes(chip), _vector(descriptor), None if pid is None else int(pid),
    )  # fmt: skip


class SqlitePeopleStore(PeopleStore):
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connect()

    def _connect(self) -> Any:
        return thread_connection(self._local, self.path, SQLITE_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        db = self._connect()
        cursor = db.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def one_grouper(self) -> AbstractContextManager[Any]:
        return exclusive(self.path.with_name(self.path.name + ".lock"), "the people store")


GROUPER_LOCK = 0x64616D70656F706C
"""The Postgres advisory lock key of ``one_grouper`` ("dampeopl")."""


class PostgresPeopleStore(PeopleStore):
    postgres = True

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        db.ensure_schema("people", POSTGRES_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        with self.db.transaction() as cursor:
            yield cursor

    @contextmanager
    def one_grouper(self) -> Iterator[dict]:
        """A session-level advisory lock on a connection of its own: closing it (or the
        holder dying) releases the lock."""
        import psycopg

        started = time.monotonic()
        with psycopg.connect(self.db.url, connect_timeout=10, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (GROUPER_LOCK,))
            yield {"seconds_waited": round(time.monotonic() - started, 3)}
