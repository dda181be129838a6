"""Keyword retrieval (BM25) over captions, tags, visible text, facts and file names.

SQLite FTS5 with the Porter stemmer, kept next to the vector index by the vector_index
stage (same ids, same upserts and deletions), so an exact word (a brand on a sign, a file
name, a tag) is found even where the embedding misses it.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE VIRTUAL TABLE IF NOT EXISTS documents USING fts5(
    vector_id UNINDEXED, partition UNINDEXED, key, caption, tags, text, facts,
    tokenize = 'porter unicode61'
);
"""
# Column weights for bm25(): a tag or a word read off the image says more than a word in
# a long caption; the file name counts too.
_WEIGHTS = "0, 0, 1.5, 1.0, 2.0, 2.0, 0.5"


@dataclass(frozen=True)
class KeywordDocument:
    vector_id: str
    partition: str
    key: str
    caption: str
    tags: str = ""
    text: str = ""
    facts: str = ""


def fts_query(question: str) -> str:
    """The question as an FTS5 query: its words OR-ed, each quoted (no FTS syntax leaks in)."""
    words = re.findall(r"\w+", question.lower())
    return " OR ".join(f'"{word}"' for word in dict.fromkeys(words))


class KeywordIndex:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connect().executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            self._local.db = db
        return db

    def upsert(self, documents: Sequence[KeywordDocument]) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN")
            self._delete(db, [d.vector_id for d in documents])
            db.executemany(
                "INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (d.vector_id, d.partition, d.key, d.caption, d.tags, d.text, d.facts)
                    for d in documents
                ],
            )

    def delete(self, ids: Sequence[str]) -> None:
        db = self._connect()
        with db:
            db.execute("BEGIN")
            self._delete(db, ids)

    @staticmethod
    def _delete(db: sqlite3.Connection, ids: Sequence[str]) -> None:
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            db.execute(
                f"DELETE FROM documents WHERE vector_id IN ({','.join('?' * len(chunk))})", chunk
            )

    def search(
        self, question: str, limit: int, partitions: Sequence[str] | None = None
    ) -> list[tuple[str, float]]:
        """(vector id, BM25 score: higher is better) for documents sharing words with the
        question, best first."""
        query = fts_query(question)
        if not query:
            return []
        sql = (
            f"SELECT vector_id, -bm25(documents, {_WEIGHTS}) FROM documents WHERE documents MATCH ?"
        )
        args: list = [query]
        if partitions:
            sql += f" AND partition IN ({','.join('?' * len(partitions))})"
            args += list(partitions)
        sql += " ORDER BY bm25(documents, " + _WEIGHTS + ") LIMIT ?"
        return [(vid, float(score)) for vid, score in self._connect().execute(sql, [*args, limit])]

    def ids(self, partition: str) -> set[str]:
        rows = self._connect().execute(
            "SELECT vector_id FROM documents WHERE partition = ?", [partition]
        )
        return {vector_id for (vector_id,) in rows}

    def partitions_of(self, ids: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = self._connect().execute(
                "SELECT vector_id, partition FROM documents "
                f"WHERE vector_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            found.update(rows)
        return found

    def partitions(self) -> list[str]:
        rows = self._connect().execute("SELECT DISTINCT partition FROM documents")
        return sorted(partition for (partition,) in rows)

    def count(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM documents").fetchone()[0]
