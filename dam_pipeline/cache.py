"""A content-addressed cache of model outputs: "compute once, reuse forever".

Captions are keyed by (captioner fingerprint, normalized image hash) and vectors by
(embedder fingerprint, text hash), so identical bytes under two keys, or in two partitions,
are computed once, and a re-run of an unchanged library calls no model at all.

Two implementations: SQLite in WAL mode in the data directory (run workers of one machine
share it) and Postgres (``DAM_STATE_URL``: workers on many machines share it). Rows are
keyed by content, so two workers writing the same row write the same value.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dam_pipeline.sqlite_state import open_shared

if TYPE_CHECKING:
    from dam_pipeline.postgres import PostgresDatabase

_SCHEMA = """
CREATE TABLE IF NOT EXISTS captions (
    captioner TEXT NOT NULL, image_hash TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (captioner, image_hash)
);
CREATE TABLE IF NOT EXISTS vectors (
    embedder TEXT NOT NULL, input_hash TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (embedder, input_hash)
);
"""
_CHUNK = 500


class ContentCache(Protocol):
    def get_captions(
        self, captioner: str, image_hashes: Iterable[str]
    ) -> dict[str, dict[str, Any]]: ...

    def put_captions(self, captioner: str, captions: dict[str, dict[str, Any]]) -> None: ...

    def get_vectors(self, embedder: str, input_hashes: Iterable[str]) -> dict[str, np.ndarray]: ...

    def put_vectors(self, embedder: str, vectors: dict[str, np.ndarray]) -> None: ...

    def forget_results(self, model_prefix: str) -> int:
        """Delete every cached result of models whose fingerprint starts with the prefix
        (face descriptors, on request); returns how many."""
        ...


class SqliteContentCache:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = open_shared(self.path)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def get_captions(
        self, captioner: str, image_hashes: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        hashes = list(dict.fromkeys(image_hashes))
        db = self._connect()
        for start in range(0, len(hashes), _CHUNK):
            chunk = hashes[start : start + _CHUNK]
            rows = db.execute(
                f"SELECT image_hash, payload FROM captions WHERE captioner = ? "
                f"AND image_hash IN ({','.join('?' * len(chunk))})",
                [captioner, *chunk],
            )
            found.update((h, json.loads(payload)) for h, payload in rows)
        return found

    def forget_results(self, model_prefix: str) -> int:
        pattern = model_prefix.replace("%", r"\%").replace("_", r"\_") + "%"
        return (
            self._connect()
            .execute("DELETE FROM captions WHERE captioner LIKE ? ESCAPE '\\'", (pattern,))
            .rowcount
        )

    def put_captions(self, captioner: str, captions: dict[str, dict[str, Any]]) -> None:
        self._connect().executemany(
            "INSERT OR REPLACE INTO captions VALUES (?, ?, ?)",
            [(captioner, h, json.dumps(payload)) for h, payload in captions.items()],
        )

    def get_vectors(self, embedder: str, input_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        hashes = list(dict.fromkeys(input_hashes))
        db = self._connect()
        for start in range(0, len(hashes), _CHUNK):
            chunk = hashes[start : start + _CHUNK]
            rows = db.execute(
                f"SELECT input_hash, vector FROM vectors WHERE embedder = ? "
                f"AND input_hash IN ({','.join('?' * len(chunk))})",
                [embedder, *chunk],
            )
            found.update((h, np.frombuffer(blob, dtype=np.float32)) for h, blob in rows)
        return found

    def put_vectors(self, embedder: str, vectors: dict[str, np.ndarray]) -> None:
        self._connect().executemany(
            "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
            [(embedder, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()],
        )


_PG_SCHEMA = """
CREATE TABLE IF NOT EXISTS dam_caption_cache (
    captioner TEXT NOT NULL, image_hash TEXT NOT NULL, payload JSONB NOT NULL,
    PRIMARY KEY (captioner, image_hash)
);
CREATE TABLE IF NOT EXISTS dam_vector_cache (
    embedder TEXT NOT NULL, input_hash TEXT NOT NULL, vector BYTEA NOT NULL,
    PRIMARY KEY (embedder, input_hash)
);
"""


class PostgresContentCache:
    """The same cache in Postgres: every worker of every machine reuses what any computed."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db
        db.ensure_schema("content_cache", _PG_SCHEMA)

    def get_captions(
        self, captioner: str, image_hashes: Iterable[str]
    ) -> dict[str, dict[str, Any]]:
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT image_hash, payload FROM dam_caption_cache "
                "WHERE captioner = %s AND image_hash = ANY(%s)",
                (captioner, list(dict.fromkeys(image_hashes))),
            )
            return dict(cursor.fetchall())

    def forget_results(self, model_prefix: str) -> int:
        with self.db.transaction() as cursor:
            cursor.execute(
                "DELETE FROM dam_caption_cache WHERE starts_with(captioner, %s)", (model_prefix,)
            )
            return cursor.rowcount

    def put_captions(self, captioner: str, captions: dict[str, dict[str, Any]]) -> None:
        rows = [(captioner, h, json.dumps(payload)) for h, payload in captions.items()]
        self._insert(
            "INSERT INTO dam_caption_cache VALUES (%s, %s, %s::jsonb) "
            "ON CONFLICT (captioner, image_hash) DO UPDATE SET payload = EXCLUDED.payload",
            rows,
        )

    def get_vectors(self, embedder: str, input_hashes: Iterable[str]) -> dict[str, np.ndarray]:
        with self.db.cursor() as cursor:
            cursor.execute(
                "SELECT input_hash, vector FROM dam_vector_cache "
                "WHERE embedder = %s AND input_hash = ANY(%s)",
                (embedder, list(dict.fromkeys(input_hashes))),
            )
            return {h: np.frombuffer(bytes(blob), dtype=np.float32) for h, blob in cursor}

    def put_vectors(self, embedder: str, vectors: dict[str, np.ndarray]) -> None:
        rows = [
            (embedder, h, np.asarray(v, dtype=np.float32).tobytes()) for h, v in vectors.items()
        ]
        self._insert(
            "INSERT INTO dam_vector_cache VALUES (%s, %s, %s) "
            "ON CONFLICT (embedder, input_hash) DO UPDATE SET vector = EXCLUDED.vector",
            rows,
        )

    def _insert(self, sql: str, rows: list[tuple]) -> None:
        """One transaction per batch, sent pipelined (psycopg's ``executemany``)."""
        if rows:
            with self.db.transaction() as cursor:
                cursor.executemany(sql, rows)
