"""An exact copy of a Chroma collection's vectors, laid out by partition, for the filters
that keep few records.

Chroma's filtered query costs in proportion to the whole collection (its metadata is
scanned whatever the filter keeps: 1.0-1.6 s for one prefix of 500 records in 1,000,000),
and the graph's nearest records filtered afterwards miss some of a small set's nearest. A
flat scan of just the records that pass is both exact and quick when they are few: the
vectors of each partition are one file of float32 rows (``<n>.vectors``) beside one of
dates (``<n>.dates``, int64 per row: the date, ``UNDATED`` or ``DEAD``); a filter reads the
dates of its partitions (or of all, for a date range alone), and scores only the rows that
pass.

Bookkeeping is one SQLite file (``flat.sqlite``): which partition file and row holds each
id, and how many rows of each file are committed. Rows are only ever appended: a writer
writes them past the committed end, then commits, then marks the rows they replace
``DEAD``; a reader sees committed rows only, maps rows to ids in the same snapshot, and
skips a row no id points to (one replaced by a writer that died before marking it). A
partition that is mostly dead rows is rewritten into a new file. Writers take turns
(``writing``); readers never wait.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dam_pipeline.locks import exclusive
from dam_pipeline.sqlite_state import thread_connection

DEAD = int(np.iinfo(np.int64).min)
UNDATED = DEAD + 1
"""A row without a date: it fails every date bound, as it does in the stores' filters."""
SCAN_ROWS = 32_768
"""Rows scored at once: bounds a scan's memory (48 MB of 384-d vectors) whatever it keeps."""
COMPACT_FROM = 1024
"""A partition file of at least this many rows, more than half of them dead, is rewritten."""
OPEN_FILES = 512
"""Vector files kept mapped between queries (a date range alone reads every partition)."""
CACHE_KIB = 65_536
"""SQLite's page cache per connection: the ids of a million records stay in memory."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS parts (
    name TEXT PRIMARY KEY,
    file INTEGER NOT NULL,
    rows INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS ids (
    id TEXT PRIMARY KEY,
    part TEXT NOT NULL,
    row INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ids_by_row ON ids (part, row);
"""


@dataclass(frozen=True)
class FlatRecord:
    id: str
    partition: str
    date_ts: int | None
    vector: np.ndarray


class FlatPartitions:
    """The flat copy kept in ``folder`` (one per collection)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._mapped: dict[tuple[int, int, int], np.ndarray] = {}
        self._mapped_lock = threading.Lock()  # queries of several threads share the maps

    @property
    def _db(self):
        return thread_connection(
            self._local, self.folder / "flat.sqlite", f"PRAGMA cache_size = -{CACHE_KIB};{SCHEMA}"
        )

    def _state(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    @property
    def complete(self) -> bool:
        """Whether every record of the collection is here (set when the copy was started on
        an empty collection, or filled from it): only then may it answer queries."""
        return self._state("complete") == "1"

    def mark_complete(self) -> None:
        self._db.execute("INSERT OR REPLACE INTO state VALUES ('complete', '1')")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """One writer at a time (around the collection's write too, so both agree)."""
        with exclusive(self.folder / "write.lock", "the flat index"):
            yield

    def _paths(self, file: int) -> tuple[Path, Path]:
        return self.folder / f"{file}.vectors", self.folder / f"{file}.dates"

    # Writing (callers hold ``writing``).

    def write(self, records: Sequence[FlatRecord]) -> None:
        """Insert or replace by id."""
        latest = {r.id: r for r in records}
        if not latest:
            return
        dimension = len(next(iter(latest.values())).vector)
        known = self._state("dimension")
        if known is not None and int(known) != dimension:
            raise ValueError(
                f"The flat index holds {known}-d vectors, not {dimension}-d: reset the index."
            )
        db = self._db
        replaced = self._locate(list(latest))
        by_part: dict[str, list[FlatRecord]] = {}
        for record in latest.values():
            by_part.setdefault(record.partition, []).append(record)
        with self._transaction():
            db.execute("INSERT OR REPLACE INTO state VALUES ('dimension', ?)", (str(dimension),))
            for part, group in by_part.items():
                file, rows = self._part(part)
                vectors = np.stack([np.asarray(r.vector, np.float32) for r in group])
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.where(norms > 0, norms, 1)
                dates = np.array(
                    [UNDATED if r.date_ts is None else int(r.date_ts) for r in group], np.int64
                )
                self._write_rows(file, rows, vectors.astype(np.float32), dates)
                db.executemany(
                    "INSERT OR REPLACE INTO ids VALUES (?, ?, ?)",
                    [(r.id, part, rows + i) for i, r in enumerate(group)],
                )
                db.execute("UPDATE parts SET rows = rows + ? WHERE name = ?", (len(group), part))
        self._mark_dead(replaced)
        self._compact({part for part, _ in replaced.values()})

    def remove(self, ids: Sequence[str]) -> None:
        located = self._locate(list(dict.fromkeys(ids)))
        if not located:
            return
        db = self._db
        with self._transaction():
            db.executemany("DELETE FROM ids WHERE id = ?", [(id_,) for id_ in located])
        self._mark_dead(located)
        self._compact({part for part, _ in located.values()})

    def clear(self) -> None:
        """Forget every record (the collection was reset); the copy is complete again."""
        db = self._db
        with self._transaction():
            db.execute("DELETE FROM ids")
            db.execute("DELETE FROM parts")
            db.execute("DELETE FROM state WHERE key != 'last_file'")  # numbers stay unused
            db.execute("INSERT INTO state VALUES ('complete', '1')")
        for path in self.folder.glob("*.vectors"):
            path.unlink(missing_ok=True)
        for path in self.folder.glob("*.dates"):
            path.unlink(missing_ok=True)

    def _locate(self, ids: list[str]) -> dict[str, tuple[str, int]]:
        found: dict[str, tuple[str, int]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for id_, part, row in self._db.execute(
                f"SELECT id, part, row FROM ids WHERE id IN ({marks})", chunk
            ):
                found[id_] = (part, row)
        return found

    def _part(self, name: str) -> tuple[int, int]:
        """(file number, committed rows) of a partition, created if new."""
        row = self._db.execute("SELECT file, rows FROM parts WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0]), int(row[1])
        file = self._next_file()
        self._db.execute("INSERT INTO parts VALUES (?, ?, 0)", (name, file))
        return file, 0

    def _next_file(self) -> int:
        """File numbers are never reused, so a reader's file is never another partition's."""
        last = int(self._state("last_file") or 0) + 1
        self._db.execute("INSERT OR REPLACE INTO state VALUES ('last_file', ?)", (str(last),))
        return last

    def _write_rows(self, file: int, at: int, vectors: np.ndarray, dates: np.ndarray) -> None:
        """Write rows from row ``at`` on: past the committed end, so readers see them only
        once the transaction commits (bytes a dead writer left there are overwritten)."""
        for path, data in zip(self._paths(file), (vectors, dates), strict=True):
            with open(path, "r+b" if path.exists() else "w+b") as handle:
                handle.seek(at * data[0].nbytes)
                handle.write(np.ascontiguousarray(data).tobytes())

    def _mark_dead(self, located: dict[str, tuple[str, int]]) -> None:
        files = dict(self._db.execute("SELECT name, file FROM parts").fetchall())
        dead = np.array([DEAD], np.int64).tobytes()
        by_file: dict[int, list[int]] = {}
        for part, row in located.values():
            if part in files:
                by_file.setdefault(int(files[part]), []).append(row)
        for file, rows in by_file.items():
            path = self._paths(file)[1]
            if not path.exists():
                continue
            with open(path, "r+b") as handle:
                for row in rows:
                    handle.seek(row * 8)
                    handle.write(dead)

    def _compact(self, parts: set[str]) -> None:
        """Rewrite the partitions that are mostly dead rows into new files."""
        db = self._db
        for part in parts:
            got = db.execute("SELECT file, rows FROM parts WHERE name = ?", (part,)).fetchone()
            if not got or got[1] < COMPACT_FROM:
                continue
            old, rows = int(got[0]), int(got[1])
            # the rows still alive are those an id points to
            alive = db.execute("SELECT count(*) FROM ids WHERE part = ?", (part,)).fetchone()[0]
            if alive * 2 > rows:
                continue
            members = db.execute(
                "SELECT id, row FROM ids WHERE part = ? ORDER BY row", (part,)
            ).fetchall()
            vectors, dates = self._open(old, rows, int(self._state("dimension") or 0))
            keep = np.array([row for _, row in members], np.int64)
            with self._transaction():
                new = self._next_file()
                for start in range(0, len(keep), SCAN_ROWS):  # memory bounded by a block
                    block = keep[start : start + SCAN_ROWS]
                    self._write_rows(new, start, np.asarray(vectors[block]), dates[block])
                db.executemany(
                    "UPDATE ids SET row = ? WHERE id = ?",
                    [(i, id_) for i, (id_, _) in enumerate(members)],
                )
                db.execute(
                    "UPDATE parts SET file = ?, rows = ? WHERE name = ?",
                    (new, len(members), part),
                )
            del vectors, dates
            with self._mapped_lock:
                for key in [key for key in self._mapped if key[0] == old]:
                    del self._mapped[key]
            for path in self._paths(old):
                path.unlink(missing_ok=True)

    # Reading.

    def _open(self, file: int, rows: int, dimension: int) -> tuple[np.ndarray, np.ndarray]:
        """A partition file's committed rows: its vectors mapped (kept for the next query:
        committed rows never change), its dates read (rows are marked dead in place)."""
        vectors_path, dates_path = self._paths(file)
        if rows == 0 or dimension == 0:
            return np.empty((0, max(1, dimension)), np.float32), np.empty(0, np.int64)
        with self._mapped_lock:
            vectors = self._mapped.get((file, rows, dimension))
            if vectors is None:
                with open(vectors_path, "rb") as handle:
                    vectors = np.memmap(handle, np.float32, "r", shape=(rows, dimension))
                while len(self._mapped) >= OPEN_FILES:
                    self._mapped.pop(next(iter(self._mapped)))
                self._mapped[(file, rows, dimension)] = vectors
        dates = np.fromfile(dates_path, np.int64, count=rows)
        return vectors, dates

    def nearest(
        self,
        vector: np.ndarray,
        k: int,
        partitions: Sequence[str] = (),
        date_from: int | None = None,
        date_to: int | None = None,
        at_most: int | None = None,
    ) -> list[tuple[str, float]] | None:
        """The ``k`` records passing the filter nearest ``vector`` (id, cosine similarity),
        best first; None when more than ``at_most`` records pass (a scan would be slow)."""
        try:
            return self._nearest(vector, k, partitions, date_from, date_to, at_most)
        except FileNotFoundError:  # a writer rewrote a partition since this snapshot
            return self._nearest(vector, k, partitions, date_from, date_to, at_most)

    def _nearest(
        self,
        vector: np.ndarray,
        k: int,
        partitions: Sequence[str],
        date_from: int | None,
        date_to: int | None,
        at_most: int | None,
    ) -> list[tuple[str, float]] | None:
        db = self._db
        query = np.asarray(vector, np.float32)
        query = query / max(float(np.linalg.norm(query)), 1e-12)
        db.execute("BEGIN")  # one snapshot for the files' lengths and the rows' ids
        try:
            if partitions:
                marks = ",".join("?" * len(partitions))
                parts = db.execute(
                    f"SELECT name, file, rows FROM parts WHERE name IN ({marks})",
                    list(partitions),
                ).fetchall()
            else:
                parts = db.execute("SELECT name, file, rows FROM parts").fetchall()
            chosen: list[tuple[str, np.ndarray, np.ndarray]] = []
            passing = 0
            dimension = int(self._state("dimension") or 0)
            for name, file, rows in parts:
                vectors, dates = self._open(int(file), int(rows), dimension)
                keep = dates != DEAD
                if date_from is not None:
                    keep &= dates >= date_from
                if date_to is not None:
                    keep &= (dates <= date_to) & (dates != UNDATED)
                rows_kept = np.flatnonzero(keep)
                passing += len(rows_kept)
                if at_most is not None and passing > at_most:
                    return None
                if len(rows_kept):
                    chosen.append((name, vectors, rows_kept))
            best: list[tuple[float, str, int]] = []
            for name, vectors, rows_kept in chosen:
                for start in range(0, len(rows_kept), SCAN_ROWS):
                    block = rows_kept[start : start + SCAN_ROWS]
                    contiguous = block[-1] - block[0] + 1 == len(block)
                    scores = (
                        vectors[block[0] : block[-1] + 1] if contiguous else vectors[block]
                    ) @ query
                    keep_n = min(len(scores), k * 2)
                    top = np.argpartition(-scores, keep_n - 1)[:keep_n]
                    best += [(float(scores[i]), name, int(block[i])) for i in top]
                best = sorted(best, reverse=True)[: k * 2]
            found: dict[str, float] = {}
            for score, name, row in best:
                got = db.execute(
                    "SELECT id FROM ids WHERE part = ? AND row = ?", (name, row)
                ).fetchone()
                if got and got[0] not in found:  # a row no id points to is a replaced one
                    found[got[0]] = score
        finally:
            db.execute("COMMIT")
        return sorted(found.items(), key=lambda item: (-item[1], item[0]))[:k]

    @property
    def empty(self) -> bool:
        return self._db.execute("SELECT 1 FROM ids LIMIT 1").fetchone() is None

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM ids").fetchone()[0])
